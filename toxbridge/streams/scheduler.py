"""Which stream frames go next: strict priority between classes, deficit round robin
between the streams of one class (each turn a stream may send QUANTUM bytes, frames
included), so two busy streams of a class share the Link evenly whatever their send sizes.
A batch (one ``fill``) with control or interactive frames carries no bulk after them."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from .flow import Stream
from .wire import HEADER_SIZE, MAX_FRAME, Priority

QUANTUM = MAX_FRAME  # one full frame per turn: the finest grain the frames allow

# emit(stream, limit) frames at most ``limit`` bytes of the stream, returns (bytes, more):
# ``more`` is False when nothing more of it can be framed now (it leaves the ring).
Emit = Callable[[Stream, int], tuple[int, bool]]


class Scheduler:
    __slots__ = ("_rings",)

    def __init__(self) -> None:
        self._rings: tuple[deque[Stream], ...] = tuple(deque() for _ in Priority)

    def activate(self, stream: Stream) -> None:
        """The stream has something to frame: give it a place in its class's ring."""
        if not stream.active:
            stream.active = True
            self._rings[stream.priority].append(stream)

    def remove(self, stream: Stream) -> None:
        if stream.active:
            stream.active = False
            stream.deficit = 0
            self._rings[stream.priority].remove(stream)

    def clear(self) -> None:
        for ring in self._rings:
            for stream in ring:
                stream.active = False
            ring.clear()

    def fill(self, budget: int, emit: Emit) -> int:
        """Frame up to ``budget`` bytes; return how many.

        A turn that the budget cuts short ends there too, and the stream keeps what is left
        of its deficit (up to a quantum) for its next turn: so the next call starts a new
        turn with a whole budget, and frames stay full (one per 1024-byte call, not two
        halves) while the shares stay even over many calls.
        """
        used = 0
        for cls, ring in enumerate(self._rings):
            # A batch with control or interactive frames ends with them: the peer's Link
            # hands a batch up only once all of it arrived, so bulk behind them in the
            # same batch would hold them back (a 4 KiB batch is 4 ms at 1 MB/s).
            if used and cls == Priority.BULK:
                return used
            while ring:
                room = budget - used
                if room < HEADER_SIZE:
                    return used
                stream = ring[0]
                stream.deficit += QUANTUM
                limit = min(stream.deficit, room)
                n, more = emit(stream, limit)
                used += n
                stream.deficit -= n
                if not more:
                    ring.popleft()
                    stream.active = False
                    stream.deficit = 0
                    continue
                ring.rotate(-1)
                stream.deficit = min(stream.deficit, QUANTUM)
                if limit == room:
                    return used
        return used
