"""What both transfer roles share: state, outbox, events, pause/abort/fail, statistics."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from .chunkmap import ChunkMap, to_wire
from ..protocol import CommandId
from .codec import _check_taskid, _fail, _int, _same_task, _str
from .types import (
    MAX_FILE_SIZE,
    MAX_MESSAGE_LENGTH,
    _FINAL,
    _MD5,
    Aborted,
    Control,
    Event,
    Failed,
    Paused,
    Progress,
    Resumed,
    Role,
    State,
    TransferCode,
    TransferProtocolError,
    TransferStatistics,
    TransferUsageError,
    UnknownTask,
    _peer_error,
)


class _Transfer:
    """What both roles share: state, outbox, events, pause/abort/fail, statistics."""

    ROLE: Role

    def __init__(self, taskid: int | str, filesize: int, md5: str, state: State) -> None:
        self.taskid = _check_taskid(taskid)
        if not 0 <= filesize <= MAX_FILE_SIZE:
            raise TransferUsageError(f"file size {filesize} is not in 0..{MAX_FILE_SIZE}")
        if not isinstance(md5, str) or not _MD5.fullmatch(md5):
            raise TransferUsageError("md5 must be 32 hexadecimal digits")
        self.filesize = filesize
        self.md5 = md5.lower()
        self.state = state
        self.session: int | None = 0
        self.chunk_size = 0  # 0 until agreed
        self.paused_by_local = False
        self.paused_by_peer = False
        self.error: tuple[int, str] | None = None  # (code, message) once FAILED
        self._chunks = ChunkMap(0)  # sender: the receiver's map as known; receiver: its own
        self._out: list[dict[str, Any]] = []
        self._events: deque[Event] = deque()
        self._stats = TransferStatistics()

    # ------------------------------------------------------------------ shell interface

    def data_to_send(self) -> list[dict[str, Any]]:
        """The messages to send to the peer, in order (each taken once)."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        """Take the pending events, in order (events queued while iterating are included)."""
        while self._events:
            yield self._events.popleft()

    def statistics(self) -> TransferStatistics:
        return self._stats

    @property
    def paused(self) -> bool:
        return self.paused_by_local or self.paused_by_peer

    @property
    def finished(self) -> bool:
        """DONE, FAILED or ABORTED: nothing more will happen."""
        return self.state in _FINAL

    @property
    def chunks(self) -> ChunkMap:
        """A copy of the chunk map: the receiver's own, or the sender's view of it."""
        return self._chunks.copy()

    @property
    def done_bytes(self) -> int:
        held = len(self._chunks)
        if not held:
            return 0
        size = held * self.chunk_size
        last = self._chunks.count - 1
        if last in self._chunks:
            size -= last * self.chunk_size + self.chunk_size - self.filesize
        return size

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` should be called next (None: no timer running)."""
        return None

    def handle_timeout(self, now: float) -> None:
        """Act on an expired timer (a no-op before :meth:`next_deadline`)."""

    def pause(self) -> None:
        """Stop sending chunks (both sides) and tell the peer (``7070`` PAUSE)."""
        self._require_live("pause")
        if not self.paused_by_local:
            self.paused_by_local = True
            self._send_control(Control.PAUSE)

    def resume(self, now: float) -> None:
        """Lift our pause and tell the peer (``7070`` RESUME)."""
        self._require_live("resume")
        if self.paused_by_local:
            self.paused_by_local = False
            self._send_control(Control.RESUME)
            self._unpaused(now)

    def abort(self, message: str = "") -> None:
        """Give the transfer up for good and tell the peer (``7070`` ABORT)."""
        if self.finished:
            return
        self._send_control(Control.ABORT, message)
        self.state = State.ABORTED
        self._events.append(Aborted(False, message))

    def fail(self, code: TransferCode, message: str) -> None:
        """Fail on a local error (disk full, read error …) and tell the peer (``7080``)."""
        if code == TransferCode.OK:
            raise TransferUsageError("a failure needs an error code")
        if not self.finished:
            self._failed(code, message, by_peer=False, notify=True)

    def receive(self, message: Mapping[str, Any], now: float) -> None:
        """Process one message from the peer (dict form or JSON form).

        Raises :class:`UnknownTask` for another task's message (nothing changes), and
        :class:`TransferProtocolError` for a message that breaks the protocol (the machine
        has failed and queued a ``7080``; its chunk map is unchanged).
        """
        if not isinstance(message, Mapping):
            raise _fail(TransferCode.BAD_MESSAGE, "a transfer message must be an object")
        taskid = message.get("taskid")
        if not _same_task(taskid, self.taskid):
            raise UnknownTask(
                TransferCode.UNKNOWN_TASK,
                f"message for task {taskid!r}, not {self.taskid!r}",
                taskid,
            )
        command = message.get("command")
        if self.finished:
            self._receive_final(command, message)
            return
        try:
            if command == CommandId.TRANSFER_PAUSE:
                self._receive_control(message, now)
            elif command == CommandId.PEER_ERROR:
                code = _int(message, "result", lo=-(2**31), hi=2**31 - 1)
                text = _str(message, "message", MAX_MESSAGE_LENGTH, required=False) or ""
                self._failed(code, text or "the peer reported an error", by_peer=True)
            else:
                if type(command) is not int:  # a list or map from the wire is unhashable
                    raise _fail(TransferCode.BAD_MESSAGE, f"command {command!r} is not a number",
                                self.taskid)
                handler = self._handlers().get(command)
                if handler is None:
                    raise _fail(
                        TransferCode.WRONG_STATE,
                        f"command {command!r} is not sent to a {self.ROLE.value}",
                        self.taskid,
                    )
                handler(message, now)
        except TransferProtocolError as exc:
            exc.taskid = self.taskid
            self._failed(exc.code, exc.message, by_peer=False, notify=True)
            raise

    # ------------------------------------------------------------------ internals

    def _handlers(self) -> dict[int, Any]:
        raise NotImplementedError

    def _require_live(self, what: str) -> None:
        if self.finished:
            raise TransferUsageError(f"cannot {what} a transfer that is {self.state.value}")

    def _send(self, command: CommandId, **fields: Any) -> None:
        self._out.append({"command": command.value, "taskid": self.taskid, **fields})

    def _send_control(self, control: Control, message: str = "") -> None:
        fields: dict[str, Any] = {"result": control.value}
        if message:
            fields["message"] = message[:MAX_MESSAGE_LENGTH]
        self._send(CommandId.TRANSFER_PAUSE, **fields)

    def _receive_control(self, message: Mapping[str, Any], now: float) -> None:
        value = _int(message, "result", lo=-(2**31), hi=2**31 - 1)
        if value == Control.PAUSE:
            if not self.paused_by_peer:
                self.paused_by_peer = True
                self._events.append(Paused(True))
        elif value == Control.RESUME:
            if self.paused_by_peer:
                self.paused_by_peer = False
                self._events.append(Resumed(True))
                self._unpaused(now)
        elif value == Control.ABORT:
            text = _str(message, "message", MAX_MESSAGE_LENGTH, required=False) or ""
            self.state = State.ABORTED
            self._events.append(Aborted(True, text))
        else:
            raise _fail(
                TransferCode.BAD_MESSAGE,
                f"a 7070 result is 0 (resume), 1 (pause) or 2 (abort), not {value}",
                self.taskid,
            )

    def _unpaused(self, now: float) -> None:
        pass

    def _failed(self, code: int, message: str, *, by_peer: bool, notify: bool = False) -> None:
        if notify:
            self._out.append(_peer_error(self.taskid, code, message))
        self.state = State.FAILED
        self.error = (int(code), message)
        try:
            code = TransferCode(code)
        except ValueError:
            pass
        self._events.append(Failed(code, message, by_peer))

    def _receive_final(self, command: Any, message: Mapping[str, Any]) -> None:
        if command in (CommandId.TRANSFER_PAUSE, CommandId.PEER_ERROR):
            return  # never answer an error with an error
        if self.state is State.FAILED:
            assert self.error is not None
            self._out.append(_peer_error(self.taskid, self.error[0], self.error[1]))
        elif self.state is State.ABORTED:
            self._send_control(Control.ABORT, "the transfer was aborted")

    def _progress(self) -> None:
        self._events.append(Progress(self.done_bytes, self.filesize))

    def _map_wire(self) -> list[dict[str, Any]]:
        return to_wire(self._chunks, self.filesize, self.chunk_size)

    def _bump(self, **counts: int) -> None:
        self._stats = replace(
            self._stats, **{k: getattr(self._stats, k) + v for k, v in counts.items()}
        )
