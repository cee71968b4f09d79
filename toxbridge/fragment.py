"""UUID-tagged fragmentation of messages over the framed channel (sans-IO).

The daemon gives each bridge a reliable, ordered channel of data frames of at most
:data:`FRAME_SIZE` bytes of payload, frame boundaries kept. A message of any size is cut into
fragments that each fill one frame::

    offset  size  field
    0       16    message id (the 16 bytes of a UUID, version 4 by default)
    16      4     index of this fragment, unsigned big-endian, 0-based
    20      4     total number of fragments of the message, unsigned big-endian, >= 1
    24      ...   slice of the message

Every fragment but the last carries exactly ``frame_size - 24`` bytes (1000 with 1024-byte
frames); the last carries 1 to 1000 bytes, or 0 to 1000 when it is the only one (so the
empty message is one 24-byte fragment). Fragments of one message are sent in index order;
fragments of different messages interleave round-robin.

:class:`Fragmenter` turns messages into frames, :class:`Reassembler` turns frames back into
:class:`Message` events. Both ends must use the same ``frame_size``. Neither does I/O, logging
or clock reads: time is passed in as ``now``.

If the receiver's limits are at least the sender's (``max_partial >= max_messages``,
``max_buffered >= max_bytes``, equal ``max_message_size``), honest traffic never trips them:
since the channel is ordered, every message the receiver holds partially is still held by
the sender.
"""

from __future__ import annotations

import enum
import os
import struct
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack  # type: ignore[import-untyped]

from .errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "DEFAULT_MAX_BUFFERED",
    "DEFAULT_MAX_MESSAGES",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_PARTIAL",
    "DEFAULT_TIMEOUT",
    "FRAME_SIZE",
    "HEADER_SIZE",
    "FragmentError",
    "Fragmenter",
    "Message",
    "MessageTooLarge",
    "Reason",
    "Reassembler",
    "SendQueueFull",
    "pack_message",
    "unpack_message",
]

FRAME_SIZE = 1024
"""Largest data-frame payload of the daemon's channel, in bytes."""

_HEADER = struct.Struct(">16sII")
HEADER_SIZE = _HEADER.size  # 24
_MAX_TOTAL = 0xFFFFFFFF

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
DEFAULT_MAX_MESSAGES = 64
DEFAULT_MAX_PARTIAL = 64
DEFAULT_MAX_BUFFERED = 128 * 1024 * 1024
DEFAULT_TIMEOUT = 300.0
_DEFAULT_MAX_DISCARDED = 1024


def _slice_size(frame_size: int) -> int:
    if not HEADER_SIZE < frame_size <= 0xFFFF:
        raise ValueError(f"frame_size must be in {HEADER_SIZE + 1}..65535, not {frame_size}")
    return frame_size - HEADER_SIZE


def _fragment_count(size: int, slice_size: int) -> int:
    return max(1, -(-size // slice_size))


# --------------------------------------------------------------------------- sending


class SendQueueFull(LocalProtocolError):
    """The outgoing message queue is full; wait until frames have been sent."""


class MessageTooLarge(LocalProtocolError):
    """The message is larger than the maximum message size."""


class _Outgoing:
    __slots__ = ("uid", "view", "total", "index", "size")

    def __init__(self, uid: bytes, view: memoryview, total: int) -> None:
        self.uid = uid
        self.view = view
        self.total = total
        self.index = 0
        self.size = len(view)


class Fragmenter:
    """Cuts messages into fragments and hands out frames, round-robin across messages.

    A message waits behind at most one fragment of each other queued message per turn, so a
    one-fragment message queued while ``n - 1`` others are in flight is out within ``n``
    frames. Messages are sliced through a :class:`memoryview`, never copied whole; a mutable
    buffer passed to :meth:`send` must not be changed until its last frame is out.

    Bounded: at most ``max_messages`` queued messages holding at most ``max_bytes`` together.
    """

    def __init__(
        self,
        *,
        frame_size: int = FRAME_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_bytes: int = DEFAULT_MAX_BUFFERED,
    ) -> None:
        self._slice = _slice_size(frame_size)
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        if max_bytes < max_message_size:
            raise ValueError("max_bytes must be at least max_message_size")
        if _fragment_count(max_message_size, self._slice) > _MAX_TOTAL:
            raise ValueError("max_message_size needs more fragments than the header can count")
        self.frame_size = frame_size
        self.max_message_size = max_message_size
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._queue: deque[_Outgoing] = deque()
        self._ids: set[bytes] = set()
        # Fresh ids are version-4 UUIDs: 8 random bytes per Fragmenter, then a counter from
        # a random start (no getrandom call per message).
        prefix = bytearray(os.urandom(8))
        prefix[6] = (prefix[6] & 0x0F) | 0x40  # the version
        self._id_prefix = bytes(prefix)
        self._id_next = int.from_bytes(os.urandom(8), "big")
        self._bytes = 0

    @property
    def pending_messages(self) -> int:
        """Messages queued and not completely sent."""
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        """Total size of the queued messages (their buffers are held until sent)."""
        return self._bytes

    def __bool__(self) -> bool:
        """True while there are frames to send."""
        return bool(self._queue)

    def can_send(self, size: int = 0) -> bool:
        """Whether :meth:`send` would accept a message of ``size`` bytes now."""
        return (
            size <= self.max_message_size
            and len(self._queue) < self.max_messages
            and self._bytes + size <= self.max_bytes
        )

    def send(
        self, data: bytes | bytearray | memoryview, message_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """Queue one message; returns its id (a fresh uuid4 unless ``message_id`` is given).

        Raises :class:`MessageTooLarge` if it is over ``max_message_size`` (it never fits),
        :class:`SendQueueFull` if the queue is at its message or byte limit (retry later).
        """
        return uuid.UUID(bytes=self.send_id(
            data, message_id.bytes if message_id is not None else None))

    def send_id(self, data: bytes | bytearray | memoryview, uid: bytes | None = None) -> bytes:
        """:meth:`send` with the id as its 16 bytes (no ``uuid.UUID`` objects: this runs for
        every chat message)."""
        view = memoryview(data).cast("B")
        size = len(view)
        if size > self.max_message_size:
            view.release()
            raise MessageTooLarge(
                f"message of {size} bytes is over the limit of {self.max_message_size}"
            )
        if not self.can_send(size):
            view.release()
            raise SendQueueFull(
                f"send queue full ({len(self._queue)} messages, {self._bytes} bytes queued)"
            )
        if uid is None:
            n = self._id_next = (self._id_next + 1) & _ID_COUNTER
            uid = self._id_prefix + (n | _ID_VARIANT).to_bytes(8, "big")
        if uid in self._ids:
            view.release()
            raise LocalProtocolError(f"message {uuid.UUID(bytes=uid)} is already queued")
        self._ids.add(uid)
        self._queue.append(_Outgoing(uid, view, _fragment_count(size, self._slice)))
        self._bytes += size
        return uid

    def next_frame(self) -> bytes | None:
        """The next frame to put on the channel, or None when nothing is queued."""
        if not self._queue:
            return None
        out = self._queue.popleft()
        start = out.index * self._slice
        frame = _HEADER.pack(out.uid, out.index, out.total) + out.view[start : start + self._slice]
        out.index += 1
        if out.index < out.total:
            self._queue.append(out)
        else:
            out.view.release()
            self._ids.discard(out.uid)
            self._bytes -= out.size
        return frame


# --------------------------------------------------------------------------- receiving


_ID_COUNTER = (1 << 62) - 1  # the bits of a fresh id's counter ...
_ID_VARIANT = 1 << 63  # ... under the UUID variant bits 10


class Message:
    """A message reassembled from all its fragments: ``id`` (a UUID; ``uid``, its 16
    bytes) and ``data``. The UUID is made only when asked for."""

    __slots__ = ("uid", "data")

    def __init__(self, id: uuid.UUID | bytes, data: bytes) -> None:  # noqa: A002
        self.uid = id.bytes if isinstance(id, uuid.UUID) else id
        self.data = data

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(bytes=self.uid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.uid == other.uid and self.data == other.data

    __hash__ = None  # type: ignore[assignment]  # like the dataclass it replaces

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, data={self.data!r})"


class Reason(enum.StrEnum):
    """Why a fragment was rejected."""

    SHORT = "short"  # fewer bytes than the header
    OVERSIZED = "oversized"  # more bytes than a frame holds
    ZERO_TOTAL = "zero-total"
    BAD_INDEX = "bad-index"  # index >= total
    BAD_LENGTH = "bad-length"  # a non-last fragment not full, or an empty last one
    TOO_LARGE = "too-large"  # the message would exceed max_message_size
    TOTAL_MISMATCH = "total-mismatch"  # total differs from the message's first fragment
    DUPLICATE = "duplicate"  # an index already received
    OUT_OF_ORDER = "out-of-order"  # an index beyond the next expected one
    MISSING_START = "missing-start"  # index > 0 of a message not in progress
    TOO_MANY_PARTIALS = "too-many-partials"
    BUFFER_FULL = "buffer-full"  # partial messages would hold more than max_buffered


class FragmentError(RemoteProtocolError):
    """The peer sent a fragment that breaks the fragmentation rules.

    ``message_id`` is the message it claimed to belong to (None when the fragment was too
    short to say). That message is abandoned; other messages are not affected.
    """

    def __init__(self, reason: Reason, message_id: uuid.UUID | None, detail: str) -> None:
        super().__init__(f"bad fragment ({reason}): {detail}")
        self.reason = reason
        self.message_id = message_id


class _Partial:
    __slots__ = ("total", "next", "chunks", "size", "last_seen")

    def __init__(self, total: int, now: float) -> None:
        self.total = total
        self.next = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.last_seen = now


class Reassembler:
    """Turns frames back into messages, within limits.

    :meth:`receive_frame` returns a :class:`Message` when a frame completes one, None
    otherwise, and raises :class:`FragmentError` for a bad fragment. After an error the
    message it named is dropped, and its remaining fragments are discarded quietly (counted
    in :meth:`statistics`), so a broken message is reported once, not once per fragment.

    Limits: ``max_message_size`` per message, ``max_partial`` messages in progress holding at
    most ``max_buffered`` bytes, and :meth:`expire` drops messages idle for ``timeout``
    seconds. Fragments of a message must arrive in index order (the channel is ordered).
    """

    def __init__(
        self,
        *,
        frame_size: int = FRAME_SIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_partial: int = DEFAULT_MAX_PARTIAL,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        timeout: float = DEFAULT_TIMEOUT,
        max_discarded: int = _DEFAULT_MAX_DISCARDED,
    ) -> None:
        self._slice = _slice_size(frame_size)
        self.frame_size = frame_size
        self.max_message_size = max_message_size
        self.max_partial = max_partial
        self.max_buffered = max_buffered
        self.timeout = timeout
        self.max_discarded = max_discarded
        self._partials: dict[bytes, _Partial] = {}
        self._buffered = 0
        # Ids of abandoned messages whose later fragments are dropped without an error.
        self._discarded: OrderedDict[bytes, float] = OrderedDict()
        self._stats = {"messages": 0, "errors": 0, "discarded_fragments": 0, "expired": 0}

    @property
    def partial_count(self) -> int:
        return len(self._partials)

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in partial messages."""
        return self._buffered

    def statistics(self) -> dict[str, int]:
        """Counters: completed messages, errors raised, fragments discarded, partials expired."""
        return dict(self._stats, partial=len(self._partials), buffered=self._buffered)

    def receive_frame(self, frame: bytes | bytearray | memoryview, now: float) -> Message | None:
        """Take one frame; returns the message it completes, if any.

        Raises :class:`FragmentError` if the fragment is bad; the reassembler stays usable.
        """
        size = len(frame)
        if size < HEADER_SIZE:
            self._stats["errors"] += 1
            raise FragmentError(
                Reason.SHORT, None, f"{size} bytes, the header alone is {HEADER_SIZE}"
            )
        uid, index, total = _HEADER.unpack_from(frame)
        if uid in self._discarded:
            self._stats["discarded_fragments"] += 1
            if index + 1 >= total:
                del self._discarded[uid]
            else:
                self._discarded[uid] = now
                self._discarded.move_to_end(uid)
            return None
        length = size - HEADER_SIZE
        try:
            return self._accept(uid, index, total, frame, length, now)
        except FragmentError:
            self._stats["errors"] += 1
            self._abandon(uid, index, total, now)
            raise

    def _accept(
        self, uid: bytes, index: int, total: int, frame: Any, length: int, now: float
    ) -> Message | None:
        def fail(reason: Reason, detail: str) -> FragmentError:
            return FragmentError(reason, uuid.UUID(bytes=uid), detail)

        if length > self._slice:
            raise fail(Reason.OVERSIZED, f"{length} payload bytes, a fragment holds {self._slice}")
        if total == 0:
            raise fail(Reason.ZERO_TOTAL, "total is 0")
        if index >= total:
            raise fail(Reason.BAD_INDEX, f"index {index} of {total}")
        if index + 1 < total and length != self._slice:
            raise fail(
                Reason.BAD_LENGTH,
                f"fragment {index} of {total} has {length} bytes, not {self._slice}",
            )
        if index + 1 == total > 1 and length == 0:
            raise fail(Reason.BAD_LENGTH, f"last fragment of {total} is empty")
        partial = self._partials.get(uid)
        if partial is None:
            if index != 0:
                raise fail(
                    Reason.MISSING_START, f"fragment {index} of {total} of no message in progress"
                )
            least = (total - 1) * self._slice + (length if total == 1 else 1)
            if least > self.max_message_size:
                raise fail(
                    Reason.TOO_LARGE,
                    f"{total} fragments: at least {least} bytes, limit {self.max_message_size}",
                )
            if total == 1:  # the common case: nothing to hold
                self._stats["messages"] += 1
                return Message(uid, bytes(frame[HEADER_SIZE:]))
            if len(self._partials) >= self.max_partial:
                raise fail(
                    Reason.TOO_MANY_PARTIALS, f"{len(self._partials)} messages already in progress"
                )
            partial = _Partial(total, now)
        else:
            if total != partial.total:
                raise fail(
                    Reason.TOTAL_MISMATCH,
                    f"total {total}, the message started with {partial.total}",
                )
            if index < partial.next:
                raise fail(Reason.DUPLICATE, f"fragment {index} of {total} again")
            if index > partial.next:
                raise fail(
                    Reason.OUT_OF_ORDER, f"fragment {index} of {total}, expected {partial.next}"
                )
            if index + 1 == total and partial.size + length > self.max_message_size:
                raise fail(
                    Reason.TOO_LARGE,
                    f"{partial.size + length} bytes, limit {self.max_message_size}",
                )
        if self._buffered + length > self.max_buffered:
            raise fail(Reason.BUFFER_FULL, f"{self._buffered} bytes held in partial messages")
        if index == 0:
            self._partials[uid] = partial
        partial.chunks.append(bytes(frame[HEADER_SIZE:]))
        partial.size += length
        partial.next += 1
        partial.last_seen = now
        self._buffered += length
        if partial.next < total:
            return None
        del self._partials[uid]
        self._buffered -= partial.size
        self._stats["messages"] += 1
        return Message(uid, b"".join(partial.chunks))

    def _abandon(self, uid: bytes, index: int, total: int, now: float) -> None:
        partial = self._partials.pop(uid, None)
        if partial is not None:
            self._buffered -= partial.size
            total = partial.total  # the real count, whatever the bad fragment claimed
        if index + 1 != total:  # unless it was the last, more fragments may follow
            self._discard(uid, now)

    def _discard(self, uid: bytes, now: float) -> None:
        self._discarded[uid] = now
        self._discarded.move_to_end(uid)
        while len(self._discarded) > self.max_discarded:
            self._discarded.popitem(last=False)

    def expire(self, now: float) -> list[uuid.UUID]:
        """Drop partial messages that received nothing for ``timeout`` seconds; returns their ids.

        Their late fragments, if any, are then discarded quietly. Call it periodically, and
        only while the link is up if stalls during an outage are expected.
        """
        deadline = now - self.timeout
        expired = [uid for uid, p in self._partials.items() if p.last_seen <= deadline]
        for uid in expired:
            self._buffered -= self._partials.pop(uid).size
            self._discard(uid, now)
        while self._discarded:
            uid, seen = next(iter(self._discarded.items()))
            if seen > deadline:
                break
            del self._discarded[uid]
        self._stats["expired"] += len(expired)
        return [uuid.UUID(bytes=uid) for uid in expired]


# --------------------------------------------------------------------------- msgpack


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def pack_message(message: Mapping[str, Any]) -> bytes:
    """Encode a command dict for the other bridge (msgpack; bytes stay bytes, str stays str).

    Raises :class:`LocalProtocolError` if it holds something msgpack cannot encode.
    """
    if not isinstance(message, Mapping):
        raise LocalProtocolError(f"a message must be a mapping, not {type(message).__name__}")
    try:
        packed: bytes = msgpack.packb(message, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:  # UnicodeEncodeError is a ValueError
        raise LocalProtocolError(f"cannot encode message: {exc}") from exc
    return packed


def unpack_message(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode a command dict from the other bridge.

    Strict: exactly one msgpack map with string keys at the top, valid UTF-8 strings, no
    extension types, no container or string larger than the input could hold. Raises
    :class:`RemoteProtocolError` otherwise.
    """
    limit = len(data)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_no_ext,
            max_str_len=limit,
            max_bin_len=limit,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:  # every msgpack decode error
        raise RemoteProtocolError(f"undecodable message: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"a message must be a map, not {type(obj).__name__}")
    for key in obj:
        if not isinstance(key, str):
            raise RemoteProtocolError(f"message keys must be strings, not {type(key).__name__}")
    return obj
