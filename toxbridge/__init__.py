"""toxbridge: an end-to-end-encrypted peer-to-peer relay over the Tox network.

What a deployed node runs, in layers (each may import only those before it):
``errors``, ``usage`` → ``tox`` (the cffi binding) → ``link``, ``framing``, ``fragment``,
``crawl``, ``network``, ``bootstrap``, ``control``, ``status`` (sans-IO pieces and node
options) → ``config``, ``configfile`` → ``toxloop`` (the tox thread) → ``daemon``,
``controlsock`` (the trio side) → ``node``, ``cli`` (``nodeargs``, ``clierrors``); ``access`` and ``procnet`` (who may use the local ports) serve the daemon and
bridge_local. ``bridge_local`` sits on the channel;
``toxbridge.testing`` holds the tools for tests, benchmarks and the demo, used by no product
module. tests/test_layers.py checks all of this.
"""

__version__ = "0.1.0"
