"""The forward stream (docs/forwarding.md, "On the wire"): a BULK stream of kind
``FORWARD_KIND`` whose OPEN header names the destination, and whose first bytes from the
exposing side are the answer. After an OK answer the stream carries the TCP bytes.

    header:  version u8 (1) | port u16 | host (ASCII, 1..253 bytes)
    answer:  status u8 | length u8 | text (UTF-8, 0..255 bytes)

A refusal or failure is the answer followed by FIN: its text reaches the other side
whole (a RESET could overtake it).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..errors import RemoteProtocolError
from .spec import Destination, check_host

__all__ = ["FORWARD_KIND", "HEADER_VERSION", "Status", "Answer", "encode_header",
           "decode_header", "encode_answer", "parse_answer"]

FORWARD_KIND = 2  # among the daemon's kinds 0..15 (1: the channel)
HEADER_VERSION = 1
MAX_TEXT = 255


class Status(enum.IntEnum):
    OK = 0
    NOT_EXPOSED = 1  # the rules do not let this peer reach it
    CONNECT_REFUSED = 2  # nothing listens there
    UNREACHABLE = 3  # no route, the name does not resolve, another socket error
    TIMEOUT = 4  # the connect took too long
    BAD_REQUEST = 5  # a header this side cannot read
    BUSY = 6  # too many forwarded connections


@dataclass(frozen=True)
class Answer:
    status: int  # a Status, or a number from a newer peer (a failure)
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    @property
    def reason(self) -> str:
        try:
            name = Status(self.status).name.lower()
        except ValueError:
            name = f"status {self.status}"
        return f"{name}: {self.text}" if self.text else name


def encode_header(dest: Destination) -> bytes:
    host = dest.host.encode("ascii")
    return struct.pack(">BH", HEADER_VERSION, dest.port) + host


def decode_header(header: bytes) -> Destination:
    """RemoteProtocolError if the header is not one this version reads."""
    if len(header) < 4:
        raise RemoteProtocolError(f"forward header of {len(header)} bytes (at least 4)")
    version, port = struct.unpack_from(">BH", header)
    if version != HEADER_VERSION:
        raise RemoteProtocolError(f"forward header version {version} (this side reads 1)")
    if port == 0:
        raise RemoteProtocolError("forward header with port 0")
    try:
        host = check_host(header[3:].decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RemoteProtocolError(f"forward header: {exc}") from None
    return Destination(host, port)


def encode_answer(status: int, text: str = "") -> bytes:
    data = text.encode("utf-8")
    if len(data) > MAX_TEXT:  # cut on a character boundary
        data = data[:MAX_TEXT].decode("utf-8", "ignore").encode("utf-8")
    return bytes((status, len(data))) + data


def parse_answer(buffer: bytes) -> tuple[Answer, int] | None:
    """``(answer, bytes it took)``, or None while ``buffer`` holds only part of one."""
    if len(buffer) < 2 or len(buffer) < 2 + buffer[1]:
        return None
    end = 2 + buffer[1]
    text = buffer[2:end].decode("utf-8", "replace")
    return Answer(buffer[0], text), end
