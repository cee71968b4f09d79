"""Splitting the app port's byte stream into lines, bounded."""

from __future__ import annotations

from dataclasses import dataclass

from .codes import DEFAULT_MAX_LINE_LENGTH, CommandError, ErrorCode

@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line went over the limit; it is skipped up to its newline."""

    limit: int

    def error(self) -> CommandError:
        return CommandError(ErrorCode.LINE_TOO_LONG, f"line longer than {self.limit} bytes")


class LineDecoder:
    """Splits a byte stream into lines, bounded.

    :meth:`receive_data` adds bytes (``b""`` marks the end of the stream); :meth:`next_line`
    returns a line without its ``\\n``, a :class:`LineTooLong` event, or None when no complete
    line is buffered (then check :attr:`eof`). A line longer than ``max_line_length`` bytes is
    reported once, as soon as it is known, and skipped through its newline; the lines after it
    are served normally. Blank lines are skipped. An unterminated last line at the end of the
    stream is still returned. Feed more data only after :meth:`next_line` returned None, so the
    buffer stays under ``max_line_length``.
    """

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        if max_line_length < 1:
            raise ValueError("max_line_length must be at least 1")
        self.max_line_length = max_line_length
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no newline
        self._skipping = False  # inside an over-long line
        self.eof = False

    def receive_data(self, data: bytes) -> None:
        if self.eof and data:
            raise ValueError("data after end of stream")
        if data:
            self._buf += data
        else:
            self.eof = True

    def next_line(self) -> bytes | LineTooLong | None:
        while True:
            end = self._buf.find(b"\n", self._scanned)
            if end < 0:
                self._scanned = len(self._buf)
                if self._skipping:
                    self._buf.clear()
                    self._scanned = 0
                    return None
                if len(self._buf) > self.max_line_length:
                    self._buf.clear()
                    self._scanned = 0
                    self._skipping = not self.eof
                    return LineTooLong(self.max_line_length)
                if self.eof and self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    self._scanned = 0
                    if line.strip():
                        return line
                return None
            line = bytes(self._buf[:end])
            del self._buf[: end + 1]  # cheap: bytearray drops its head without moving it
            self._scanned = 0
            if self._skipping:
                self._skipping = False
                continue
            if end > self.max_line_length:
                return LineTooLong(self.max_line_length)
            if line.strip():
                return line
