"""Getting into the Tox network: every node on its own, and a bounded retry while we have
no DHT connection.

``add_nodes`` hands toxcore each bootstrap node and TCP relay separately and returns the
ones it refused (a host that does not resolve, an IPv6 address with IPv6 off), so one bad
node never stops a node; the caller logs them. ``RetrySchedule`` is sans-IO: every time
is an argument. Neither logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .network import NodeInfo
from .tox import BootstrapError, Tox

__all__ = ["Refused", "add_nodes", "RetrySchedule", "describe_refusals"]

FIRST_RETRY = 5.0  # s after the start (toxcore itself needs a few seconds to connect)
LONGEST_RETRY = 60.0  # the backoff doubles up to this
WARN_AFTER = 30.0  # s without a connection before one warning says so


@dataclass(frozen=True)
class Refused:
    """A node toxcore would not take: ``what`` is "DHT node" or "TCP relay"."""

    host: str
    port: int
    what: str
    error: str  # toxcore's error name, e.g. BOOTSTRAP_BAD_HOST

    def __str__(self) -> str:
        return f"{self.what} {self.host}:{self.port}"


def add_nodes(tox: Tox, bootstrap: Iterable[NodeInfo],
              tcp_relays: Iterable[NodeInfo]) -> tuple[int, list[Refused]]:
    """Give toxcore every node; return (how many nodes it took at least once, refusals).

    toxcore resolves a host name inside the call (getaddrinfo, blocking); callers retry
    only while there is no connection, when a slow resolver holds up no traffic.
    """
    usable = 0
    refused: list[Refused] = []

    def attempt(call, node: NodeInfo, port: int, what: str) -> bool:
        try:
            call(node.host, port, node.public_key)
            return True
        except BootstrapError as exc:
            refused.append(Refused(node.host, port, what, exc.error))
            return False

    for node in bootstrap:
        ok = attempt(tox.bootstrap, node, node.port, "DHT node")
        if node.tcp_port:
            ok = attempt(tox.add_tcp_relay, node, node.tcp_port, "TCP relay") or ok
        usable += ok
    for relay in tcp_relays:
        usable += attempt(tox.add_tcp_relay, relay, relay.port, "TCP relay")
    return usable, refused


def describe_refusals(refused: list[Refused], limit: int = 3) -> str:
    """The first few refusals on one line."""
    text = ", ".join(f"{r} ({r.error.removeprefix('BOOTSTRAP_')})" for r in refused[:limit])
    return text + (f" and {len(refused) - limit} more" if len(refused) > limit else "")


class RetrySchedule:
    """When to hand toxcore the bootstrap nodes again: while there is no DHT connection,
    after ``first`` seconds, then doubling up to ``longest``; from ``first`` again after a
    lost connection."""

    def __init__(self, now: float, first: float = FIRST_RETRY, longest: float = LONGEST_RETRY,
                 warn_after: float = WARN_AFTER) -> None:
        if not 0 < first <= longest:
            raise ValueError("want 0 < first <= longest")
        self.first, self.longest, self.warn_after = first, longest, warn_after
        self.connected = False
        self.attempts = 0  # retries since the last connection was lost (or the start)
        self._since = now  # start of the current time without a connection
        self._delay = first
        self._next = now + first
        self._warned = False

    def due(self, now: float) -> bool:
        return not self.connected and now >= self._next

    def tried(self, now: float) -> None:
        """A retry happened at ``now``."""
        self.attempts += 1
        self._delay = min(self._delay * 2, self.longest)
        self._next = now + self._delay

    def next_retry(self) -> float | None:
        return None if self.connected else self._next

    def overdue(self, now: float) -> bool:
        """True once per time without a connection, ``warn_after`` s into it."""
        if self.connected or self._warned or now - self._since < self.warn_after:
            return False
        self._warned = True
        return True

    def connection(self, connected: bool, now: float) -> float | None:
        """The DHT connection came up or went down. Returns, on coming up, how long it
        took since the start or the loss; else None."""
        if connected == self.connected:
            return None
        self.connected = connected
        if connected:
            return now - self._since
        self._since = now
        self.attempts = 0
        self._delay = self.first
        self._next = now + self.first
        self._warned = False
        return None
