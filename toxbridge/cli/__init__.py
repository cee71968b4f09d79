"""The ``toxbridge`` command line: argparse and TOML into one frozen ``Config``, then run.

``main`` (the commands' table and ``main()``), ``nodeargs`` (every node option, and the
``Config`` built from them), ``configfile`` (a TOML file into those options, pure),
``errors`` (each user error as one line and exit code 2), ``status`` (``toxbridge status``
and ``peers`` over the control socket). The top layer: it may import the whole product.
"""

from .main import COMMANDS, EXAMPLE_CONFIG, Command, main

__all__ = ["COMMANDS", "EXAMPLE_CONFIG", "Command", "main"]
