"""toxbridge: an end-to-end-encrypted peer-to-peer relay over the Tox network.

What a deployed node runs, in layers (each may import only those before it): ``errors``,
``usage`` → ``tox`` (the cffi binding) → ``link``, ``framing``, ``fragment``, ``crawl``,
``network``, ``bootstrap``, ``control.protocol``, ``control.snapshot`` (sans-IO pieces and
node options) → ``config``, ``cli.configfile`` → ``toxloop`` (the tox thread) → ``daemon``,
``control.server`` (the trio side) → ``node``, ``cli``. ``access`` (who may use the local
ports) serves the daemon and bridge_local; ``bridge_local`` sits on the channel;
``toxbridge.testing`` holds the tools for tests, benchmarks and the demo, used by no product
module. tests/test_layers.py checks all of this.
"""

__version__ = "0.1.0"
