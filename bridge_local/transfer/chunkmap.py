"""Which chunks of a file are held: a bitmap, its wire form and its persisted form (pure).

A file of ``filesize`` bytes cut into chunks of ``chunk_size`` bytes has
``ceil(filesize / chunk_size)`` chunks (none for an empty file); chunk ``i`` is the byte range
``[i * chunk_size, min((i + 1) * chunk_size, filesize))``, so only the last one may be short.

:class:`ChunkMap` is a bitmap of that many bits (one bit per chunk, 128 KiB of memory for a
1 TiB file in 1 MiB chunks). Its two serialized forms:

* **persisted** (:meth:`ChunkMap.to_bytes`): ``ceil(count / 8)`` bytes, chunk ``i`` in bit
  ``0x80 >> (i % 8)`` of byte ``i // 8`` (most significant bit first, as BitTorrent's
  bitfield), the padding bits zero;
* **wire** (:func:`to_wire`, :func:`from_wire`): the seed's ``chunk_map`` list of
  ``{"index": i, "range": [start, end]}`` entries, where one entry covers a *run* of held
  chunks: ``index`` is the run's first chunk and ``range`` its bytes, end exclusive. The seed's
  one-entry-per-chunk list is the special case of runs of one chunk, and is accepted as it is.
  A transfer in progress holds a prefix plus at most a window of chunks beyond it, so the
  list has a handful of entries whatever the file size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "ChunkMap",
    "ChunkMapError",
    "chunk_count",
    "chunk_range",
    "from_wire",
    "to_wire",
]

_NOT_FULL = re.compile(rb"[^\xff]")
_NOT_EMPTY = re.compile(rb"[^\x00]")


class ChunkMapError(ValueError):
    """A chunk map (wire or persisted form) does not describe this file's chunks."""


def chunk_count(filesize: int, chunk_size: int) -> int:
    """Number of chunks of a file: ``ceil(filesize / chunk_size)``, 0 for an empty file."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    if filesize < 0:
        raise ValueError("filesize must not be negative")
    return -(-filesize // chunk_size)


def chunk_range(index: int, filesize: int, chunk_size: int) -> tuple[int, int]:
    """The byte range ``(start, end)`` of chunk ``index``, end exclusive."""
    start = index * chunk_size
    if not 0 <= start < filesize:
        raise IndexError(f"chunk {index} is not in a file of {filesize} bytes")
    return start, min(start + chunk_size, filesize)


class ChunkMap:
    """A set of chunk indices ``0 <= i < count``, stored as a bitmap."""

    __slots__ = ("_bits", "_held", "count")

    def __init__(self, count: int) -> None:
        if count < 0:
            raise ValueError("count must not be negative")
        self.count = count
        self._bits = bytearray((count + 7) // 8)
        self._held = 0

    # ------------------------------------------------------------------ set operations

    def _check(self, index: int) -> None:
        if not 0 <= index < self.count:
            raise IndexError(f"chunk {index} out of range 0..{self.count - 1}")

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or not 0 <= index < self.count:
            return False
        return bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def add(self, index: int) -> bool:
        """Mark chunk ``index`` held; True if it was not held before."""
        self._check(index)
        mask = 0x80 >> (index & 7)
        if self._bits[index >> 3] & mask:
            return False
        self._bits[index >> 3] |= mask
        self._held += 1
        return True

    def discard(self, index: int) -> bool:
        """Mark chunk ``index`` missing; True if it was held before."""
        self._check(index)
        mask = 0x80 >> (index & 7)
        if not self._bits[index >> 3] & mask:
            return False
        self._bits[index >> 3] &= ~mask & 0xFF
        self._held -= 1
        return True

    def add_range(self, first: int, end: int) -> None:
        """Mark chunks ``first <= i < end`` held."""
        if not 0 <= first <= end <= self.count:
            raise IndexError(f"chunks {first}..{end} out of range 0..{self.count}")
        while first < end and first & 7:
            self.add(first)
            first += 1
        while end > first and end & 7:
            end -= 1
            self.add(end)
        if first < end:
            self._bits[first >> 3 : end >> 3] = b"\xff" * ((end - first) >> 3)
            self._held = _popcount(self._bits)

    def update(self, other: ChunkMap) -> None:
        """Add every chunk of ``other`` (a map of the same count)."""
        if other.count != self.count:
            raise ValueError(f"maps of {self.count} and {other.count} chunks")
        merged = int.from_bytes(self._bits, "big") | int.from_bytes(other._bits, "big")
        self._bits[:] = merged.to_bytes(len(self._bits), "big")
        self._held = _popcount(self._bits)

    def copy(self) -> ChunkMap:
        new = ChunkMap(self.count)
        new._bits[:] = self._bits
        new._held = self._held
        return new

    def clear(self) -> None:
        self._bits[:] = bytes(len(self._bits))
        self._held = 0

    def __len__(self) -> int:
        """Number of chunks held."""
        return self._held

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChunkMap):
            return NotImplemented
        return self.count == other.count and self._bits == other._bits

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"ChunkMap(count={self.count}, held={self._held}, runs={self.runs()[:4]!r})"

    @property
    def complete(self) -> bool:
        return self._held == self.count

    # ------------------------------------------------------------------ scanning

    def next_missing(self, start: int = 0) -> int | None:
        """The lowest missing index ``>= start``, or None."""
        return self._scan(start, missing=True)

    def next_held(self, start: int = 0) -> int | None:
        """The lowest held index ``>= start``, or None."""
        return self._scan(start, missing=False)

    def _scan(self, start: int, *, missing: bool) -> int | None:
        start = max(start, 0)
        if start >= self.count:
            return None
        skip = _NOT_FULL if missing else _NOT_EMPTY
        i = start
        while i < self.count:
            if (i & 7) == 0:  # skip whole bytes in C
                match = skip.search(self._bits, i >> 3)
                if match is None:
                    return None
                i = max(i, match.start() << 3)
                if i >= self.count:
                    return None
            if (i in self) != missing:
                return i
            i += 1
        return None

    def missing(self, start: int = 0) -> Iterator[int]:
        """The missing indices ``>= start``, in order."""
        i = self.next_missing(start)
        while i is not None:
            yield i
            i = self.next_missing(i + 1)

    def __iter__(self) -> Iterator[int]:
        """The held indices, in order."""
        i = self.next_held(0)
        while i is not None:
            yield i
            i = self.next_held(i + 1)

    def runs(self) -> list[tuple[int, int]]:
        """The held chunks as runs ``(first, end)`` of consecutive indices, end exclusive."""
        runs = []
        i = self.next_held(0)
        while i is not None:
            end = self.next_missing(i)
            end = self.count if end is None else end
            runs.append((i, end))
            i = self.next_held(end)
        return runs

    # ------------------------------------------------------------------ persisted form

    def to_bytes(self) -> bytes:
        """The persisted form: the bitmap, most significant bit first."""
        return bytes(self._bits)

    @classmethod
    def from_bytes(cls, count: int, data: bytes) -> ChunkMap:
        """Parse :meth:`to_bytes`. Raises :class:`ChunkMapError` for a wrong length or set
        padding bits."""
        new = cls(count)
        if len(data) != len(new._bits):
            raise ChunkMapError(
                f"a map of {count} chunks is {len(new._bits)} bytes, not {len(data)}"
            )
        if count & 7 and data[-1] & (0xFF >> (count & 7)):
            raise ChunkMapError("padding bits after the last chunk are set")
        new._bits[:] = data
        new._held = _popcount(new._bits)
        return new

    @classmethod
    def full(cls, count: int) -> ChunkMap:
        new = cls(count)
        new._bits[:] = b"\xff" * len(new._bits)
        if count & 7:
            new._bits[-1] = (0xFF << (8 - (count & 7))) & 0xFF
        new._held = count
        return new


def _popcount(bits: bytes | bytearray) -> int:
    return int.from_bytes(bits, "big").bit_count()


# ---------------------------------------------------------------------- wire form


def to_wire(chunks: ChunkMap, filesize: int, chunk_size: int) -> list[dict[str, Any]]:
    """The ``chunk_map`` list: one ``{"index", "range"}`` entry per run of held chunks."""
    if chunk_count(filesize, chunk_size) != chunks.count:
        raise ValueError(f"a map of {chunks.count} chunks for {filesize} bytes / {chunk_size}")
    return [
        {"index": first, "range": [first * chunk_size, min(end * chunk_size, filesize)]}
        for first, end in chunks.runs()
    ]


def from_wire(entries: Any, filesize: int, chunk_size: int) -> ChunkMap:
    """Parse a ``chunk_map`` list for a file of ``filesize`` bytes in ``chunk_size`` chunks.

    Each entry is ``{"index": i, "range": [start, end]}`` with ``start == i * chunk_size``
    and ``end`` on a chunk boundary or at the end of the file; entries are in increasing
    order and do not overlap (adjacent entries are fine). Raises :class:`ChunkMapError`
    naming what is wrong: not a list, a malformed entry, a range that is not whole chunks or
    lies (partly) beyond the file, entries out of order or overlapping, more entries than
    chunks.
    """
    count = chunk_count(filesize, chunk_size)
    if not isinstance(entries, list):
        raise ChunkMapError("chunk_map must be an array")
    if len(entries) > count:
        raise ChunkMapError(f"chunk_map has {len(entries)} entries for {count} chunks")
    chunks = ChunkMap(count)
    previous_end = 0
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ChunkMapError(f"chunk_map entry {n} must be an object")
        index, byte_range = entry.get("index"), entry.get("range")
        if not _is_int(index):
            raise ChunkMapError(f"chunk_map entry {n}: 'index' must be an integer")
        if not (isinstance(byte_range, (list, tuple)) and len(byte_range) == 2) or not all(
            _is_int(v) for v in byte_range
        ):
            raise ChunkMapError(f"chunk_map entry {n}: 'range' must be two integers")
        start, end = byte_range
        if not 0 <= index < count or start != index * chunk_size:
            raise ChunkMapError(
                f"chunk_map entry {n}: index {index} and range start {start} are not a chunk"
                f" of a file of {filesize} bytes in chunks of {chunk_size}"
            )
        if not start < end <= filesize or (end != filesize and end % chunk_size):
            raise ChunkMapError(
                f"chunk_map entry {n}: range end {end} is not a chunk boundary in 1..{filesize}"
            )
        if start < previous_end:
            raise ChunkMapError(f"chunk_map entry {n} overlaps or precedes the one before")
        previous_end = end
        chunks.add_range(index, -(-end // chunk_size))
    return chunks


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
