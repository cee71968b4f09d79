"""The kernel's sock_diag netlink query for one TCP socket, encoded and parsed: who owns a
loopback connection's other end, asked by its exact address and ports. Pure: bytes in and
out; the caller owns the netlink socket (``policy.diag_owner_uid``).

Why not only ``/proc/net/tcp`` (:mod:`.procnet`): printing the table walks the kernel's
whole socket hash, 2-5 ms on an idle machine and far more on a busy one, per accepted
connection; an exact sock_diag lookup (``inet_diag_find_one_icsk``) takes microseconds, so
it can run on the event loop. The layouts are ``linux/netlink.h``, ``linux/sock_diag.h``
and ``linux/inet_diag.h``::

    nlmsghdr          u32 len | u16 type | u16 flags | u32 seq | u32 pid        (host order)
    inet_diag_req_v2  u8 family | u8 protocol | u8 ext | u8 pad | u32 states | sockid
    inet_diag_sockid  be16 sport | be16 dport | 16 B src | 16 B dst | u32 if | u32 cookie[2]
    inet_diag_msg     u8 family | u8 state | u8 timer | u8 retrans | sockid
                      | u32 expires | u32 rqueue | u32 wqueue | u32 uid | u32 inode
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

__all__ = ["DiagEntry", "NETLINK_SOCK_DIAG", "encode_request", "parse_reply"]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x01
INET_DIAG_NOCOOKIE = 0xFFFFFFFF
ALL_STATES = 0xFFFFFFFF

_NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI")
_SOCKID = struct.Struct("!HH16s16s")  # ports and addresses in network order ...
_SOCKID_TAIL = struct.Struct("=III")  # ... interface and cookie in host order
_MSG_HEAD = struct.Struct("=BBBB")
_MSG_TAIL = struct.Struct("=IIIII")
_ERRNO = struct.Struct("=i")
_SOCKID_SIZE = _SOCKID.size + _SOCKID_TAIL.size  # 48

REQUEST_SIZE = _NLMSGHDR.size + _REQ.size + _SOCKID_SIZE  # 72


@dataclass(frozen=True, slots=True)
class DiagEntry:
    state: int  # TCP state (1 established, 6 time-wait, 10 listen, ...)
    uid: int
    inode: int  # 0: no process holds the socket any more


def _raw(address: str, family: int) -> bytes:
    packed = ipaddress.ip_address(address).packed
    return packed.ljust(16, b"\0") if family == socket.AF_INET else packed


def encode_request(family: int, local: tuple[str, int], remote: tuple[str, int],
                   seq: int = 1) -> bytes:
    """A SOCK_DIAG_BY_FAMILY request for the TCP socket of ``family`` whose own end is
    ``local`` and whose other end is ``remote`` (address text, port)."""
    body = (_REQ.pack(family, socket.IPPROTO_TCP, 0, 0, ALL_STATES)
            + _SOCKID.pack(local[1], remote[1], _raw(local[0], family), _raw(remote[0], family))
            + _SOCKID_TAIL.pack(0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST,
                          seq, 0) + body


def parse_reply(data: bytes, seq: int = 1) -> DiagEntry | None:
    """The socket described by the reply to request ``seq``; None when the kernel has no
    such socket (ENOENT). Raises OSError for any other error the kernel answers, and
    ValueError for bytes that are not a reply to ``seq``."""
    if len(data) < _NLMSGHDR.size:
        raise ValueError(f"a netlink reply of {len(data)} bytes")
    length, kind, _flags, got_seq, _pid = _NLMSGHDR.unpack_from(data)
    if got_seq != seq or not _NLMSGHDR.size <= length <= len(data):
        raise ValueError(f"a netlink reply for request {got_seq} of {length} bytes")
    if kind == NLMSG_ERROR:
        if length < _NLMSGHDR.size + _ERRNO.size:
            raise ValueError("a truncated netlink error")
        (error,) = _ERRNO.unpack_from(data, _NLMSGHDR.size)
        if error == 0:
            raise ValueError("a netlink acknowledgement where a socket was expected")
        if -error == 2:  # ENOENT: no such socket
            return None
        raise OSError(-error, f"sock_diag: {os.strerror(-error)}")
    if kind != SOCK_DIAG_BY_FAMILY:
        raise ValueError(f"a netlink message of type {kind}")
    offset = _NLMSGHDR.size + _MSG_HEAD.size + _SOCKID_SIZE
    if length < offset + _MSG_TAIL.size:
        raise ValueError(f"an inet_diag_msg of {length} bytes")
    _family, state, _timer, _retrans = _MSG_HEAD.unpack_from(data, _NLMSGHDR.size)
    _expires, _rq, _wq, uid, inode = _MSG_TAIL.unpack_from(data, offset)
    return DiagEntry(state=state, uid=uid, inode=inode)
