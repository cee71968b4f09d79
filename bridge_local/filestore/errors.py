"""What the file store raises: :class:`StoreError` and its kinds, each with the transfer
code that reports it to the peer."""

from __future__ import annotations

import errno
import os

from toxbridge.errors import ToxbridgeError

from ..transfer import TransferCode


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
