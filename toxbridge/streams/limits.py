"""The mux's limits, one frozen object per peer (every count and buffer is bounded)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LocalProtocolError
from .wire import MAX_FRAME, MAX_WINDOW, MIN_WINDOW


@dataclass(frozen=True, slots=True)
class Limits:
    """``max_streams``: streams the peer may have open at once (more are reset with
    TOO_MANY_STREAMS), and the most we open ourselves. ``stream_window``: a stream's receive
    window; ``bulk_window`` for BULK streams (room for the round trip at the Link's rate).
    ``connection_window``: what the peer may have sent and our apps not consumed, all streams
    together. ``stream_send_buffer`` / ``send_buffer``: bytes ``send()`` takes per stream / per
    peer before the app must wait for CreditAvailable. ``receive_buffer``: unparsed input
    bytes (the shell drains ``next_event()`` between chunks). A credit is sent once a
    ``1/credit_divisor`` share of a window has been consumed, not per byte.
    """

    max_streams: int = 256
    # A stream moves at most its window per credit loop: a round trip, plus the time its
    # bytes wait behind a lost packet in the transport (random loss: ~2 round trips more,
    # nearly always), less the quarter not yet credited back. 256 KiB held the channel to
    # 3-3.5 MB/s at 50 ms and the simulated one to 0.2 of 50 Mbit/s at 150 ms; 2 MiB still
    # ran out at 150 ms and 1 % loss (issue 16; docs/wire.md §3, "Limits").
    stream_window: int = 4 * 1024 * 1024
    bulk_window: int = 4 * 1024 * 1024
    connection_window: int = 8 * 1024 * 1024  # two stalled readers' windows; the Link's window
    stream_send_buffer: int = 256 * 1024
    send_buffer: int = 4 * 1024 * 1024
    receive_buffer: int = 64 * 1024
    credit_divisor: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.max_streams <= 2**20:
            raise LocalProtocolError("max_streams must be 1..2**20")
        for name in ("stream_window", "bulk_window", "connection_window"):
            if not MIN_WINDOW <= getattr(self, name) <= MAX_WINDOW:
                raise LocalProtocolError(f"{name} must be {MIN_WINDOW}..{MAX_WINDOW} bytes")
        if max(self.stream_window, self.bulk_window) > self.connection_window:
            raise LocalProtocolError("a stream window may not exceed the connection window")
        if not 1 <= self.stream_send_buffer <= self.send_buffer:
            raise LocalProtocolError("stream_send_buffer must be 1..send_buffer bytes")
        if self.receive_buffer < 2 * MAX_FRAME:
            raise LocalProtocolError(f"receive_buffer must be at least {2 * MAX_FRAME} bytes")
        if not 2 <= self.credit_divisor <= 64:
            raise LocalProtocolError("credit_divisor must be 2..64")
