"""toxcore's UDP socket among this process's file descriptors.

toxcore's API gives the port it bound, not the descriptor; a loop that knows the
descriptor can sleep in poll() until a packet arrives instead of waking on a timer. Read
from /proc (Linux); ``None`` when it cannot be found (UDP off, no /proc), and the caller
then keeps its timer. Only ever polled for readability, and peeked at (``toxbridge.wakeup``): toxcore alone
reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc/self")

# The first byte of a datagram that only toxcore's own upkeep needs (toxcore 0.2.18,
# network.h): DHT pings and node lists (0x00-0x04), DHT-routed crypto packets and LAN
# discovery (0x20, 0x21), the onion, announce and forwarding packets (0x80-0x9f). An idle
# loop may leave these for toxcore's next turn, as a client iterating at its own pace
# does. Not among them: net_crypto's cookies, handshakes and data (0x18-0x1b), which carry
# friend connections and our packets.
UPKEEP_PACKET_KINDS = frozenset({0x00, 0x01, 0x02, 0x04, 0x20, 0x21, *range(0x80, 0xA0)})


def _inodes_of_udp_port(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("udp", "udp6"):  # IPv6 is off here; a socket bound to :: is listed in udp6
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 10 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def udp_socket_fd(port: int, proc: Path = PROC) -> int | None:
    """The descriptor of this process's UDP socket bound to ``port``, if there is one."""
    if not port:
        return None
    links = {f"socket:[{inode}]" for inode in _inodes_of_udp_port(port, proc)}
    if not links:
        return None
    try:
        names = os.listdir(proc / "fd")
    except OSError:
        return None
    for name in names:
        try:
            if os.readlink(proc / "fd" / name) in links:
                return int(name)
        except OSError:  # closed meanwhile (another thread's descriptor)
            continue
    return None
