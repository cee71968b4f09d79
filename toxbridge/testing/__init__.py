"""Tools to run toxbridge for real without the internet: used by tests/, bench/ and the demo.

Private Tox networks on 127.0.0.1 (``privnet``), network-namespace topologies with NAT
routers (``netns``), daemons, bridge_local servers and bridge-port apps as real processes
(``harness``), raw toxcore peers as the benchmarks' anchor (``rawpeer``), a WAN emulator
(``wan``, over the sans-IO ``wanpath``: delay, loss, a bottleneck in a namespace), a simulated
path in simulated time for the transport over lossy packets (``simpath``), and the demo.
May import anything in toxbridge and bridge_local; nothing in the product imports it
(but for the CLI's ``demo`` subcommand, which runs ``toxbridge.testing.demo``).
"""

from .harness import (App, BridgeLocalProc, DaemonProc, random_frames, stdio_command, stream_frames,
                      terminate)
from .privnet import start_bootstrap

__all__ = [
    "App",
    "BridgeLocalProc",
    "DaemonProc",
    "random_frames",
    "start_bootstrap",
    "stdio_command",
    "stream_frames",
    "terminate",
]
