"""Which stream frames go next: strict priority between classes, deficit round robin
between the streams of one class (each turn a stream may send QUANTUM bytes, frames
included), so two busy streams of a class share the Link evenly whatever their send sizes."""

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
    __slots__ = ("_rings", "_mid_turn")

    def __init__(self) -> None:
        self._rings: tuple[deque[Stream], ...] = tuple(deque() for _ in Priority)
        # Per class: the stream at the front was cut short by a budget, not by its turn.
        self._mid_turn = [False] * len(Priority)

    def activate(self, stream: Stream) -> None:
        """The stream has something to frame: give it a place in its class's ring."""
        if not stream.active:
            stream.active = True
            self._rings[stream.priority].append(stream)

    def remove(self, stream: Stream) -> None:
        if stream.active:
            ring = self._rings[stream.priority]
            if ring[0] is stream:
                self._mid_turn[stream.priority] = False
            stream.active = False
            stream.deficit = 0
            ring.remove(stream)

    def clear(self) -> None:
        for ring in self._rings:
            for stream in ring:
                stream.active = False
            ring.clear()
        self._mid_turn = [False] * len(Priority)

    def fill(self, budget: int, emit: Emit) -> int:
        """Frame up to ``budget`` bytes; return how many. A stream cut short by the budget
        keeps its place and the rest of its turn for the next call."""
        used = 0
        mid_turn = self._mid_turn
        for cls, ring in enumerate(self._rings):
            while ring:
                room = budget - used
                if room < HEADER_SIZE:
                    return used
                stream = ring[0]
                if not mid_turn[cls]:  # a new turn: QUANTUM more (a frame always fits)
                    stream.deficit += QUANTUM
                    mid_turn[cls] = True
                limit = min(stream.deficit, room)
                n, more = emit(stream, limit)
                used += n
                stream.deficit -= n
                if not more:
                    ring.popleft()
                    stream.active = False
                    stream.deficit = 0
                    mid_turn[cls] = False
                elif limit == room:
                    return used  # the budget, not the turn, ran out: go on next call
                else:
                    ring.rotate(-1)  # its turn is over
                    mid_turn[cls] = False
        return used
