"""A private Tox network on 127.0.0.1 for tests, benchmarks and the demo.

One call starts its bootstrap node; nothing here ever knows a public node.
"""

from __future__ import annotations

import os
import shutil

from ..network import BootstrapDaemon, BootstrapNode

__all__ = ["start_bootstrap"]


def start_bootstrap(prefer_daemon: bool = True) -> BootstrapDaemon | BootstrapNode:
    """Start a bootstrap node for a private network: tox-bootstrapd when installed
    (it is also a TCP relay), else a Python Tox node (also when ``TOXBRIDGE_PY_BOOTSTRAP``
    is set). Call ``stop()`` when done."""
    if prefer_daemon and shutil.which("tox-bootstrapd") and not os.environ.get("TOXBRIDGE_PY_BOOTSTRAP"):
        return BootstrapDaemon().start()
    return BootstrapNode().start()
