"""``HOST:PORT`` and ``[BIND:]LPORT:HOST:PORT[@PEER]`` as the command line and the rules
file give them. An IPv6 address goes in brackets (``[::1]:22``); a host name is compared
lower-cased and never resolved here. ``@PEER`` (a forward's peer: a name, a public key, or
``peer`` for the first) is checked here only for its form; which peers exist is the
node's business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Destination", "LocalForward", "StdioForward", "parse_destination",
           "parse_local_forward", "parse_stdio_forward", "check_host", "DEFAULT_BIND"]

DEFAULT_BIND = "127.0.0.1"
MAX_HOST = 253  # a DNS name's limit; also what the open header carries
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")
_V6 = re.compile(r"^[0-9a-f:.]+$")
_PEER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # a name (1..32 characters) or a key (64)


def check_host(host: str) -> str:
    """The host, lower-cased; ValueError if it is not a host name or an IP address."""
    h = host.lower()
    if not h or len(h) > MAX_HOST:
        raise ValueError(f"host {host!r} must have 1..{MAX_HOST} characters")
    if ":" in h:
        if not _V6.match(h) or h.count(":") < 2:
            raise ValueError(f"host {host!r} is not an IPv6 address")
    elif not _NAME.match(h) or ".." in h:
        raise ValueError(f"host {host!r} is not a host name or an IPv4 address")
    return h


def _port(text: str, what: str, zero: bool = False) -> int:
    if not text.isdigit() or len(text) > 5:
        raise ValueError(f"{what} {text!r} is not a port number")
    port = int(text)
    if not (0 if zero else 1) <= port <= 65535:
        raise ValueError(f"{what} {port} is outside {0 if zero else 1}..65535")
    return port


def _split(text: str) -> list[str]:
    """Split on ':' outside brackets; a bracketed part loses its brackets."""
    parts, i = [], 0
    while True:
        if text.startswith("[", i):
            end = text.find("]", i)
            if end < 0:
                raise ValueError(f"{text!r}: '[' without ']'")
            parts.append(text[i + 1:end])
            i = end + 1
            if i < len(text) and text[i] != ":":
                raise ValueError(f"{text!r}: ':' expected after ']'")
        else:
            end = text.find(":", i)
            parts.append(text[i:] if end < 0 else text[i:end])
            i = len(text) if end < 0 else end
        if i >= len(text):
            return parts
        i += 1  # the ':'
        if i == len(text):
            raise ValueError(f"{text!r} ends with ':'")


@dataclass(frozen=True, order=True)
class Destination:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _at(via: str | None) -> str:
    return f"@{via}" if via is not None else ""


@dataclass(frozen=True)
class LocalForward:
    """``-L``: connections accepted on ``bind:port`` (port 0: a free one) go to
    ``destination`` at the peer ``via`` names (None: the node's ``--via``, else its first
    peer)."""

    bind: str
    port: int
    destination: Destination
    via: str | None = None

    def __str__(self) -> str:
        bind = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"{bind}:{self.port}:{self.destination}{_at(self.via)}"


@dataclass(frozen=True)
class StdioForward:
    """``-W``: stdin/stdout as one connection to ``destination`` at the peer ``via``
    names (None: as for ``LocalForward``)."""

    destination: Destination
    via: str | None = None

    def __str__(self) -> str:
        return f"{self.destination}{_at(self.via)}"


def _split_peer(text: str) -> tuple[str, str | None]:
    """``SPEC@PEER`` -> (SPEC, PEER); no ``@``: (text, None). No host has an ``@``."""
    spec, sep, peer = text.partition("@")
    if not sep:
        return text, None
    if not _PEER.match(peer):
        raise ValueError(f"{text!r}: the peer after '@' must be a name, a public key or "
                         f"'peer'")
    return spec, peer


def parse_destination(text: str) -> Destination:
    """``HOST:PORT``; ValueError with the reason."""
    parts = _split(text)
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return Destination(check_host(parts[0]), _port(parts[1], "port"))


def parse_local_forward(text: str) -> LocalForward:
    """``[BIND:]LPORT:HOST:PORT[@PEER]``; ValueError with the reason."""
    spec, via = _split_peer(text)
    parts = _split(spec)
    if len(parts) == 3:
        parts.insert(0, DEFAULT_BIND)
    if len(parts) != 4:
        raise ValueError(f"{text!r} is not [BIND:]LPORT:HOST:PORT[@PEER]")
    bind = check_host(parts[0])
    return LocalForward(bind, _port(parts[1], "local port", zero=True),
                        Destination(check_host(parts[2]), _port(parts[3], "port")), via)


def parse_stdio_forward(text: str) -> StdioForward:
    """``HOST:PORT[@PEER]``; ValueError with the reason."""
    spec, via = _split_peer(text)
    try:
        return StdioForward(parse_destination(spec), via)
    except ValueError:
        if via is None:
            raise
        raise ValueError(f"{text!r} is not HOST:PORT[@PEER]") from None
