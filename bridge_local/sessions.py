"""One peer bridge's session state (sans-IO): :class:`Session`, held by the core per peer.

A session has two lanes toward its peer bridge: the interactive lane (control commands and
chat) and the bulk lane (file-transfer messages). Over the daemon's one-peer channel
(``split`` False) both share the channel, one fragmenter and one reassembler, as before
many peers. Over streams (``split`` True) each lane is a stream of its own each way: a
stream that starts anew starts its reassembly anew, so a fragment never arrives without
its start, and a file's chunks never wait in line before a chat message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from toxbridge.fragment import Reassembler

from .peerout import PeerSender
from .protocol import User

if TYPE_CHECKING:
    from . import wire
    from .store import Store

__all__ = ["BULK", "CHANNEL", "CHAT", "MAX_HOPS", "Session"]

CHAT, BULK = 0, 1  # the lanes
CHANNEL = b"channel"  # the key of the session over the daemon's one-peer channel
MAX_HOPS = 4  # hubs a user is announced through at most: a loop dies out


class Session:
    """``key``: the peer daemon's public key (streams), or CHANNEL. ``name``: how the
    outbox and the file service know it (the key in hex; '' for the channel)."""

    def __init__(self, key: bytes, store: Store, limits, now: float, *, split: bool) -> None:
        self.key = key
        self.split = split
        self.name = "" if key == CHANNEL else key.hex().upper()
        self.limits = limits
        self.out = PeerSender(store, inflight=limits.inflight, waiting=limits.waiting,
                              control_max=limits.control_max, peer=self.name, split=split)
        self.online = not split  # streams: the daemon says the peer daemon is online
        self.lanes: set[int] = set()  # streams: our lanes' streams that are open
        self.link_up = False  # we may send on the interactive lane
        self.peer_up = False  # ... and the peer bridge said hello in this session
        self.peer_session: bytes | None = None
        self.bridge = ""  # the peer bridge's key (hex), from its hello
        self.users: dict[str, User] = {}  # users reachable through it, as it announced them
        self.told: dict[str, int] = {}  # others' users we announced to it (relay): token -> hops
        self.incoming: list[wire.Msg] = []  # chat from it, handled by the core's settle
        self.last_rx = self.last_tx = self.last_hello = now
        self._reasm: dict[int, Reassembler] = {}
        self.new_reassembly(CHAT)
        self.new_reassembly(BULK)

    def new_reassembly(self, lane: int) -> None:
        """Partial messages of the lane (or, over the channel, of both) are dropped."""
        r = Reassembler(max_partial=256, timeout=self.limits.partial_timeout)
        if self.split:
            self._reasm[lane] = r
        else:
            self._reasm[CHAT] = self._reasm[BULK] = r

    def reassembler(self, lane: int) -> Reassembler:
        return self._reasm[lane]

    def expire(self, now: float) -> None:
        for r in set(self._reasm.values()):
            r.expire(now)

    @property
    def files_up(self) -> bool:
        """Transfers may run: the session is up, and (split) the bulk lane is open."""
        return self.peer_up and (not self.split or BULK in self.lanes)

    def statistics(self) -> dict:
        return {"peer_up": self.peer_up, "link_up": self.link_up, "bridge": self.bridge,
                "users": len(self.users), "in_flight": self.out.in_flight,
                "reassembly": self._reasm[CHAT].statistics()}
