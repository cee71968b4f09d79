"""Files from a client's side: upload, download and send, with progress as events.

::

    async with open_client(port, name="alice") as client:
        ref = await send_file(client, bob_token, "report.pdf", on_event=print)
    async with open_client(port, name="bob") as client:
        path = await download(client, ref.fileid, "downloads/", on_event=print)

The same transfer machine as the bridge's (``bridge_local.transfer``) runs here: an upload is
a :class:`~bridge_local.transfer.Sender`, a download a
:class:`~bridge_local.transfer.Receiver` writing into a small
:class:`~bridge_local.filestore.FileStore` in ``DEST/.toxbridge-partial`` — so a download
interrupted (even by kill -9) resumes from its chunk map when run again, and an upload
resumes from the bridge's. Events given to ``on_event``: :class:`FileProgress` (often),
and the machine's own ``Paused``/``Resumed``/``ChunksDiscarded``.

One-shot commands (``toxbridge send-file`` / ``get-file``)::

    python -m bridge_local.files send --app-port N --name ME --to NAME PATH
    python -m bridge_local.files get --app-port N --name ME [--dest DIR] FILEID
    (--app-socket PATH instead of --app-port N; --app-token-file F for a node of another account)
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import trio

from toxbridge.usage import USER_ERROR, OneLineParser

from .client import BridgeError, Client, add_app_arguments, app_options, open_client, open_nursery
from .filestore import FileStore, StoreError, display_name, drive
from .transfer import (
    Aborted,
    ChunksDiscarded,
    Failed,
    FileState,
    InitType,
    Paused,
    Progress,
    Receiver,
    Resumed,
    Sender,
    TransferProtocolError,
    parse_offer,
    refuse_offer,
    to_json,
)

__all__ = ["FileProgress", "FileRef", "ProgressBar", "TransferFailed", "TransferHandle",
           "download", "file_ref", "main", "new_progress", "send_file", "upload"]

PARTIAL_DIR = ".toxbridge-partial"
_SHOWN = (Paused, Resumed, ChunksDiscarded)  # the machine's events given to on_event


class TransferFailed(Exception):
    """The transfer failed or was refused; the message says why (with the code)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"transfer failed ({code}): {message}")
        self.code = code


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file on the bridge: what a file message (``1002`` type 2) carries."""

    fileid: str
    filename: str
    filesize: int
    md5: str


@dataclass(frozen=True, slots=True)
class FileProgress:
    """``done`` of ``total`` bytes at ``rate`` bytes/s; ``eta`` seconds (None: unknown)."""

    fileid: str
    done: int
    total: int
    rate: float
    eta: float | None


class _Rate:
    def __init__(self) -> None:
        self.samples: list[tuple[float, int]] = []

    def update(self, done: int) -> float:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.pop(0)
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now > t0 else 0.0


class TransferHandle:
    """Pause, resume or abort a running transfer (``7070``) from another task."""

    def __init__(self) -> None:
        self._send: trio.MemorySendChannel[Any] | None = None
        self.transfer: Any = None

    def pause(self) -> None:
        if self._send is not None:
            self._send.send_nowait(("pause",))

    def resume(self) -> None:
        if self._send is not None:
            self._send.send_nowait(("resume",))

    def abort(self) -> None:
        if self._send is not None:
            self._send.send_nowait(("abort",))


async def _run(client: Client, t: Any, resource: Any, inbox: trio.MemoryReceiveChannel,
               fileid: str, on_event: Callable[[Any], None] | None,
               handle: TransferHandle | None) -> None:
    """Drive one machine until it finishes. Raises :class:`TransferFailed`."""
    local_send, local_recv = trio.open_memory_channel[Any](16)
    if handle is not None:
        handle._send, handle.transfer = local_send, t
    rate = _Rate()
    last_progress = 0.0

    async def pump_local() -> None:
        async for item in local_recv:
            await merged_send.send(item)

    async def pump_remote() -> None:
        async for item in inbox:
            await merged_send.send(item)
        await merged_send.send(("closed",))

    merged_send, merged = trio.open_memory_channel[Any](0)
    async with open_nursery() as nursery:  # TransferFailed comes out as itself
        nursery.start_soon(pump_local)
        nursery.start_soon(pump_remote)
        try:
            while True:
                now = time.time()
                for event in drive(t, resource, now):
                    if isinstance(event, Progress):
                        mono = time.monotonic()
                        r = rate.update(event.done)
                        if mono - last_progress >= 0.1 or event.done == event.total:
                            last_progress = mono
                            eta = (event.total - event.done) / r if r > 0 else None
                            if on_event is not None:
                                on_event(FileProgress(fileid, event.done, event.total, r, eta))
                    elif isinstance(event, Failed):
                        raise TransferFailed(int(event.code), event.message)
                    elif isinstance(event, Aborted):
                        raise TransferFailed(7070, f"aborted: {event.message or 'by the peer'}")
                    elif on_event is not None and isinstance(event, _SHOWN):
                        on_event(event)
                for message in t.data_to_send():
                    await client.send_obj(to_json(message))
                if t.finished:
                    return
                deadline = t.next_deadline()
                timeout = max(0.0, deadline - time.time()) if deadline is not None else math.inf
                with trio.move_on_after(timeout):
                    item = await merged.receive()
                    if isinstance(item, tuple):
                        if item[0] == "closed":
                            raise TransferFailed(7112, "the bridge closed the connection")
                        if item[0] == "pause" and not t.finished:
                            t.pause()
                        elif item[0] == "resume" and not t.finished:
                            t.resume(time.time())
                        elif item[0] == "abort":
                            t.abort("aborted by the user")
                        continue
                    try:
                        t.receive(item, time.time())
                    except TransferProtocolError:
                        pass  # the machine failed and queued a 7080: raised next turn
                    continue
                t.handle_timeout(time.time())
        finally:
            nursery.cancel_scope.cancel()


class _PathReader:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def close(self) -> None:
        os.close(self.fd)


def file_ref(path: str | os.PathLike[str]) -> FileRef:
    """The md5 and size of a local file, and its default fileid (``md5-size``)."""
    path = Path(path)
    h = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    md5 = h.hexdigest()
    return FileRef(f"{md5}-{size}", display_name(path.name) or "file", size, md5)


async def upload(client: Client, path: str | os.PathLike[str], *, ref: FileRef | None = None,
                 on_event: Callable[[Any], None] | None = None,
                 handle: TransferHandle | None = None, window: int = 16) -> FileRef:
    """Upload ``path`` to the client's bridge (resuming what the bridge holds already).
    Returns the :class:`FileRef` to put in a file message. Raises :class:`TransferFailed`."""
    path = Path(path)
    ref = ref or await trio.to_thread.run_sync(file_ref, path)
    taskid = "up-" + secrets.token_hex(6)
    inbox = client.open_task(taskid)
    try:
        info = await client.request({"command": 4001, "token": client.token, "fileid": ref.fileid,
                                     "taskid": taskid, "type": int(InitType.UPLOAD)})
        if info.get("result") == FileState.AVAILABLE and info.get("md5") == ref.md5:
            if on_event is not None:
                on_event(FileProgress(ref.fileid, ref.filesize, ref.filesize, 0.0, 0.0))
            return ref
        sender = Sender(taskid, filename=ref.filename, filesize=ref.filesize, md5=ref.md5,
                        fileid=ref.fileid, window=window)
        sender.start(time.time())
        reader = _PathReader(path)
        try:
            await _run(client, sender, reader, inbox, ref.fileid, on_event, handle)
        finally:
            reader.close()
        return ref
    finally:
        client.close_task(taskid)


async def send_file(client: Client, goaltoken: str, path: str | os.PathLike[str], *,
                    msg: str = "", on_event: Callable[[Any], None] | None = None,
                    handle: TransferHandle | None = None) -> tuple[FileRef, dict[str, Any]]:
    """Upload ``path``, then send the file message; returns the ref and the ``2002``."""
    ref = await upload(client, path, on_event=on_event, handle=handle)
    reply = await client.send(goaltoken, msg or ref.filename, type=2, filename=ref.filename,
                              filesize=ref.filesize, md5=ref.md5, fileid=ref.fileid)
    return ref, reply


def _unique(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(1, 10_000):
        candidate = path.with_name(f"{path.stem} ({i}){path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)


def _remove_empty_store(root: Path) -> None:
    for sub in ("files", "partial", "tmp", ""):
        try:
            (root / sub).rmdir()
        except OSError:
            pass


async def download(client: Client, fileid: str, dest: str | os.PathLike[str] = ".", *,
                   on_event: Callable[[Any], None] | None = None,
                   handle: TransferHandle | None = None) -> Path:
    """Fetch ``fileid`` from the client's bridge into the directory ``dest``; the file is
    named after its display name. A partial download in ``dest/.toxbridge-partial`` is
    resumed. Returns the file's path. Raises :class:`TransferFailed` (7115 when the bridge
    does not have the file, yet)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    taskid = "down-" + secrets.token_hex(6)
    inbox = client.open_task(taskid)
    store = FileStore(dest / PARTIAL_DIR)
    receiver: Receiver | None = None
    partial = None
    try:
        info = await client.request({"command": 4001, "token": client.token, "fileid": fileid,
                                     "taskid": taskid, "type": int(InitType.DOWNLOAD)})
        if info.get("result") != FileState.AVAILABLE:
            state = FileState(info.get("result", 3)).name.lower()
            raise TransferFailed(7115, f"file {fileid!r} is {state} on the bridge")
        offer_msg = await inbox.receive()
        try:
            offer = parse_offer(offer_msg)
            partial = store.open_partial(fileid, offer.filesize, offer.md5,
                                         filename=offer.filename,
                                         chunk_size=info.get("suggest_chunksize") or 65536)
        except TransferProtocolError as exc:
            await client.send_obj(to_json(exc.peer_error()))
            raise TransferFailed(int(exc.code), exc.message) from None
        except StoreError as exc:
            await client.send_obj(refuse_offer(offer, exc.code, str(exc)))
            raise TransferFailed(int(exc.code), str(exc)) from None
        receiver = Receiver.accept(offer, time.time(), chunk_size=partial.chunk_size,
                                   have=partial.chunks)
        if on_event is not None:  # where it starts: above 0 when resuming
            on_event(FileProgress(fileid, partial.held_bytes, offer.filesize, 0.0, None))
        await _run(client, receiver, partial, inbox, fileid, on_event, handle)
        stored = store.get(fileid)
        assert stored is not None
        target = _unique(dest / (display_name(offer.filename) or "file"))
        try:
            os.link(stored.path, target)  # then the store forgets its copy
        except OSError:
            import shutil
            shutil.copyfile(stored.path, target)
        store.delete(fileid)
        return target
    finally:
        client.close_task(taskid)
        if partial is not None:
            partial.close()
        _remove_empty_store(dest / PARTIAL_DIR)


# --------------------------------------------------------------------------- the CLI


def new_progress(file: TextIO | None = None) -> Any:
    """A rich ``Progress`` showing label, bar, size, rate and ETA, drawing on ``file``."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                               TimeRemainingColumn, TransferSpeedColumn)
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), transient=False,
                    console=Console(file=file) if file else None)


class ProgressBar:
    """A rich progress bar (size, rate, ETA) fed by :class:`FileProgress` events: the one of
    ``toxbridge send-file``/``get-file`` and of the chat's ``/send``/``/get``. ``file``: where
    it draws (default stdout); ``quiet``: nowhere; ``progress``: a running :func:`new_progress`
    shared with other bars (the chat's concurrent transfers). :meth:`print` writes a line
    above it."""

    def __init__(self, label: str, quiet: bool = False, file: TextIO | None = None,
                 progress: Any = None) -> None:
        self.quiet = quiet
        self.file = file
        self.progress: Any = progress
        self._own = progress is None  # started and stopped here
        self.task: Any = None
        self.label = label
        self.first: FileProgress | None = None  # done > 0: a resumed transfer

    def __enter__(self) -> ProgressBar:
        if not self.quiet and self._own:
            self.progress = new_progress(self.file)
            self.progress.__enter__()
        return self

    def __call__(self, event: Any) -> None:
        if not isinstance(event, FileProgress):
            return
        if self.first is None:
            self.first = event
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task(self.label, total=event.total)
        self.progress.update(self.task, completed=event.done)

    def print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        elif self.file is not None:
            self.file.write(text + "\n")
            self.file.flush()

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None and self._own:
            self.progress.__exit__(None, None, None)


async def _send_cmd(args: argparse.Namespace) -> int:
    async with open_client(name=args.name, **args.where) as client:
        target = next((u["token"] for u in await client.users()
                       if u["name"] == args.to), None)
        if target is None:
            print(f"no user {args.to!r} is online", file=sys.stderr)
            return 1
        with ProgressBar(f"upload {Path(args.path).name}", args.quiet) as bar:
            ref, reply = await send_file(client, target, args.path, on_event=bar)
        print(f"sent {ref.filename} ({ref.filesize} bytes, md5 {ref.md5}) as fileid {ref.fileid}"
              f" to {args.to}: {reply.get('code')}")
        return 0 if reply.get("code") in (201, 204) else 1


async def _get_cmd(args: argparse.Namespace) -> int:
    async with open_client(name=args.name, **args.where) as client:
        with ProgressBar(f"download {args.fileid[:24]}", args.quiet) as bar:
            path = await download(client, args.fileid, args.dest, on_event=bar)
        if bar.first is not None and bar.first.done:  # the first event says where it started
            print(f"resumed at {bar.first.done} of {bar.first.total} bytes")
        print(f"saved {path}")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m bridge_local.files",
                           description="Send or fetch a file through a toxbridge node.")
    sub = parser.add_subparsers(dest="action", required=True)
    for name in ("send", "get"):
        p = sub.add_parser(name, prog=f"toxbridge {name}-file")  # as the toxbridge command runs it
        add_app_arguments(p)
        p.add_argument("--name", required=True, help="log in as this user")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "send":
            p.add_argument("--to", required=True, help="the user to send to")
            p.add_argument("path")
        else:
            p.add_argument("--dest", default=".", help="directory to save into")
            p.add_argument("fileid")
    args = parser.parse_args(argv)
    args.where = app_options(sub.choices[args.action], args)
    try:
        return trio.run(_send_cmd if args.action == "send" else _get_cmd, args)
    except KeyboardInterrupt:
        return 130
    except (TransferFailed, BridgeError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:  # no bridge on that port, no such file, no room: the user's to fix
        print(f"toxbridge {args.action}-file: {exc}", file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
