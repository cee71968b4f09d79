"""A terminal chat client on :mod:`bridge_local.client`.

``python -m bridge_local.chat --name alice --app-port N`` (or ``--app-socket PATH``). Type a line to send it to the
current target; incoming messages and users coming and going are shown as they arrive.

Commands: ``/to NAME`` (choose the target), ``/users``, ``/history NAME [LIMIT]``,
``/send PATH [NAME]`` (upload a file and send it to NAME or the current target),
``/get [FILEID] [DIR]`` (fetch a file, by default the last one received, into DIR or the
current directory; run it again to resume an interrupted download), ``/help``, ``/quit``.
A name may be written ``NAME@local`` or ``NAME@peer`` when both bridges have a user of that
name; a path or name with spaces is quoted (``/send "my file.txt"``). Files move with the
progress bar of ``toxbridge send-file``/``get-file`` (:class:`~bridge_local.files.ProgressBar`),
in the background: while files move, each with its bar, messages keep being shown and typing
goes on; ``/quit`` stops them (``/get`` again resumes a download).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import trio

from toxbridge.usage import USER_ERROR, OneLineParser

from .client import BridgeError, Client, add_app_arguments, app_options, describe, open_client
from .files import ProgressBar, TransferFailed, download, new_progress, send_file

__all__ = ["main", "run_chat"]

HELP = ("commands: /to NAME, /users, /history NAME [LIMIT], /send PATH [NAME], "
        "/get [FILEID] [DIR], /help, /quit; other lines are sent")


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


class _Directory:
    """Names and tokens of the users seen, to resolve ``/to NAME``."""

    def __init__(self) -> None:
        self.by_token: dict[str, tuple[str, str]] = {}  # token -> (name, side)
        self.last_file: str | None = None  # the fileid of the last file message received

    def add(self, token: str, name: str, side: str) -> None:
        self.by_token[token] = (name, side)

    def name_of(self, token: str) -> str:
        return self.by_token.get(token, (token[:8], ""))[0]

    def find(self, spec: str) -> str | None:
        name, _, side = spec.partition("@")
        for token, (n, s) in self.by_token.items():
            if n == name and (not side or s == side):
                return token
        return None


def _format_event(event: dict[str, Any], directory: _Directory) -> str:
    command = event["command"]
    if command == 2003:
        directory.by_token.setdefault(event["srctoken"], (event["name"], ""))
        extra = ""
        if "fileid" in event:
            directory.last_file = event["fileid"]
            extra = (f" [file {event['filename']}, {event['filesize']} bytes,"
                     f" /get {event['fileid']}]")
        return f"[{_clock(event['time'])}] {event['name']}: {event['msg']}{extra}"
    if command == 5003:
        return f"* file {event.get('filename')} is here: /get {event['fileid']}"
    state = "online" if command == 301 else "offline"
    if "token" not in event:
        return f"* the peer bridge is {state}"
    directory.add(event["token"], event["name"], event["side"])
    return f"* {event['name']} ({event['side']}) is {state}"


async def run_chat(port: int | None, name: str, host: str = "127.0.0.1",
                   read_line: Callable[[], str] | None = None, out: TextIO = sys.stdout,
                   path: str | None = None, apptoken: str | None = None) -> int:
    """Chat until /quit or end of input; returns an exit status. ``path``: a Unix-socket
    app port instead of ``host:port``; ``apptoken``: for a node of another account."""

    screen = _Screen(out)
    show = screen.show

    reader = read_line or sys.stdin.readline
    directory = _Directory()
    async with open_client(port, host, path=path) as client:
        try:
            me = await client.login(name, apptoken)
        except BridgeError as exc:
            show(f"login failed: {exc}")
            return 1
        show(f"logged in as {name} ({me['token'][:8]}…); {HELP}")
        for user in await client.users():
            directory.add(user["token"], user["name"], user["side"])
        async with trio.open_nursery() as nursery:

            async def events() -> None:
                async for event in client:
                    show(_format_event(event, directory))
                show("* the bridge closed the connection")
                nursery.cancel_scope.cancel()

            nursery.start_soon(events)
            status = await _input_loop(client, reader, directory, screen, nursery)
            if screen.running:
                show(f"  (stopping {screen.running} transfer(s); /get again resumes a download)")
            nursery.cancel_scope.cancel()
    return status


class _Screen:
    """Lines go above the progress bars while files move, straight to ``out`` otherwise.
    The bars of concurrent transfers share one rich ``Progress`` (rich draws one at a time)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shared: Any = None  # the running Progress, while any transfer runs
        self.running = 0

    def show(self, text: str) -> None:
        if self.shared is not None:
            self.shared.console.print(text, markup=False, highlight=False)
        else:
            self.out.write(text + "\n")
            self.out.flush()

    @contextmanager
    def progress(self, label: str) -> Iterator[ProgressBar]:
        if self.shared is None:
            self.shared = new_progress(self.out)
            self.shared.__enter__()
        self.running += 1
        try:
            with ProgressBar(label, progress=self.shared) as bar:
                yield bar
        finally:
            self.running -= 1
            if not self.running:
                shared, self.shared = self.shared, None
                shared.__exit__(None, None, None)


async def _background(screen: _Screen, job: Callable[..., Awaitable[None]], *args: Any) -> None:
    """A /send or /get running beside the typing; its failure is shown, not raised."""
    try:
        await job(*args)
    except (BridgeError, TransferFailed) as exc:
        screen.show(f"  ({exc})")
    except OSError as exc:
        screen.show(f"  (error: {exc})")
    except EOFError:  # the events task reports it and ends the chat
        pass


async def _find(client: Client, directory: _Directory, spec: str) -> str | None:
    token = directory.find(spec)
    if token is None:
        for user in await client.users():
            directory.add(user["token"], user["name"], user["side"])
        token = directory.find(spec)
    return token


async def _send_file(client: Client, args: list[str], target: str | None,
                     directory: _Directory, screen: _Screen) -> None:
    if not 1 <= len(args) <= 2:
        screen.show("usage: /send PATH [NAME]")
        return
    if len(args) == 2:
        target = await _find(client, directory, args[1])
        if target is None:
            screen.show(f"no user {args[1]!r} seen yet (see /users)")
            return
    if target is None:
        screen.show("send to whom? /send PATH NAME, or /to NAME first")
        return
    path = Path(args[0]).expanduser()
    with screen.progress(f"send {path.name}") as bar:
        ref, reply = await send_file(client, target, path, on_event=bar)
    to = directory.name_of(target)
    if reply["code"] in (201, 204):
        later = " (offline: delivered later)" if reply["code"] == 204 else ""
        screen.show(f"  sent {ref.filename} ({ref.filesize} bytes) to {to}{later};"
                    f" fileid {ref.fileid}")
    else:
        screen.show(f"  (file uploaded, message not sent: {reply['code']} "
                    f"{reply.get('reason', '')})")


async def _get_file(client: Client, args: list[str], directory: _Directory,
                    screen: _Screen) -> None:
    fileid = args[0] if args else directory.last_file
    if fileid is None or len(args) > 2:
        screen.show("usage: /get FILEID [DIR] (or /get after a file message)")
        return
    dest = Path(args[1]).expanduser() if len(args) == 2 else Path(".")
    with screen.progress(f"get {fileid[:24]}") as bar:
        path = await download(client, fileid, dest, on_event=bar)
    if bar.first is not None and bar.first.done:  # the first event says where it started
        screen.show(f"  resumed at {bar.first.done} of {bar.first.total} bytes")
    screen.show(f"  saved {path}")


async def _input_loop(client: Client, reader: Callable[[], str], directory: _Directory,
                      screen: _Screen, nursery: trio.Nursery) -> int:
    show = screen.show
    target: str | None = None
    while True:
        line = await trio.to_thread.run_sync(reader, abandon_on_cancel=True)
        if not line:
            return 0
        line = line.rstrip("\n")
        if not line.strip():
            continue
        word, _, rest = line.partition(" ")
        try:
            if word == "/quit":
                return 0
            if word == "/help":
                show(HELP)
            elif word == "/users":
                for user in await client.users():
                    directory.add(user["token"], user["name"], user["side"])
                    show(f"  {user['name']} ({user['side']})")
            elif word == "/send":
                nursery.start_soon(_background, screen, _send_file, client, shlex.split(rest),
                                   target, directory, screen)
            elif word == "/get":
                nursery.start_soon(_background, screen, _get_file, client, shlex.split(rest),
                                   directory, screen)
            elif word in ("/to", "/history"):
                spec, _, limit = rest.strip().partition(" ")
                token = await _find(client, directory, spec)
                if token is None:
                    show(f"no user {spec!r} seen yet (see /users)")
                elif word == "/to":
                    target = token
                    show(f"now talking to {spec}")
                else:
                    history = await client.history(token, int(limit) if limit.isdigit() else None)
                    for m in history:
                        show(f"  [{_clock(m['time'])}] {m['name']}: {m['msg']}")
                    show(f"  ({len(history)} messages)")
            elif word.startswith("/"):
                show(f"unknown command {word}; {HELP}")
            elif target is None:
                show("choose someone first: /to NAME")
            else:
                reply = await client.send(target, line)
                if reply["code"] == 204:
                    show(f"  ({directory.name_of(target)} is offline: stored, delivered later)")
                elif reply["code"] != 201:
                    show(f"  (not sent: {reply['code']} {reply.get('reason', '')})")
        except (BridgeError, TransferFailed) as exc:
            show(f"  ({exc})")
        except ValueError as exc:  # shlex: an unclosed quote
            show(f"  ({exc})")
        except OSError as exc:
            show(f"  (error: {exc})")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="toxbridge chat", description="Chat through a toxbridge node.")
    parser.add_argument("--name", required=True)
    add_app_arguments(parser)
    args = parser.parse_args(argv)
    where = app_options(parser, args)
    try:
        return trio.run(partial(run_chat, where["port"], args.name, where["host"],
                                path=where["path"], apptoken=where["apptoken"]))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"toxbridge chat: cannot reach the bridge at {describe(where)}: {exc}", file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
