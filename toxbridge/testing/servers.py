"""Small TCP servers on 127.0.0.1 for what a forward reaches: the benchmark's and the demo's.

``ThreadServer(handler)`` accepts in a thread and serves each connection in a thread of
its own (bounded in count; each socket has a timeout). The handlers:

- ``echo``: every byte back as it comes (a terminal in raw mode: one keystroke, one echo);
  EOF back at EOF.
- ``line_echo``: each line answered with ``echo: <line>``.
- ``source``: the client asks ``N\\n``, the server sends ``pattern(N)`` and closes.
- ``banner``: one line at once on connect (as ssh does), then it closes.

Not part of the product's API.
"""

from __future__ import annotations

import random
import socket
import threading

__all__ = ["ThreadServer", "banner", "echo", "line_echo", "pattern", "source"]

BLOCK = random.Random(15).randbytes(1 << 20)  # what ``source`` repeats
MAX_CONNECTIONS = 10_000  # accepted over a server's life
TIMEOUT = 300.0  # s a connection may be idle
MAX_REQUEST = 32  # bytes of a ``source`` request line


def pattern(n: int) -> bytes:
    """The first ``n`` bytes of ``BLOCK`` repeated."""
    whole, rest = divmod(n, len(BLOCK))
    return BLOCK * whole + BLOCK[:rest]


class ThreadServer:
    """A TCP server on ``host``:0 (``port``); ``handler(sock)`` serves one connection."""

    def __init__(self, handler, host: str = "127.0.0.1") -> None:
        self._sock = socket.create_server((host, 0), backlog=128)
        self.port = self._sock.getsockname()[1]
        self._handler = handler
        self.errors: list[str] = []  # what the handlers raised
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        for _ in range(MAX_CONNECTIONS):
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(TIMEOUT)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._handler(conn)
        except OSError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ThreadServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def line_echo(conn: socket.socket) -> None:
    with conn.makefile("rb") as lines:
        for line in lines:
            conn.sendall(b"echo: " + line)
    conn.shutdown(socket.SHUT_WR)


def source(conn: socket.socket) -> None:
    request = b""
    while not request.endswith(b"\n"):
        data = conn.recv(MAX_REQUEST - len(request))
        if not data or len(request) + len(data) >= MAX_REQUEST:
            return
        request += data
    n = int(request)
    whole, rest = divmod(n, len(BLOCK))
    view = memoryview(BLOCK)
    for _ in range(whole):
        conn.sendall(view)
    conn.sendall(view[:rest])


def banner(conn: socket.socket) -> None:
    conn.sendall(b"SSH-2.0-toxbridge-bench\r\n")
