"""Serving a transfer machine's I/O events from the store: the one place where a transfer
(``bridge_local.transfer``) reads and writes files; the bridge and the client share it."""

from __future__ import annotations

from typing import Any

from ..transfer import ChunkNeeded, ChunkReceived, TransferCode, VerifyNeeded
from .errors import ChecksumMismatch, StoreError
from .journal import StoredFile
from .partial import PartialFile

__all__ = ["drive"]


def drive(transfer: Any, resource: Any, now: float) -> list[Any]:
    """Serve the I/O events of one machine with its ``resource`` (a :class:`PartialFile`,
    a :class:`StoredFile` already complete, or anything with ``read(offset, length)``).
    Returns the other events (Progress, Completed, Failed, Paused, ...), in order."""
    others: list[Any] = []
    while True:
        event = transfer.next_event()
        if event is None:
            return others
        if isinstance(event, ChunkNeeded):
            try:
                data = resource.read(event.offset, event.length)
            except (StoreError, OSError, ValueError) as exc:
                transfer.fail(TransferCode.IO_ERROR, f"reading the file: {exc}")
                continue
            transfer.send_chunk(event.index, data, now)
        elif isinstance(event, ChunkReceived):
            if not isinstance(resource, PartialFile):
                transfer.chunk_not_stored(event.index)
                continue
            try:
                bad = resource.write_chunk(event.index, event.data)
            except StoreError as exc:
                transfer.fail(exc.code, str(exc))
                continue
            transfer.chunk_stored(event.index)
            if bad:
                transfer.discard_chunks(bad)
        elif isinstance(event, VerifyNeeded):
            if isinstance(resource, StoredFile):
                transfer.check_md5(resource.md5)
                continue
            try:
                stored = resource.finish()
            except ChecksumMismatch as exc:
                transfer.check_md5(exc.actual, untrusted=exc.bad_chunks)
            except StoreError as exc:
                transfer.fail(exc.code, str(exc))
            else:
                transfer.check_md5(stored.md5)
        else:
            others.append(event)
