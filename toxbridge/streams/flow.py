"""Flow control: one stream's state, and the receive window both streams and the
connection use (credit granted back in batches, never per byte)."""

from __future__ import annotations

from .wire import Priority


class ReceiveWindow:
    """What the peer may send: up to ``limit`` (an absolute byte count); credit goes back as
    the app consumes, once a ``1/divisor`` share of the window is owed."""

    __slots__ = ("window", "threshold", "limit", "received", "consumed")

    def __init__(self, window: int, divisor: int, initial: int | None = None) -> None:
        self.window = window
        self.threshold = max(1, window // divisor)
        self.limit = window if initial is None else initial  # what the peer was granted
        self.received = 0
        self.consumed = 0

    def fits(self, n: int) -> bool:
        return self.received + n <= self.limit

    @property
    def unconsumed(self) -> int:
        return self.received - self.consumed

    def credit_due(self) -> int:
        """The credit to send now (0 while less than the threshold is owed); counted as
        granted from here on."""
        due = self.consumed + self.window - self.limit
        if due < self.threshold:
            return 0
        self.limit += due
        return due


class Stream:
    """One stream's state in a Mux: its send buffer and peer-granted credit, its receive
    window, its place in the scheduler. Plain fields; the Mux keeps the rules."""

    __slots__ = (
        "id", "wire_id", "kind", "priority", "header", "local",
        "buf", "sent", "send_limit", "open_pending", "fin_pending", "fin_sent", "ended",
        "blocked", "recv", "fin_received", "credit_out", "active", "deficit",
    )

    def __init__(self, sid: int, kind: int, priority: Priority, header: bytes, *, local: bool,
                 recv: ReceiveWindow, send_limit: int, wire_id: int | None = None) -> None:
        self.id = sid  # what the app sees: unique for the Mux's life, across peer restarts
        self.wire_id = sid if wire_id is None else wire_id  # what the frames say
        self.kind = kind
        self.priority = priority
        self.header = header
        self.local = local  # we opened it
        self.buf = bytearray()  # taken by send(), not yet framed
        self.sent = 0  # DATA bytes framed
        self.send_limit = send_limit  # the peer lets us frame up to this many bytes
        self.open_pending = local  # our OPEN is not framed yet (the peer knows nothing)
        self.fin_pending = False  # end() was called; FIN follows the buffered bytes
        self.fin_sent = False
        self.ended = False  # end() was called
        self.blocked = False  # send() refused bytes: a CreditAvailable is owed
        self.recv = recv
        self.fin_received = False
        self.credit_out = 0  # credit queued for a CREDIT frame
        self.active = False  # in the scheduler's ring
        self.deficit = 0  # deficit round robin: bytes this stream may still send this turn

    def sendable(self, connection_credit: int) -> bool:
        """Something can be framed now by the scheduler (DATA within both credits, or
        FIN); never before the stream's OPEN, which the mux sends in id order."""
        if self.open_pending:
            return False
        if self.buf:
            return self.sent < self.send_limit and connection_credit > 0
        return self.fin_pending

    @property
    def done(self) -> bool:
        """Both directions finished: FIN framed, and the peer's FIN seen and consumed."""
        return self.fin_sent and self.fin_received and not self.recv.unconsumed
