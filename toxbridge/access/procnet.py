"""Linux's socket tables (``/proc/net/tcp``, ``/proc/net/tcp6``), parsed: who owns a
loopback connection's other end. Pure: text in, entries out; the caller reads the files.

A line of the table (the header line is skipped)::

    sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
     3: 0100007F:A2B4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4711 ...

Addresses are the kernel's 32-bit words printed in hex in the host's byte order (so
127.0.0.1 is ``0100007F`` on a little-endian machine); ports are plain hex.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass

__all__ = ["SocketEntry", "TIME_WAIT", "LISTEN", "find_owner", "parse_table"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Endpoint = tuple[IPAddress, int]

TIME_WAIT = 0x06
LISTEN = 0x0A


@dataclass(frozen=True, slots=True)
class SocketEntry:
    local: Endpoint
    remote: Endpoint
    state: int
    uid: int
    inode: int  # 0: no process holds the socket any more (orphaned or a time-wait remnant)


def _address(text: str, byteorder: str) -> IPAddress:
    if len(text) not in (8, 32):
        raise ValueError(f"an address of {len(text)} hex digits")
    raw = b"".join(int(text[i:i + 8], 16).to_bytes(4, byteorder) for i in range(0, len(text), 8))
    return ipaddress.ip_address(raw)


def _endpoint(text: str, byteorder: str) -> Endpoint:
    address, sep, port = text.partition(":")
    if not sep or len(port) != 4:
        raise ValueError(f"not ADDRESS:PORT: {text!r}")
    return _address(address, byteorder), int(port, 16)


def parse_table(text: str, byteorder: str = sys.byteorder,
                ports: tuple[int, int] | None = None) -> list[SocketEntry]:
    """The entries of one ``/proc/net/tcp`` or ``tcp6`` text; with ``ports`` (local,
    remote), only the lines of those ports (a busy host's table has thousands of lines,
    and parsing addresses is what costs).

    Raises ValueError, naming the line, for a line that is not in the kernel's format.
    """
    if ports is not None:
        local_port, remote_port = (f":{p:04X}" for p in ports)
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split(maxsplit=3)
        if not fields or fields[0] == "sl":
            continue
        if ports is not None and len(fields) > 2 and not (
                fields[1].endswith(local_port) and fields[2].endswith(remote_port)):
            continue
        fields = line.split()
        try:
            if len(fields) < 10 or not fields[0].endswith(":"):
                raise ValueError(f"{len(fields)} fields")
            entries.append(SocketEntry(
                local=_endpoint(fields[1], byteorder), remote=_endpoint(fields[2], byteorder),
                state=int(fields[3], 16), uid=int(fields[7]), inode=int(fields[9])))
        except ValueError as exc:
            raise ValueError(f"line {number} of the socket table: {exc}") from None
    return entries


def _plain(endpoint: tuple[str | IPAddress, int]) -> Endpoint:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, a dual-stack socket's view of an
    IPv4 peer) as the IPv4 address the other end's own table shows."""
    address = ipaddress.ip_address(endpoint[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address, int(endpoint[1])


def find_owner(entries: list[SocketEntry], peer: tuple[str | IPAddress, int],
               ours: tuple[str | IPAddress, int]) -> int | None:
    """The uid owning the connecting socket: the entry whose local end is ``peer`` (the
    address:port the accepted connection comes from) and whose remote end is ``ours`` (the
    accepted connection's own address:port). None when there is none yet (or no more).

    Entries no process holds (inode 0: time-wait remnants and closed, orphaned sockets) do
    not count: the kernel shows uid 0 for them, which would pass for root.
    """
    peer, ours = _plain(peer), _plain(ours)
    for entry in entries:
        if (entry.inode and entry.state not in (TIME_WAIT, LISTEN)
                and _plain(entry.local) == peer and _plain(entry.remote) == ours):
            return entry.uid
    return None
