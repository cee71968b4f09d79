"""A terminal chat client on :mod:`bridge_local.client`.

``python -m bridge_local.chat --name alice --app-port N``. Type a line to send it to the
current target; incoming messages and users coming and going are shown as they arrive.

Commands: ``/to NAME`` (choose the target), ``/users``, ``/history NAME [LIMIT]``,
``/help``, ``/quit``. A name may be written ``NAME@local`` or ``NAME@peer`` when both
bridges have a user of that name.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import trio

from .client import BridgeError, Client, open_client

__all__ = ["main", "run_chat"]

HELP = "commands: /to NAME, /users, /history NAME [LIMIT], /help, /quit; other lines are sent"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


class _Directory:
    """Names and tokens of the users seen, to resolve ``/to NAME``."""

    def __init__(self) -> None:
        self.by_token: dict[str, tuple[str, str]] = {}  # token -> (name, side)

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
        extra = f" [file {event['filename']}, {event['filesize']} bytes]" if "fileid" in event else ""
        return f"[{_clock(event['time'])}] {event['name']}: {event['msg']}{extra}"
    state = "online" if command == 301 else "offline"
    if "token" not in event:
        return f"* the peer bridge is {state}"
    directory.add(event["token"], event["name"], event["side"])
    return f"* {event['name']} ({event['side']}) is {state}"


async def run_chat(port: int, name: str, host: str = "127.0.0.1",
                   read_line: Callable[[], str] | None = None, out: TextIO = sys.stdout) -> int:
    """Chat until /quit or end of input; returns an exit status."""

    def show(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    reader = read_line or sys.stdin.readline
    directory = _Directory()
    async with open_client(port, host) as client:
        try:
            me = await client.login(name)
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
            status = await _input_loop(client, reader, directory, show)
            nursery.cancel_scope.cancel()
    return status


async def _input_loop(client: Client, reader: Callable[[], str], directory: _Directory,
                      show: Callable[[str], None]) -> int:
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
            elif word in ("/to", "/history"):
                spec, _, limit = rest.strip().partition(" ")
                token = directory.find(spec)
                if token is None:
                    for user in await client.users():
                        directory.add(user["token"], user["name"], user["side"])
                    token = directory.find(spec)
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
        except BridgeError as exc:
            show(f"  ({exc})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge_local.chat",
                                     description="Chat through a toxbridge node.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--app-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        return trio.run(run_chat, args.app_port, args.name, args.host)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"cannot reach the bridge at {args.host}:{args.app_port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
