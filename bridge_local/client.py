"""A trio client of the app port: login, users, send, history, and incoming events.

::

    async with open_client(port) as client:          # or open_client(path="/run/.../app.sock")
        me = await client.login("alice")
        for user in await client.users(): ...
        reply = await client.send(bob_token, "hi")          # {"command":2002,...}
        async for event in client:                          # 2003 messages, 301/302
            ...

Requests are answered in order; events (``2003``, ``301``, ``302``) may arrive at any time
and are queued (bounded) for the iterator. A ``9000`` error reply raises
:class:`BridgeError`. An app of another account than the node's logs in with the node's
app token: ``open_client(port, name="carol", apptoken="…")`` (docs/protocol.md, section 2).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from .protocol import DEFAULT_MAX_LINE_LENGTH, LineDecoder, LineTooLong, jsonfast

__all__ = ["BridgeError", "Client", "EVENT_COMMANDS", "TRANSFER_COMMANDS", "add_app_arguments",
           "app_options", "client_on", "open_client", "open_nursery"]

EVENT_COMMANDS = frozenset({2003, 301, 302, 5003})
TRANSFER_COMMANDS = frozenset({7000, 7001, 7010, 7070, 7080, 8000, 8001, 8010})


class BridgeError(Exception):
    """The bridge answered with an error reply (``9000``)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(f"error {reply.get('code')}: {reply.get('message')}")
        self.reply = reply
        self.code = reply.get("code")


class Client:
    """One connection to the app port. Make it with :func:`open_client`."""

    def __init__(self, stream: trio.SocketStream, max_events: int = 10_000) -> None:
        self.stream = stream
        self.token: str | None = None
        self.name: str | None = None
        self._replies_send, self._replies = trio.open_memory_channel[dict[str, Any]](1024)
        self._events_send, self._events = trio.open_memory_channel[dict[str, Any]](max_events)
        self._lock = trio.Lock()
        self._write_lock = trio.Lock()
        self._tasks: dict[tuple[type, Any], trio.MemorySendChannel[dict[str, Any]]] = {}
        self._owed = 0  # replies to requests cancelled after they were sent: not theirs

    async def _reader(self) -> None:
        decoder = LineDecoder(DEFAULT_MAX_LINE_LENGTH * 8)
        try:
            while True:
                data = await self.stream.receive_some(65536)
                decoder.receive_data(data)
                while (line := decoder.next_line()) is not None:
                    if isinstance(line, LineTooLong):
                        continue
                    obj = jsonfast.loads(line)
                    if obj.get("command") in TRANSFER_COMMANDS:
                        taskid = obj.get("taskid")
                        inbox = self._tasks.get((type(taskid), taskid))
                        if inbox is not None:
                            await inbox.send(obj)
                    elif obj.get("command") in EVENT_COMMANDS:
                        await self._events_send.send(obj)
                    else:
                        await self._replies_send.send(obj)
                if not data:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._replies_send.close()
            self._events_send.close()
            for inbox in self._tasks.values():
                inbox.close()

    # -- raw ---------------------------------------------------------------------------

    async def send_line(self, line: bytes) -> None:
        """Write bytes as they are (tests of bad input); add the ``\\n`` yourself."""
        async with self._write_lock:
            await self.stream.send_all(line)

    async def send_obj(self, obj: dict[str, Any]) -> None:
        """Send one object that gets no reply (transfer messages)."""
        await self.send_line(jsonfast.dumps(obj) + b"\n")

    def open_task(self, taskid: Any, size: int = 1024
                  ) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """Route the bridge's transfer messages (7000–8010) for ``taskid`` to a channel;
        :meth:`close_task` stops it. Messages of tasks not open are dropped."""
        send, receive = trio.open_memory_channel[dict[str, Any]](size)
        self._tasks[(type(taskid), taskid)] = send
        return receive

    def close_task(self, taskid: Any) -> None:
        send = self._tasks.pop((type(taskid), taskid), None)
        if send is not None:
            send.close()

    async def next_reply(self) -> dict[str, Any]:
        """The next reply (not an event), error replies included. Raises EOFError."""
        try:
            while self._owed:  # a cancelled request's reply: the bridge answers in order
                await self._replies.receive()
                self._owed -= 1
            return await self._replies.receive()
        except trio.EndOfChannel:
            raise EOFError("the bridge closed the connection") from None

    async def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return its reply; raises BridgeError for a 9000.

        Cancel-safe: if cancelled once the request is sent, its reply (still to come) is
        dropped, so the next request gets its own and not that one."""
        async with self._lock:
            await self.send_obj(obj)
            try:
                reply = await self.next_reply()
            except trio.Cancelled:
                self._owed += 1
                raise
        if reply.get("command") == 9000:
            raise BridgeError(reply)
        return reply

    # -- commands ----------------------------------------------------------------------

    async def login(self, name: str, apptoken: str | None = None) -> dict[str, Any]:
        """``apptoken``: the node's app token, for an app of another account than the node's."""
        obj: dict[str, Any] = {"command": 1000, "name": name}
        if apptoken is not None:
            obj["apptoken"] = apptoken
        reply = await self.request(obj)
        self.token, self.name = reply["token"], reply["name"]
        return reply

    async def users(self) -> list[dict[str, Any]]:
        return list((await self.request({"command": 1001, "token": self.token}))["users"])

    async def send(self, goaltoken: str, msg: str, type: int = 1, **file_fields: Any
                   ) -> dict[str, Any]:
        """Send a message; returns the ``2002`` (``code`` 201, 202, 203 or 204)."""
        return await self.request({"command": 1002, "token": self.token, "goaltoken": goaltoken,
                                   "type": type, "msg": msg, **file_fields})

    async def history(self, goaltoken: str, limit: int | None = None,
                      before: float | None = None) -> list[dict[str, Any]]:
        obj: dict[str, Any] = {"command": 1003, "token": self.token, "goaltoken": goaltoken}
        if limit is not None:
            obj["limit"] = limit
        if before is not None:
            obj["before"] = before
        return list((await self.request(obj))["messages"])

    # -- events ------------------------------------------------------------------------

    async def next_event(self) -> dict[str, Any]:
        """The next ``2003``/``301``/``302``. Raises EOFError when the connection ends."""
        try:
            return await self._events.receive()
        except trio.EndOfChannel:
            raise EOFError("the bridge closed the connection") from None

    async def wait_event(self, **match: Any) -> dict[str, Any]:
        """The next event whose fields equal ``match`` (others are dropped)."""
        while True:
            event = await self.next_event()
            if all(event.get(k) == v for k, v in match.items()):
                return event

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.next_event()
            except EOFError:
                return

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def open_client(port: int | None = None, host: str = "127.0.0.1", name: str | None = None,
                      *, path: str | Path | None = None, apptoken: str | None = None
                      ) -> AsyncIterator[Client]:
    """Connect to an app port, TCP ``host:port`` or the Unix socket ``path`` (and log in as
    ``name`` if given, with ``apptoken`` if given); closed on exit."""
    if path is not None:
        stream = await trio.open_unix_socket(str(path))
    elif port is not None:
        stream = await trio.open_tcp_stream(host, port)
    else:
        raise ValueError("open_client needs a port or a path")
    async with client_on(stream, name, apptoken) as client:
        yield client


@asynccontextmanager
async def client_on(stream: trio.SocketStream, name: str | None = None,
                    apptoken: str | None = None) -> AsyncIterator[Client]:
    """A client on a stream already connected to an app port (e.g. inside a network
    namespace); logs in as ``name`` if given; the stream is closed on exit."""
    client = Client(stream)
    async with open_nursery() as nursery:
        nursery.start_soon(client._reader)
        try:
            if name is not None:
                await client.login(name, apptoken)
            yield client
        finally:
            nursery.cancel_scope.cancel()
            # Shielded: a checkpoint in the cancelled scope raised Cancelled, which
            # replaced the body's exception and was then absorbed here, so an error
            # (a failed assert) inside ``async with open_client(...)`` vanished.
            with trio.CancelScope(shield=True):
                await stream.aclose()


@asynccontextmanager
async def open_nursery() -> AsyncIterator[trio.Nursery]:
    """A trio nursery whose one exception comes out as itself, not in an ExceptionGroup:
    what the client's calls document (BridgeError, TransferFailed, a caller's own error in
    its ``async with`` block) is what a caller can catch. Several stay a group."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        raise group.exceptions[0] from None


# -- the command-line clients' way to reach a node ----------------------------------------

def add_app_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-port", type=int, help="the node's app port (TCP)")
    parser.add_argument("--host", default="127.0.0.1", help="the app port's host (default 127.0.0.1)")
    parser.add_argument("--app-socket", metavar="PATH", help="the node's Unix-socket app port")
    parser.add_argument("--app-token-file", type=Path, metavar="FILE",
                        help="the node's app token, for a node of another account")


def app_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`open_client`'s keywords from the arguments; a user error exits with one line
    and status 2."""
    from toxbridge.access import read_token_file
    from toxbridge.errors import ConfigError

    if (args.app_port is None) == (args.app_socket is None):
        parser.exit(2, f"{parser.prog}: give one of --app-port N or --app-socket PATH\n")
    apptoken = None
    if args.app_token_file is not None:
        try:
            apptoken = read_token_file(args.app_token_file).decode("utf-8")
        except ConfigError as exc:
            parser.exit(2, f"{parser.prog}: {exc}\n")
    return {"port": args.app_port, "host": args.host, "path": args.app_socket,
            "apptoken": apptoken}


def describe(options: dict[str, Any]) -> str:
    """Where :func:`app_options` points, for error messages."""
    return options["path"] or f"{options['host']}:{options['port']}"
