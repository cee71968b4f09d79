"""The bridge's file store: complete files and resumable partial files, by ``fileid``.

Layout under the data directory ``root`` (created 0700)::

    files/<key>.data      a complete, verified file (never written again)
    files/<key>.json      its record: fileid, filesize, md5, display name
    partial/<key>.part    a file being received, preallocated to its full size
    partial/<key>.journal its chunk journal (:mod:`.journal`)
    tmp/                  files being written before an atomic rename; emptied at start

``key`` is the sha256 of the fileid, so no name from the wire ever becomes a path: a fileid
or file name like ``../../etc/passwd``, ``/abs``, one holding NUL bytes or 10 KB long lands
in the same fixed-shape paths. File names are kept for display only
(:func:`display_name`).

The modules: ``errors`` (the StoreError tree), ``journal`` (keys, records, the journal that
makes partial files crash-safe), ``partial`` (PartialFile, FileReader), ``store`` (FileStore:
index, quota, cleanup), ``drive`` (a transfer machine's reads and writes served from them);
every public name is importable from here. Sans-IO it is not: this is
the one package of bridge_local that touches the disk for files. It may import
``bridge_local.transfer`` (codes, chunk maps) and ``toxbridge.errors``, nothing above.

Limits: ``max_file_size`` per file and ``max_total_size`` for the store (complete files plus
the full size of every partial file, reserved when it is opened). Going over either, or the
disk filling up (``ENOSPC``/``EDQUOT``), raises a :class:`StoreError` and leaves the store as
it was: a chunk whose write failed is simply not held.
"""

from .errors import (
    ChecksumMismatch,
    FileBusy,
    FileConflict,
    FileNotFound,
    FileTooLarge,
    InvalidFileId,
    StoreError,
    StoreFull,
    StoreIOError,
)
from .drive import drive
from .journal import StoredFile, display_name
from .partial import FileReader, PartialFile
from .store import DEFAULT_FSYNC_INTERVAL, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_TOTAL_SIZE, FileStore

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
    "drive",
]
