"""A client for a node's ``streams.sock`` (docs/wire.md §5), for benchmarks and the demo:
open a stream to a peer, accept one a peer opens, push and drain bytes. Each connection is
one stream; the answer is one JSON line, and after it the connection is the stream. A
refusal or a missing answer is a RuntimeError (a test tool's failure, not the product's)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import trio

from ..control.server import node_data_dir

ANSWER_MAX = 4096
READ = 256 * 1024


def streams_path(profile: Path) -> Path:
    """The ``streams.sock`` of the node whose profile is ``profile`` (its data dir beside it)."""
    return node_data_dir(profile) / "streams.sock"


async def _request(path: Path, req: dict) -> tuple[trio.SocketStream, dict]:
    stream = await trio.open_unix_socket(os.fspath(path))
    try:
        await stream.send_all(json.dumps(req).encode() + b"\n")
        line = b""
        while not line.endswith(b"\n"):  # byte by byte: what follows the line is the stream's
            data = await stream.receive_some(1)
            if not data or len(line) >= ANSWER_MAX:
                raise RuntimeError(f"{path}: no answer to {req['op']} (got {line[:200]!r})")
            line += data
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"{path}: {req['op']} refused: {answer}")
    except BaseException:
        await stream.aclose()
        raise
    return stream, answer


async def open_stream(path: Path, kind: int, *, peer: str = "peer", priority: str = "bulk",
                      header: bytes = b"") -> trio.SocketStream:
    """A stream of ``kind`` to ``peer``; the peer must already wait in :func:`accept_stream`
    (a stream nobody accepts is refused, and its connection closes)."""
    stream, _ = await _request(path, {"op": "open", "kind": kind, "peer": peer,
                                      "priority": priority, "header": header.hex()})
    return stream


async def accept_stream(path: Path, kind: int, *, peer: str = "any") -> tuple[trio.SocketStream, dict]:
    """The next stream of ``kind`` that ``peer`` opens, and the daemon's answer (``peer``:
    the opener's key)."""
    return await _request(path, {"op": "accept", "kind": kind, "peer": peer})


async def push(stream: trio.SocketStream, total: int, chunk: int = 64 * 1024) -> None:
    """Write ``total`` bytes, then FIN."""
    block = bytes(chunk)
    left = total
    while left > 0:
        n = min(left, chunk)
        await stream.send_all(block[:n])
        left -= n
    await stream.send_eof()


async def drain(stream: trio.SocketStream, total: int) -> tuple[int, float]:
    """Read until EOF or ``total`` bytes; (bytes read, seconds from the first byte's
    read call to the last byte)."""
    got, start = 0, time.monotonic()
    while got < total and (data := await stream.receive_some(READ)):
        got += len(data)
    return got, time.monotonic() - start
