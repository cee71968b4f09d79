"""FileStore: the index of complete and partial files, the quota, the clean-up at start."""


from __future__ import annotations

import errno
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

from ..transfer.chunkmap import ChunkMap, chunk_count
from .errors import (
    FileBusy,
    FileConflict,
    FileNotFound,
    FileTooLarge,
    StoreFull,
    _os_error,
)
from .journal import (
    MAX_FILEID_LENGTH,
    _DISCARD,
    _HEADER,
    _MAX_META,
    _RECORD,
    _SALT,
    StoredFile,
    _Journal,
    _fsync_dir,
    _journal_header,
    _key,
    _parse_header,
    _write_all,
    display_name,
)
from .partial import FileReader, PartialFile
from ..transfer import DEFAULT_CHUNK_SIZE, FileState, choose_chunk_size


DEFAULT_MAX_FILE_SIZE = 4 * 1024**3
DEFAULT_MAX_TOTAL_SIZE = 64 * 1024**3
DEFAULT_FSYNC_INTERVAL = 8 * 1024 * 1024


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

    def _closed(self, key: str) -> None:
        self._open.pop(key, None)

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
