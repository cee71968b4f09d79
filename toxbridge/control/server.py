"""The control socket: a Unix socket in the node's data dir, mode 0600 (the trio shell of
`toxbridge.control`), and the blocking client the CLI uses.

Binding is race-free: the socket is bound inside a fresh 0700 directory, made 0600 there,
then hard-linked to its name (which fails if the name exists, so a live node's socket is
never replaced) and unlinked from the private directory. It is never reachable by anyone
else for a moment. A socket file left by a dead node (connecting is refused) is removed;
one that answers means a node is running, and this one refuses to start.
"""

from __future__ import annotations

import errno
import inspect
import logging
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from .protocol import (MAX_REPLY, MAX_REQUEST, ControlError, LineBuffer, encode, error_reply,
                      ok_reply, parse_reply, parse_request)
from ..errors import ConfigError, RemoteProtocolError

__all__ = ["SOCKET_NAME", "ControlServer", "NodeNotRunning", "bind_control_socket",
           "control_path", "node_data_dir", "request"]

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
MAX_CONNECTIONS = 8  # at once; one more is told "busy" and closed
IDLE_TIMEOUT = 60.0  # seconds a connection may wait between requests
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path, less the NUL

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]] | dict[str, Any]]


class NodeNotRunning(ConfigError):
    """No node is running there."""


def node_data_dir(profile: Path, data_dir: Path | None = None) -> Path:
    """A node's data dir: ``data_dir``, or PROFILE_NAME.bridge next to the profile."""
    return Path(data_dir) if data_dir is not None else profile.with_name(profile.stem + ".bridge")


def control_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def _check_length(path: Path) -> None:
    n = len(os.fsencode(path))
    if n > _SUN_PATH_MAX:
        raise ConfigError(f"the control socket path {path} is too long for a Unix socket "
                          f"({n} bytes, at most {_SUN_PATH_MAX}): use a shorter --data-dir")


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(os.fsencode(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            raise ConfigError(f"cannot check the control socket {path}: {exc.strerror}") from None
        return True


def _clear_stale(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket: move it away")
    if _answers(path):
        raise ConfigError(f"a node is already running with the data dir {path.parent} "
                          f"(its control socket answers): stop it, or use another --data-dir")
    log.info("removing a stale control socket %s", path)
    path.unlink(missing_ok=True)


def bind_control_socket(path: Path, backlog: int = MAX_CONNECTIONS) -> socket.socket:
    """A listening Unix socket at ``path`` (mode 0600; its directory made 0700 if new).
    Raises ConfigError if a node answers there, or the path cannot hold a socket."""
    path = Path(path)
    _check_length(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for _ in range(3):  # a stale socket, then a race with another starting node
            _clear_stale(path)
            private = Path(tempfile.mkdtemp(prefix=".c", dir=path.parent))
            temp = private / "s"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(os.fsencode(temp))
                os.chmod(temp, 0o600)
                sock.listen(backlog)
                os.link(temp, path)
            except FileExistsError:
                sock.close()
                continue
            except BaseException:
                sock.close()
                raise
            finally:
                temp.unlink(missing_ok=True)
                private.rmdir()
            return sock
    except OSError as exc:
        raise ConfigError(f"cannot create the control socket {path}: {exc.strerror or exc}") from None
    raise ConfigError(f"cannot create the control socket {path}: other nodes keep creating it")


class ControlServer:
    """Serves ``handlers`` (command name -> handler of the request's arguments, returning
    the result dict, plain or awaitable) on a socket from :func:`bind_control_socket`.
    A handler raises ControlError to refuse; any other exception is logged and answered
    ``internal``. Requests of one connection are answered in order."""

    def __init__(self, sock: socket.socket, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = Path(path)
        self.handlers = handlers
        self._sock = sock
        st = self.path.stat()
        self._ident = (st.st_dev, st.st_ino)
        self._connections = 0

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Until cancelled; the socket file is removed at the end (if it is still ours)."""
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(self._sock))
        try:
            async with listener:
                task_status.started()
                await trio.serve_listeners(self._handle, [listener])
        finally:
            self._remove()

    def close(self) -> None:
        """Without serving (the node failed to start): close and remove the socket."""
        self._sock.close()
        self._remove()

    def _remove(self) -> None:
        try:
            st = self.path.stat()
            if (st.st_dev, st.st_ino) == self._ident:
                self.path.unlink()
        except OSError:
            pass

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self._connections >= MAX_CONNECTIONS:
                await self._send(stream, error_reply("busy", f"at most {MAX_CONNECTIONS} "
                                                     "control connections at once"))
                return
            self._connections += 1
            try:
                await self._serve_connection(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._connections -= 1

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        lines = LineBuffer(MAX_REQUEST)
        while True:
            try:
                line = lines.next_line()
            except RemoteProtocolError as exc:
                await self._send(stream, error_reply("too_long", str(exc)))
                return
            if line is None:
                with trio.move_on_after(IDLE_TIMEOUT) as idle:
                    data = await stream.receive_some(MAX_REQUEST)
                if idle.cancelled_caught or not data:
                    return
                lines.receive_data(data)
                continue
            if line.strip():
                await self._send(stream, await self.answer(line))

    async def answer(self, line: bytes) -> dict[str, Any]:
        rid = None
        try:
            request = parse_request(line)
            rid = request.id
            handler = self.handlers.get(request.cmd)
            if handler is None:
                known = ", ".join(sorted(self.handlers))
                raise ControlError("unknown_command", f"no command {request.cmd!r} (known: {known})")
            result = handler(request.args)
            if inspect.isawaitable(result):
                result = await result
            return ok_reply(result, rid)
        except ControlError as exc:
            return error_reply(exc.code, str(exc), rid)
        except Exception as exc:  # a bug in a handler must not take the node down
            log.exception("control command failed")
            return error_reply("internal", f"{type(exc).__name__}: {exc}", rid)

    @staticmethod
    async def _send(stream: trio.SocketStream, reply: dict[str, Any]) -> None:
        with trio.move_on_after(10):  # a client that does not read
            await stream.send_all(encode(reply))


def request(path: Path, cmd: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """One request to the node whose control socket is ``path`` (blocking); its reply.

    Raises NodeNotRunning if nothing answers there, ControlError for the node's refusal or
    a broken reply, ConfigError for anything else (permission, timeout)."""
    path = Path(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(os.fsencode(path))
            s.sendall(encode({"v": 1, "cmd": cmd, **args}))
            lines = LineBuffer(MAX_REPLY)
            while (line := lines.next_line()) is None:
                data = s.recv(65536)
                if not data:
                    raise ControlError("bad_reply", "the node closed the connection without a reply")
                lines.receive_data(data)
        except (FileNotFoundError, ConnectionRefusedError):
            raise NodeNotRunning(f"no node is running with the data dir {path.parent} "
                                 f"(nothing answers at {path})") from None
        except TimeoutError:
            raise ConfigError(f"the node at {path} did not answer within {timeout:g} s") from None
        except RemoteProtocolError as exc:
            raise ControlError("bad_reply", f"the node's reply: {exc}") from None
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise ConfigError(f"no permission to use {path} (run as the node's user)") from None
            raise ConfigError(f"cannot reach the node at {path}: {exc.strerror or exc}") from None
    return parse_reply(line)
