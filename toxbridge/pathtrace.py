"""A debug trace of the Link's path, off by default (``--trace-path FILE``): every
``period`` seconds the tox thread writes one JSON line per peer whose transport is active,
so a run on a long path can be read afterwards (``bench wan --trace``; docs/wire.md §4.6).

Each line: ``t`` (monotonic s), ``peer`` (8 hex digits), the transport's model and window
(``LinkPath.trace``: state, max_bw_Bps, min_rtt_s, pacing_rate_Bps, cwnd, window,
inflight_hi, in_flight, unsent, the cumulative counters and why sending stopped), what
waits above it (``link_unsent``: Link packets not yet in the transport; ``outbound``: app
frames not yet taken; ``chan_credit``, ``chan_buffered``, ``chan_resend_room``: the
channel stream's credit from the peer, its bytes in the mux, the room to keep more until
the peer's Link acks them), and the tox thread's own figures since the last line: its loop
turns, the longest turn, and its CPU time (``thread_cpu_s``, cumulative) beside the
process's (``process_cpu_s``). Bounded: at most ``max_lines`` lines, then it stops writing.

An I/O shell of the tox thread (only it calls it); it never logs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["PathTrace", "TRACE_PERIOD", "TRACE_MAX_LINES"]

TRACE_PERIOD = 0.1  # s between samples
TRACE_MAX_LINES = 200_000  # ~5.5 h of one peer at 10 lines/s, ~40 MB: then it stops


class PathTrace:
    def __init__(self, path: Path, *, period: float = TRACE_PERIOD,
                 max_lines: int = TRACE_MAX_LINES) -> None:
        if period <= 0 or max_lines < 1:
            raise ValueError("the period must be positive and max_lines at least 1")
        self.period = period
        self.max_lines = max_lines
        self.lines = 0
        self._file = open(path, "w", encoding="ascii", buffering=1 << 16)
        self._next = 0.0
        self._turns = 0
        self._turn_max = 0.0

    def turn(self, seconds: float) -> None:
        """One loop turn took ``seconds`` (the work, not the wait)."""
        self._turns += 1
        if seconds > self._turn_max:
            self._turn_max = seconds

    def due(self, now: float) -> bool:
        return self._file is not None and now >= self._next

    def sample(self, now: float, slots, outbound_len: int) -> None:
        """One line per slot whose transport is active (the first slot's ``outbound``)."""
        self._next = now + self.period
        common = {"t": round(now, 4), "turns": self._turns, "turn_max_ms": round(self._turn_max * 1e3, 2),
                  "thread_cpu_s": round(time.thread_time(), 4),
                  "process_cpu_s": round(time.process_time(), 4)}
        self._turns, self._turn_max = 0, 0.0
        for i, slot in enumerate(slots):
            path = slot.path.trace()
            if path is None:
                continue
            line = {**common, "peer": slot.hex[:8], **path,
                    "link_unsent": slot.link.unsent_bytes,
                    "link_unacked": slot.link.unacked_bytes,
                    "outbound": outbound_len if i == 0 else 0, **slot.io.channel_trace()}
            self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
            self.lines += 1
            if self.lines >= self.max_lines:
                self.close()
                return

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
