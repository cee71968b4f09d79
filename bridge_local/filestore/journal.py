"""The file store's on-disk formats: keys for names, complete-file records, and the chunk
journal of a partial file.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidFileId

MAX_FILEID_LENGTH = 4096

_MAGIC = b"TXBJ\x01\x00\x00\x00"
_HEADER = struct.Struct(">8sQI16sI")  # magic, filesize, chunk_size, md5, meta length
_RECORD = struct.Struct(">III")
_DISCARD = 0x80000000
_SALT = b"TXBR"
_MAX_META = 64 * 1024
_EMPTY_MD5 = hashlib.md5(b"").hexdigest()


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
