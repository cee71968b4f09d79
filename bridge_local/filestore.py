"""The bridge's file store: complete files and resumable partial files, by ``fileid``.

Layout under the data directory ``root`` (created 0700)::

    files/<key>.data      a complete, verified file (never written again)
    files/<key>.json      its record: fileid, filesize, md5, display name
    partial/<key>.part    a file being received, preallocated to its full size
    partial/<key>.journal its chunk journal (below)
    tmp/                  files being written before an atomic rename; emptied at start

``key`` is the sha256 of the fileid, so no name from the wire ever becomes a path: a fileid
or file name like ``../../etc/passwd``, ``/abs``, one holding NUL bytes or 10 KB long lands
in the same fixed-shape paths. File names are kept for display only
(:func:`display_name`).

**The journal** makes a partial file crash-safe without rewriting a map per chunk. It is a
header and then a 12-byte record per chunk stored::

    header  "TXBJ" 1 0 0 0 | filesize u64 | chunk_size u32 | md5 16 bytes
            | meta length u32 | meta (UTF-8 JSON: fileid, filename) | crc32 of all before
    record  index u32 (top bit set: chunk discarded) | crc32 of the chunk | crc32 of the
            8 bytes before, salted — so a torn or zero-filled tail is recognised and dropped

A chunk is written into ``.part`` first and journaled after, so the journal never names a
chunk that was not written; with ``fsync_interval`` bytes between fsyncs a power cut may
lose recent records (those chunks are received again) or leave a record whose data did not
reach the disk — which is why, on reopening, every chunk is checked against its crc32 before
it is trusted. The md5 is computed incrementally over the contiguous prefix of chunks held
(in memory as chunks arrive in order, from disk otherwise and after a restart), checking each
chunk's crc32 on the way; when the last chunk is stored only the tail is left to hash.

Limits: ``max_file_size`` per file and ``max_total_size`` for the store (complete files plus
the full size of every partial file, reserved when it is opened). Going over either, or the
disk filling up (``ENOSPC``/``EDQUOT``), raises a :class:`StoreError` and leaves the store as
it was: a chunk whose write failed is simply not held.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
import unicodedata
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toxbridge.errors import ToxbridgeError

from .chunkmap import ChunkMap, chunk_count
from .transfer import DEFAULT_CHUNK_SIZE, FileState, TransferCode, choose_chunk_size

__all__ = [
    "DEFAULT_FSYNC_INTERVAL",
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_TOTAL_SIZE",
    "ChecksumMismatch",
    "FileBusy",
    "FileConflict",
    "FileNotFound",
    "FileReader",
    "FileStore",
    "FileTooLarge",
    "InvalidFileId",
    "PartialFile",
    "StoreError",
    "StoreFull",
    "StoreIOError",
    "StoredFile",
    "display_name",
]

DEFAULT_MAX_FILE_SIZE = 4 * 1024**3
DEFAULT_MAX_TOTAL_SIZE = 64 * 1024**3
DEFAULT_FSYNC_INTERVAL = 8 * 1024 * 1024
MAX_FILEID_LENGTH = 4096

_MAGIC = b"TXBJ\x01\x00\x00\x00"
_HEADER = struct.Struct(">8sQI16sI")  # magic, filesize, chunk_size, md5, meta length
_RECORD = struct.Struct(">III")
_DISCARD = 0x80000000
_SALT = b"TXBR"
_MAX_META = 64 * 1024
_EMPTY_MD5 = hashlib.md5(b"").hexdigest()


# --------------------------------------------------------------------------- errors


class StoreError(ToxbridgeError):
    """The file store could not do it."""

    code = TransferCode.IO_ERROR


class InvalidFileId(StoreError):
    """The file id is not a string of 1 to 4096 characters."""

    code = TransferCode.BAD_MESSAGE


class FileTooLarge(StoreError):
    """The file is larger than this bridge accepts."""

    code = TransferCode.TOO_LARGE


class StoreFull(StoreError):
    """The file store is full (its quota, or the disk)."""

    code = TransferCode.NO_SPACE


class FileConflict(StoreError):
    """Another file (size or md5) is already stored or being received under this file id."""

    code = TransferCode.FILE_MISMATCH


class FileBusy(StoreError):
    """The file is already being received."""

    code = TransferCode.WRONG_STATE


class FileNotFound(StoreError):
    """No such file in the store."""

    code = TransferCode.NOT_FOUND


class StoreIOError(StoreError):
    """Reading or writing the file store failed."""

    code = TransferCode.IO_ERROR


class ChecksumMismatch(StoreError):
    """The received file does not have the expected md5.

    ``bad_chunks``: chunks whose data on disk no longer matches what was received; they have
    been discarded (receive them again). Empty: the data is as received, so the sender's
    data or md5 is wrong and the partial file should be discarded. ``actual`` is the md5
    computed, or None when bad chunks were found (pass both to ``Receiver.check_md5``).
    """

    code = TransferCode.MD5_MISMATCH

    def __init__(self, message: str, actual: str | None, bad_chunks: tuple[int, ...]):
        super().__init__(message)
        self.actual = actual
        self.bad_chunks = bad_chunks


def _os_error(exc: OSError, what: str) -> StoreError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreFull(f"{what}: the disk is full ({os.strerror(exc.errno)})")
    return StoreIOError(f"{what}: {exc.strerror or exc}")


# --------------------------------------------------------------------------- names


_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|]')
_WINDOWS_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$")


def display_name(name: Any, max_bytes: int = 255) -> str:
    """A harmless file name to show or to suggest for saving a download.

    The last path component only; control characters, path separators and characters
    Windows forbids become ``_``; no leading dots or spaces; reserved device names and empty
    results become ``file``; at most ``max_bytes`` UTF-8 bytes, the extension kept. Never
    used to build a path inside the store.
    """
    text = name if isinstance(name, str) else ""
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    text = unicodedata.normalize("NFC", text)
    text = re.split(r"[/\\]", text)[-1]
    text = _UNSAFE.sub("_", text).strip(" .")
    if not text or _WINDOWS_RESERVED.match(text):
        text = "file" + (f"_{text}" if text else "")
    if len(text.encode("utf-8")) > max_bytes:
        stem, dot, ext = text.rpartition(".")
        if not dot or len(ext.encode("utf-8")) > 16:
            stem, ext = text, ""
        suffix = f".{ext}" if ext else ""
        room = max_bytes - len(suffix.encode("utf-8"))
        stem = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
        text = stem + suffix
    return text


def _key(fileid: Any) -> str:
    if not isinstance(fileid, str) or not 1 <= len(fileid) <= MAX_FILEID_LENGTH:
        raise InvalidFileId(f"a file id is a string of 1..{MAX_FILEID_LENGTH} characters")
    return hashlib.sha256(fileid.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A complete, verified file."""

    fileid: str
    filesize: int
    md5: str
    filename: str  # display name
    path: Path


@dataclass(frozen=True, slots=True)
class _Journal:
    filesize: int
    chunk_size: int
    md5: str
    fileid: str
    filename: str
    meta: dict[str, Any]
    header_size: int


def _journal_header(
    filesize: int, chunk_size: int, md5: str, fileid: str, filename: str, meta: dict[str, Any]
) -> bytes:
    text = json.dumps({"fileid": fileid, "filename": filename, "meta": meta}, ensure_ascii=False)
    meta_bytes = text.encode("utf-8", "surrogatepass")
    if len(meta_bytes) > _MAX_META:
        raise ValueError(f"partial file metadata is over {_MAX_META} bytes")
    head = _HEADER.pack(_MAGIC, filesize, chunk_size, bytes.fromhex(md5), len(meta_bytes))
    head += meta_bytes
    return head + struct.pack(">I", zlib.crc32(head))


def _parse_header(data: bytes) -> _Journal | None:
    if len(data) < _HEADER.size + 4:
        return None
    magic, filesize, chunk_size, md5, meta_len = _HEADER.unpack_from(data)
    end = _HEADER.size + meta_len
    if magic != _MAGIC or chunk_size < 1 or meta_len > _MAX_META or len(data) < end + 4:
        return None
    if struct.unpack_from(">I", data, end)[0] != zlib.crc32(data[:end]):
        return None
    try:
        meta = json.loads(data[_HEADER.size : end].decode("utf-8", "surrogatepass"))
        fileid, filename, extra = meta["fileid"], meta["filename"], meta.get("meta", {})
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(fileid, str) or not isinstance(filename, str) or not isinstance(extra, dict):
        return None
    return _Journal(filesize, chunk_size, md5.hex(), fileid, filename, extra, end + 4)


def _record(index: int, crc: int, discard: bool = False) -> bytes:
    word = index | (_DISCARD if discard else 0)
    head = struct.pack(">II", word, crc)
    return head + struct.pack(">I", zlib.crc32(_SALT + head))


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]
        offset += n


def _read_exact(fd: int, offset: int, length: int) -> bytes:
    parts = []
    while length:
        data = os.pread(fd, length, offset)
        if not data:
            raise OSError(errno.EIO, "unexpected end of file")
        parts.append(data)
        offset += len(data)
        length -= len(data)
    return b"".join(parts)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- partial files


class PartialFile:
    """A file being received: write chunks in any order, then :meth:`finish`.

    Made by :meth:`FileStore.open_partial`; close it (or use ``with``) to release it.
    ``chunks`` is the map of chunks held, ``chunk_size`` the size they were cut in (the one
    to announce in the ``8000``).
    """

    def __init__(
        self, store: FileStore, key: str, journal: _Journal, part_fd: int, journal_fd: int
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
        self._store._open.pop(self._key, None)

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


# --------------------------------------------------------------------------- the store


class FileStore:
    """Complete and partial files under ``root``, by fileid, within size limits.

    One process uses a store at a time; within it, a partial file is open at most once.
    ``fsync_interval``: bytes written between fsyncs of a partial file (0: every chunk;
    None: only when it completes). ``preallocate``: reserve a partial file's whole size on
    disk when it is opened (so a full disk shows then, not half way). ``verify_on_finish``:
    read every chunk back and check its crc32 before declaring a file complete.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_total_size: int = DEFAULT_MAX_TOTAL_SIZE,
        fsync_interval: int | None = DEFAULT_FSYNC_INTERVAL,
        preallocate: bool = True,
        verify_on_finish: bool = True,
    ) -> None:
        if max_file_size < 0 or max_total_size < 0:
            raise ValueError("size limits must not be negative")
        self.root = Path(root)
        self.max_file_size = max_file_size
        self.max_total_size = max_total_size
        self.fsync_interval = fsync_interval
        self.preallocate = preallocate
        self.verify_on_finish = verify_on_finish
        self._files = self.root / "files"
        self._partial = self.root / "partial"
        self._tmp = self.root / "tmp"
        for d in (self.root, self._files, self._partial, self._tmp):
            d.mkdir(mode=0o700, exist_ok=True)
        self._open: dict[str, PartialFile] = {}
        self._complete_sizes: dict[str, int] = {}  # key -> size, for the quota
        self._partial_sizes: dict[str, int] = {}
        self.cleanup()

    # ------------------------------------------------------------------ queries

    @property
    def used(self) -> int:
        """Bytes counted against ``max_total_size``: complete files and reserved partials."""
        return sum(self._complete_sizes.values()) + sum(self._partial_sizes.values())

    def get(self, fileid: str) -> StoredFile | None:
        """The complete file ``fileid``, or None."""
        return self._read_info(_key(fileid))

    def state(self, fileid: str) -> FileState:
        """AVAILABLE (complete), PARTIAL (being received) or MISSING."""
        key = _key(fileid)
        if self._read_info(key) is not None:
            return FileState.AVAILABLE
        if (self._partial / f"{key}.journal").exists():
            return FileState.PARTIAL
        return FileState.MISSING

    def open_reader(self, fileid: str) -> FileReader:
        """Raises :class:`FileNotFound` unless ``fileid`` is complete."""
        stored = self.get(fileid)
        if stored is None:
            raise FileNotFound(f"file {fileid!r} is not in the store")
        return FileReader(stored)

    # ------------------------------------------------------------------ receiving

    def open_partial(
        self,
        fileid: str,
        filesize: int,
        md5: str,
        *,
        filename: str = "",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        meta: dict[str, Any] | None = None,
    ) -> PartialFile:
        """Start receiving ``fileid``, or resume it: a partial file already in the store
        keeps its chunks and its chunk size (``chunk_size`` is used only for a new one).
        ``meta``: small JSON-able facts kept with a new partial file (say the taskid and the
        peer, to restore its transfer after a restart: :meth:`partials`).

        On resume every chunk of the held prefix is read back, checked against its crc32
        and hashed (bad ones are discarded). Raises :class:`FileTooLarge`,
        :class:`StoreFull` (quota, or no room on disk for the whole file),
        :class:`FileConflict` (the fileid is complete, or partial with another size or md5),
        :class:`FileBusy` (already open), :class:`StoreIOError`.
        """
        key = _key(fileid)
        if not isinstance(md5, str) or not re.fullmatch("[0-9a-fA-F]{32}", md5):
            raise ValueError("md5 must be 32 hexadecimal digits")
        md5 = md5.lower()
        if key in self._open:
            raise FileBusy(f"file {fileid!r} is already being received")
        stored = self._read_info(key)
        if stored is not None:
            raise FileConflict(f"file {fileid!r} is already complete in the store")
        if filesize > self.max_file_size:
            raise FileTooLarge(
                f"file {fileid!r} is {filesize} bytes, the limit is {self.max_file_size}"
            )
        part_path = self._partial / f"{key}.part"
        journal_path = self._partial / f"{key}.journal"
        existing = self._read_journal(journal_path)
        if existing is not None and part_path.exists():
            journal, records = existing
            if journal.filesize != filesize or journal.md5 != md5:
                raise FileConflict(
                    f"file {fileid!r} is being received with another size or md5"
                )
            return self._open_existing(key, journal, records, part_path, journal_path)
        if existing is not None or part_path.exists():  # half of a pair: start again
            self._remove_partial(key)
        return self._create(key, fileid, filesize, md5, filename, chunk_size, meta or {})

    def _create(
        self,
        key: str,
        fileid: str,
        filesize: int,
        md5: str,
        filename: str,
        chunk_size: int,
        meta: dict[str, Any],
    ) -> PartialFile:
        if self.used + filesize > self.max_total_size:
            raise StoreFull(
                f"file {fileid!r} ({filesize} bytes) does not fit the store: "
                f"{self.used} of {self.max_total_size} bytes used"
            )
        chunk_size = choose_chunk_size(filesize, chunk_size)
        header = _journal_header(filesize, chunk_size, md5, fileid, display_name(filename), meta)
        part_path = self._partial / f"{key}.part"
        journal_path = self._partial / f"{key}.journal"
        tmp_journal = self._tmp / f"{key}.journal"
        part_fd = journal_fd = -1
        try:
            part_fd = os.open(part_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            if filesize:
                if self.preallocate and hasattr(os, "posix_fallocate"):
                    try:
                        os.posix_fallocate(part_fd, 0, filesize)
                    except OSError as exc:
                        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                            raise
                        os.ftruncate(part_fd, filesize)
                else:
                    os.ftruncate(part_fd, filesize)
            fd = os.open(tmp_journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, header, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp_journal, journal_path)
            _fsync_dir(self._partial)
            journal_fd = os.open(journal_path, os.O_RDWR)
        except OSError as exc:
            for fd in (part_fd, journal_fd):
                if fd >= 0:
                    os.close(fd)
            for path in (part_path, journal_path, tmp_journal):
                path.unlink(missing_ok=True)
            raise _os_error(exc, f"creating {fileid!r}") from None
        self._partial_sizes[key] = filesize
        journal = _parse_header(header)
        assert journal is not None
        partial = PartialFile(self, key, journal, part_fd, journal_fd)
        self._open[key] = partial
        return partial

    def _open_existing(
        self, key: str, journal: _Journal, records: bytes, part_path: Path, journal_path: Path
    ) -> PartialFile:
        part_fd = journal_fd = -1
        try:
            part_fd = os.open(part_path, os.O_RDWR)
            journal_fd = os.open(journal_path, os.O_RDWR)
            partial = PartialFile(self, key, journal, part_fd, journal_fd)
            partial._load(records)
        except OSError as exc:
            for fd in (part_fd, journal_fd):
                if fd >= 0:
                    os.close(fd)
            raise _os_error(exc, f"reopening {journal.fileid!r}") from None
        self._open[key] = partial
        self._partial_sizes[key] = journal.filesize
        return partial

    def partials(self) -> list[tuple[str, dict[str, Any]]]:
        """``(fileid, meta)`` of every partial file, to restore their transfers at start."""
        found = []
        for path in sorted(self._partial.glob("*.journal")):
            existing = self._read_journal(path)
            if existing is not None:
                found.append((existing[0].fileid, existing[0].meta))
        return found

    def partial_info(self, fileid: str) -> tuple[int, str, int, ChunkMap] | None:
        """``(filesize, md5, chunk_size, chunks)`` of a partial file as journaled (not
        checked against the data: :meth:`open_partial` does that), or None."""
        key = _key(fileid)
        if key in self._open:
            p = self._open[key]
            return p.filesize, p.md5, p.chunk_size, p.chunks
        existing = self._read_journal(self._partial / f"{key}.journal")
        if existing is None:
            return None
        journal, records = existing
        chunks = ChunkMap(chunk_count(journal.filesize, journal.chunk_size))
        for off in range(0, len(records) - _RECORD.size + 1, _RECORD.size):
            word, _crc, check = _RECORD.unpack_from(records, off)
            if check != zlib.crc32(_SALT + records[off : off + 8]):
                break
            index = word & ~_DISCARD
            if index >= chunks.count:
                break
            (chunks.discard if word & _DISCARD else chunks.add)(index)
        return journal.filesize, journal.md5, journal.chunk_size, chunks

    def delete(self, fileid: str) -> bool:
        """Remove ``fileid`` (complete or partial); True if there was something."""
        key = _key(fileid)
        if key in self._open:
            raise FileBusy(f"file {fileid!r} is being received")
        found = False
        stored = self._read_info(key)
        if stored is not None:
            (self._files / f"{key}.json").unlink(missing_ok=True)
            (self._files / f"{key}.data").unlink(missing_ok=True)
            self._complete_sizes.pop(key, None)
            found = True
        if (self._partial / f"{key}.journal").exists() or (self._partial / f"{key}.part").exists():
            self._remove_partial(key)
            found = True
        return found

    # ------------------------------------------------------------------ internals

    def _read_info(self, key: str) -> StoredFile | None:
        data_path = self._files / f"{key}.data"
        try:
            info = json.loads((self._files / f"{key}.json").read_text("utf-8"))
            fileid, filesize, md5 = info["fileid"], info["filesize"], info["md5"]
            filename = info.get("filename", "")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not (
            isinstance(fileid, str)
            and isinstance(filesize, int)
            and isinstance(md5, str)
            and isinstance(filename, str)
            and 1 <= len(fileid) <= MAX_FILEID_LENGTH
            and _key(fileid) == key
        ):
            return None
        try:
            if data_path.stat().st_size != filesize:
                return None
        except OSError:
            return None
        return StoredFile(fileid, filesize, md5, filename, data_path)

    def _read_journal(self, path: Path) -> tuple[_Journal, bytes] | None:
        try:
            data = path.read_bytes()
        except OSError:
            return None
        journal = _parse_header(data[: _HEADER.size + _MAX_META + 4])
        if journal is None:
            return None
        if chunk_count(journal.filesize, journal.chunk_size) >= _DISCARD:
            return None
        return journal, data[journal.header_size :]

    def _remove_partial(self, key: str) -> None:
        self._open.pop(key, None)
        (self._partial / f"{key}.journal").unlink(missing_ok=True)
        (self._partial / f"{key}.part").unlink(missing_ok=True)
        self._partial_sizes.pop(key, None)

    def _complete(self, partial: PartialFile) -> StoredFile:
        key = partial._key
        data_path = self._files / f"{key}.data"
        info_path = self._files / f"{key}.json"
        tmp_info = self._tmp / f"{key}.json"
        info = {
            "fileid": partial.fileid,
            "filesize": partial.filesize,
            "md5": partial.md5,
            "filename": partial.filename,
        }
        try:
            os.fsync(partial._part_fd)
            fd = os.open(tmp_info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                text = json.dumps(info, ensure_ascii=False)
                _write_all(fd, text.encode("utf-8", "surrogatepass"), 0)
                os.fsync(fd)
            finally:
                os.close(fd)
            # The record first: without its data it is ignored (and cleaned up), and the
            # partial file is still there to finish again.
            os.replace(tmp_info, info_path)
            os.replace(self._partial / f"{key}.part", data_path)
            _fsync_dir(self._files)
        except OSError as exc:
            tmp_info.unlink(missing_ok=True)
            raise _os_error(exc, f"completing {partial.fileid!r}") from None
        partial.close()
        (self._partial / f"{key}.journal").unlink(missing_ok=True)
        self._partial_sizes.pop(key, None)
        self._complete_sizes[key] = partial.filesize
        stored = self._read_info(key)
        assert stored is not None
        return stored

    def cleanup(self) -> None:
        """Remove temporary files and half-written leftovers, and recount the space used.
        Done when the store is opened; partial files open now are left alone."""
        for path in self._tmp.iterdir():
            _unlink_any(path)
        complete: dict[str, int] = {}
        partial: dict[str, int] = {}
        keys: set[str] = set()
        for path in self._files.iterdir():
            key, _, ext = path.name.partition(".")
            if ext not in ("data", "json") or not re.fullmatch("[0-9a-f]{64}", key):
                _unlink_any(path)
                continue
            keys.add(key)
        for key in keys:
            stored = self._read_info(key)
            if stored is None:  # a crash between the renames, or a damaged record
                (self._files / f"{key}.json").unlink(missing_ok=True)
                (self._files / f"{key}.data").unlink(missing_ok=True)
            else:
                complete[key] = stored.filesize
        keys = set()
        for path in self._partial.iterdir():
            key, _, ext = path.name.partition(".")
            if ext not in ("part", "journal") or not re.fullmatch("[0-9a-f]{64}", key):
                _unlink_any(path)
                continue
            keys.add(key)
        for key in keys:
            if key in self._open:
                partial[key] = self._open[key].filesize
                continue
            existing = self._read_journal(self._partial / f"{key}.journal")
            if existing is None or not (self._partial / f"{key}.part").exists():
                self._remove_partial(key)
            else:
                partial[key] = existing[0].filesize
        self._complete_sizes = complete
        self._partial_sizes = partial


def _unlink_any(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                _unlink_any(child)
            path.rmdir()
        else:
            path.unlink()
    except OSError:
        pass
