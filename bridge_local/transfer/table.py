"""TransferTable: the transfers of one peer, by taskid, bounded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import _Transfer
from .codec import task_of
from .types import TransferCode, TransferUsageError, UnknownTask

__all__ = ["TransferTable"]


class TransferTable:
    """The transfers of one peer (one client connection, or the peer bridge), by taskid.

    Bounded: at most ``max_transfers`` at once. Task ids are the peer's and may collide with
    another peer's, so keep one table per peer.
    """

    def __init__(self, max_transfers: int = 64) -> None:
        if max_transfers < 1:
            raise ValueError("max_transfers must be at least 1")
        self.max_transfers = max_transfers
        self._by_task: dict[tuple[type, int | str], _Transfer] = {}

    def add(self, transfer: _Transfer) -> None:
        """Raises :class:`TransferUsageError` when the table is full or the taskid in use."""
        key = (type(transfer.taskid), transfer.taskid)
        if key in self._by_task:
            raise TransferUsageError(f"task {transfer.taskid!r} is already running")
        if len(self._by_task) >= self.max_transfers:
            raise TransferUsageError(f"at most {self.max_transfers} transfers at once")
        self._by_task[key] = transfer

    def get(self, taskid: int | str) -> _Transfer | None:
        return self._by_task.get((type(taskid), taskid))

    def route(self, message: Any) -> _Transfer:
        """The transfer a message is for. Raises :class:`TransferProtocolError`:
        ``BAD_MESSAGE`` without a valid taskid, :class:`UnknownTask` for an unknown one."""
        taskid = task_of(message)
        transfer = self.get(taskid)
        if transfer is None:
            raise UnknownTask(TransferCode.UNKNOWN_TASK, f"no transfer {taskid!r}", taskid)
        return transfer

    def remove(self, taskid: int | str) -> None:
        self._by_task.pop((type(taskid), taskid), None)

    def __len__(self) -> int:
        return len(self._by_task)

    def __iter__(self) -> Iterator[_Transfer]:
        return iter(list(self._by_task.values()))

    def next_deadline(self) -> float | None:
        deadlines = [d for t in self._by_task.values() if (d := t.next_deadline()) is not None]
        return min(deadlines, default=None)

    def handle_timeouts(self, now: float) -> None:
        for transfer in list(self._by_task.values()):
            transfer.handle_timeout(now)
