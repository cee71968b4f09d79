"""The owner lookup on real loopback and Unix sockets (no Tox): the kernel's tables, the
bounded retry while an entry is not there, SO_PEERCRED."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import trio

from toxbridge.access.policy import peer_uid, tcp_owner_uid


def accepted_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    return server, client, accepted


def test_the_kernels_table_names_our_uid_for_our_own_connection() -> None:
    server, client, accepted = accepted_pair()
    with server, client, accepted:
        assert tcp_owner_uid(accepted.getpeername(), accepted.getsockname()) == os.geteuid()
        # The accepted end is not the connecting end: swapped, it is another entry.
        assert tcp_owner_uid(accepted.getsockname(), accepted.getpeername()) == os.geteuid()
        assert tcp_owner_uid(accepted.getpeername(), ("127.0.0.1", 1)) is None


async def test_peer_uid_retries_until_the_entry_appears(tmp_path) -> None:
    server, client, accepted = accepted_pair()
    with server, client, accepted:
        table = tmp_path / "tcp"
        table.write_text("  sl  local_address rem_address\n")
        real = f"/proc/self/task/{threading.get_native_id()}/net/tcp"
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(accepted.dup()))

        async def publish() -> None:
            await trio.sleep(0.025)
            fresh = tmp_path / "tcp.new"
            fresh.write_text(Path(real).read_text())
            fresh.rename(table)  # at once: the reader never sees half a table

        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish)
            assert await peer_uid(stream, attempts=20, delay=0.01, tables=(str(table),)) \
                == os.geteuid()
        await stream.aclose()


async def test_peer_uid_gives_up_after_its_attempts(tmp_path) -> None:
    server, client, accepted = accepted_pair()
    with server, client, accepted:
        table = tmp_path / "tcp"
        table.write_text("  sl  local_address rem_address\n")
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(accepted.dup()))
        started = time.monotonic()
        assert await peer_uid(stream, attempts=4, delay=0.02, tables=(str(table), "/nonexistent")) \
            is None
        assert 0.06 <= time.monotonic() - started < 2
        await stream.aclose()


async def test_peer_uid_of_a_unix_socket_is_so_peercred(tmp_path) -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(a.dup()))
        assert await peer_uid(stream) == os.geteuid()
        await stream.aclose()
