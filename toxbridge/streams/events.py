"""What a :class:`~toxbridge.streams.mux.Mux` hands out from ``next_event()``, and its
statistics. Frozen records; a reset ``code`` is a ResetCode when known, else a plain int."""

from __future__ import annotations

from dataclasses import dataclass

from .wire import Priority


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream; its credit lets us send at once."""

    stream_id: int
    kind: int
    priority: Priority
    header: bytes


@dataclass(frozen=True, slots=True)
class StreamData:
    """Bytes of a stream, in order. The app calls ``consume(stream_id, n)`` once it has
    used them: only then does the peer get that credit back."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed the stream: no more StreamData for it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The stream is gone. ``remote``: the peer reset it (or restarted); otherwise we reset
    it because the peer broke its rules. Its unconsumed data should be dropped."""

    stream_id: int
    code: int
    remote: bool


@dataclass(frozen=True, slots=True)
class CreditAvailable:
    """``send()`` refused bytes for this stream earlier and now has room again."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PeerRestarted:
    """A HELLO with a new epoch: the peer's mux is new; every stream was reset
    (StreamReset with PEER_RESTARTED follows for each)."""

    old_epoch: bytes
    new_epoch: bytes


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke a stream rule; the frame was dropped (and the stream reset, if it was
    one of ours). Other streams are not affected. For the shell's log."""

    stream_id: int
    reason: str


MuxEvent = (StreamOpened | StreamData | StreamEnded | StreamReset | CreditAvailable
            | PeerRestarted | ProtocolViolation)


@dataclass(frozen=True, slots=True)
class MuxStatistics:
    streams: int  # open now, both directions
    buffered_bytes: int  # taken by send(), not yet handed to the Link
    unconsumed_bytes: int  # received, not yet consumed by the apps
    frames_sent: int
    frames_received: int
    data_bytes_sent: int
    data_bytes_received: int
    discarded_bytes: int  # DATA for streams already closed (in flight when they closed)
    frames_ignored: int  # stream frames from before the HELLO exchange (a predecessor's)
    credit_frames_sent: int
    streams_refused: int  # peer streams over max_streams
    violations: int
    peer_restarts: int
