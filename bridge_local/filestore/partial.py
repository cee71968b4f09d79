"""Files being received (:class:`PartialFile`, crash-safe through its journal) and complete
files being read (:class:`FileReader`)."""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from array import array
from typing import Protocol

from ..transfer.chunkmap import ChunkMap, chunk_count
from .errors import ChecksumMismatch, FileNotFound, StoreError, _os_error
from .journal import (
    _DISCARD,
    _EMPTY_MD5,
    _RECORD,
    _SALT,
    StoredFile,
    _Journal,
    _read_exact,
    _record,
    _write_all,
)

class PartialOwner(Protocol):
    """What a partial file needs of the store that opened it (``FileStore``): its settings,
    and to be told when the file completes, is discarded or closes."""

    fsync_interval: int | None
    verify_on_finish: bool

    def _complete(self, partial: PartialFile) -> StoredFile: ...

    def _remove_partial(self, key: str) -> None: ...

    def _closed(self, key: str) -> None: ...


# --------------------------------------------------------------------------- partial files


class PartialFile:
    """A file being received: write chunks in any order, then :meth:`finish`.

    Made by :meth:`FileStore.open_partial`; close it (or use ``with``) to release it.
    ``chunks`` is the map of chunks held, ``chunk_size`` the size they were cut in (the one
    to announce in the ``8000``).
    """

    def __init__(
        self, store: PartialOwner, key: str, journal: _Journal, part_fd: int, journal_fd: int
    ) -> None:
        self._store = store
        self._key = key
        self.fileid = journal.fileid
        self.filename = journal.filename
        self.meta = journal.meta
        self.filesize = journal.filesize
        self.chunk_size = journal.chunk_size
        self.md5 = journal.md5
        self._part_fd = part_fd
        self._journal_fd = journal_fd
        self._journal_size = os.fstat(journal_fd).st_size
        count = chunk_count(self.filesize, self.chunk_size)
        self._chunks = ChunkMap(count)
        self._crcs = array("I", bytes(4 * count))
        self._hash = hashlib.md5()
        self._hashed = 0  # chunks 0.._hashed-1 are in _hash
        self._unsynced = 0
        self.closed = False

    @property
    def chunks(self) -> ChunkMap:
        """A copy of the map of chunks held."""
        return self._chunks.copy()

    @property
    def held_bytes(self) -> int:
        """Bytes of the chunks held."""
        size = len(self._chunks) * self.chunk_size
        last = self._chunks.count - 1
        if last in self._chunks:
            size -= self.chunk_size - self._length(last)
        return size

    def _length(self, index: int) -> int:
        return min(self.chunk_size, self.filesize - index * self.chunk_size)

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError("the partial file is closed")

    # ------------------------------------------------------------------ writing

    def write_chunk(self, index: int, data: bytes) -> tuple[int, ...]:
        """Store chunk ``index``. Returns the chunks found corrupt on disk while hashing
        forward (discarded: tell the receiver machine, ``discard_chunks``), usually none.

        Raises :class:`StoreFull` when the disk is full and :class:`StoreIOError` on other
        I/O errors (the chunk is then not held; nothing else changed), ValueError for an
        index or length that is not a chunk's.
        """
        self._check_open()
        if not 0 <= index < self._chunks.count:
            raise ValueError(f"chunk {index} is not in 0..{self._chunks.count - 1}")
        if len(data) != self._length(index):
            raise ValueError(f"chunk {index} is {self._length(index)} bytes, not {len(data)}")
        if index in self._chunks:
            return ()
        try:
            _write_all(self._part_fd, data, index * self.chunk_size)
        except OSError as exc:
            raise _os_error(exc, f"writing chunk {index} of {self.fileid!r}") from None
        crc = zlib.crc32(data)
        self._append(_record(index, crc))
        self._chunks.add(index)
        self._crcs[index] = crc
        self._unsynced += len(data)
        interval = self._store.fsync_interval
        if interval is not None and self._unsynced >= interval:
            self.sync()
        if index == self._hashed:
            self._hash.update(data)
            self._hashed += 1
        return self._hash_forward()

    def _append(self, record: bytes) -> None:
        try:
            n = os.pwrite(self._journal_fd, record, self._journal_size)
            if n != len(record):
                raise OSError(errno.ENOSPC, "short write")
        except OSError as exc:
            try:  # a torn record would hide every later one: cut it off
                os.ftruncate(self._journal_fd, self._journal_size)
            except OSError:
                pass
            raise _os_error(exc, f"journaling a chunk of {self.fileid!r}") from None
        self._journal_size += len(record)

    def sync(self) -> None:
        """fsync the data and the journal."""
        self._check_open()
        try:
            os.fsync(self._part_fd)
            os.fsync(self._journal_fd)
        except OSError as exc:
            raise _os_error(exc, f"syncing {self.fileid!r}") from None
        self._unsynced = 0

    def _discard(self, index: int) -> None:
        self._append(_record(index, 0, discard=True))
        self._chunks.discard(index)
        self._crcs[index] = 0

    def _hash_forward(self) -> tuple[int, ...]:
        """Feed the held chunks after the hashed prefix into the md5, from disk, checking
        their crc32; a chunk that fails is discarded."""
        lost = []
        while self._hashed < self._chunks.count and self._hashed in self._chunks:
            i = self._hashed
            try:
                data = _read_exact(self._part_fd, i * self.chunk_size, self._length(i))
            except OSError as exc:
                raise _os_error(exc, f"reading chunk {i} of {self.fileid!r}") from None
            if zlib.crc32(data) != self._crcs[i]:
                self._discard(i)
                lost.append(i)
                break
            self._hash.update(data)
            self._hashed += 1
        return tuple(lost)

    def _rehash(self) -> None:
        self._hash = hashlib.md5()
        self._hashed = 0

    def verify_chunks(self) -> tuple[int, ...]:
        """Read every held chunk back and discard those whose crc32 does not match; returns
        them. (Done on reopening for the prefix, and by :meth:`finish` after an md5 miss.)"""
        self._check_open()
        bad = []
        for i in list(self._chunks):
            try:
                data = _read_exact(self._part_fd, i * self.chunk_size, self._length(i))
            except OSError as exc:
                raise _os_error(exc, f"reading chunk {i} of {self.fileid!r}") from None
            if zlib.crc32(data) != self._crcs[i]:
                self._discard(i)
                bad.append(i)
        if bad:
            self._rehash()
            self._hash_forward()
        return tuple(bad)

    # ------------------------------------------------------------------ finishing

    def finish(self) -> StoredFile:
        """Check the md5 and make the file a complete one (atomic rename).

        Raises :class:`ChecksumMismatch` (bad chunks discarded, or none to blame),
        ValueError if chunks are missing, :class:`StoreError` on I/O errors.
        """
        self._check_open()
        if not self._chunks.complete:
            raise ValueError(
                f"{self._chunks.count - len(self._chunks)} chunks of {self.fileid!r} missing"
            )
        lost = self._hash_forward()
        if lost:
            raise ChecksumMismatch(f"chunks {list(lost)} are corrupt on disk", None, lost)
        actual = self._hash.hexdigest() if self._chunks.count else _EMPTY_MD5
        if self._store.verify_on_finish or actual != self.md5:
            # The md5 covers the bytes as received; the crc32 sweep proves the disk still
            # holds them (a chunk may rot after it was hashed).
            bad = self.verify_chunks()
            if bad:
                raise ChecksumMismatch(f"chunks {list(bad)} are corrupt on disk", None, bad)
        if actual != self.md5:
            raise ChecksumMismatch(
                f"md5 of {self.fileid!r} is {actual}, expected {self.md5}", actual, ()
            )
        return self._store._complete(self)

    def discard(self) -> None:
        """Delete this partial file (after a failure or an abort)."""
        if not self.closed:
            self.close()
        self._store._remove_partial(self._key)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self._part_fd, self._journal_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._store._closed(self._key)

    def __enter__(self) -> PartialFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ loading

    def _load(self, records: bytes) -> None:
        """Replay the journal records, then check and hash the held prefix from disk."""
        count = self._chunks.count
        good = 0
        for off in range(0, len(records) - _RECORD.size + 1, _RECORD.size):
            word, crc, check = _RECORD.unpack_from(records, off)
            if check != zlib.crc32(_SALT + records[off : off + 8]):
                break  # a torn or zero-filled tail
            index = word & ~_DISCARD
            if index >= count:
                break
            if word & _DISCARD:
                self._chunks.discard(index)
                self._crcs[index] = 0
            else:
                self._chunks.add(index)
                self._crcs[index] = crc
            good = off + _RECORD.size
        if good != len(records):
            self._journal_size -= len(records) - good
            os.ftruncate(self._journal_fd, self._journal_size)
        self._hash_forward()


class FileReader:
    """Reads a complete file (the sender's side). Close it, or use ``with``."""

    def __init__(self, stored: StoredFile) -> None:
        self.file = stored
        try:
            self._fd = os.open(stored.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise FileNotFound(f"file {stored.fileid!r} is not in the store") from None
        except OSError as exc:
            raise _os_error(exc, f"opening {stored.fileid!r}") from None

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (ValueError if outside the file)."""
        if not (0 <= offset and 0 <= length and offset + length <= self.file.filesize):
            raise ValueError(f"{offset}+{length} is outside a file of {self.file.filesize} bytes")
        try:
            return _read_exact(self._fd, offset, length)
        except OSError as exc:
            raise _os_error(exc, f"reading {self.file.fileid!r}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
