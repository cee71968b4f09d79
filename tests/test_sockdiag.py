"""The sock_diag lookup of who owns a loopback connection's other end: the request's exact
bytes, replies parsed, and the real kernel's answers (no Tox)."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from toxbridge.access.policy import DiagUnavailable, diag_owner_uid, tcp_owner_uid
from toxbridge.access.sockdiag import REQUEST_SIZE, DiagEntry, encode_request, parse_reply

from .test_peer_uid import accepted_pair

NOBODY = 65534


def test_the_request_for_one_ipv4_socket_byte_for_byte() -> None:
    got = encode_request(socket.AF_INET, ("127.0.0.1", 0xA2B4), ("127.0.0.2", 0x1F90), seq=7)
    want = (struct.pack("=IHHII", 72, 20, 1, 7, 0)  # nlmsghdr: SOCK_DIAG_BY_FAMILY, REQUEST
            + bytes([socket.AF_INET, socket.IPPROTO_TCP, 0, 0]) + b"\xff\xff\xff\xff"
            + b"\xa2\xb4\x1f\x90"  # ports in network order
            + bytes([127, 0, 0, 1]) + bytes(12) + bytes([127, 0, 0, 2]) + bytes(12)
            + struct.pack("=I", 0) + b"\xff" * 8)  # any interface, no cookie
    assert got == want and len(got) == REQUEST_SIZE


def test_an_ipv6_request_carries_the_whole_addresses() -> None:
    got = encode_request(socket.AF_INET6, ("::ffff:127.0.0.1", 1), ("::1", 2))
    assert got[24:28] == b"\x00\x01\x00\x02"
    assert got[28:44] == bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    assert got[44:60] == bytes(15) + b"\x01"


def reply(seq: int, state: int, uid: int, inode: int) -> bytes:
    body = bytes([socket.AF_INET, state, 0, 0]) + bytes(48) + struct.pack("=IIIII", 0, 0, 0, uid, inode)
    return struct.pack("=IHHII", 16 + len(body), 20, 0, seq, 0) + body


def error(seq: int, errno: int) -> bytes:
    return struct.pack("=IHHIIi", 36, 2, 0, seq, 0, -errno) + bytes(16)


def test_replies_parsed() -> None:
    assert parse_reply(reply(3, 1, 1000, 4711), 3) == DiagEntry(state=1, uid=1000, inode=4711)
    assert parse_reply(error(3, 2), 3) is None  # ENOENT: no such socket
    with pytest.raises(OSError) as info:
        parse_reply(error(3, 1), 3)  # EPERM
    assert info.value.errno == 1


@pytest.mark.parametrize("data", [b"", reply(4, 1, 0, 1), reply(3, 1, 0, 1)[:60],
                                  error(3, 0), struct.pack("=IHHII", 16, 3, 0, 3, 0)])
def test_what_is_not_a_reply_to_our_request_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_reply(data, 3)


def test_the_kernel_names_our_uid_for_our_own_connection_as_the_table_does() -> None:
    server, client, accepted = accepted_pair()
    with server, client, accepted:
        peer, ours = accepted.getpeername(), accepted.getsockname()
        assert diag_owner_uid(peer, ours) == os.geteuid() == tcp_owner_uid(peer, ours)
        assert diag_owner_uid(ours, peer) == os.geteuid()  # the accepted end, swapped
        assert diag_owner_uid(peer, ("127.0.0.1", 1)) is None
        assert diag_owner_uid(("127.0.0.9", peer[1]), ours) is None


def test_a_dual_stack_client_socket_is_found_by_its_mapped_addresses() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        client = socket.socket(socket.AF_INET6)
        client.connect(("::ffff:127.0.0.1", server.getsockname()[1]))
    except OSError:
        server.close()
        pytest.skip("no IPv6 sockets in this kernel")
    accepted, _ = server.accept()
    with server, client, accepted:
        assert diag_owner_uid(accepted.getpeername(), accepted.getsockname()) == os.geteuid()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_a_socket_of_another_uid_is_named_with_that_uid() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, connect, hold the connection until told
        try:
            os.close(ready_r)
            os.close(done_w)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            client = socket.create_connection(server.getsockname(), timeout=10)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
            client.close()
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        assert os.read(ready_r, 1) == b"1"
        server.settimeout(10)
        accepted, _ = server.accept()
        with accepted:
            assert diag_owner_uid(accepted.getpeername(), accepted.getsockname()) == NOBODY
    finally:
        os.write(done_w, b"1")
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)
        server.close()


async def test_without_netlink_the_lookup_falls_back_to_the_tables(monkeypatch) -> None:
    import trio

    from toxbridge.access import policy

    server, client, accepted = accepted_pair()
    with server, client, accepted:
        # A netlink family this kernel does not have: socket() fails, as where netlink is
        # refused (a seccomp profile) or inet_diag is missing.
        monkeypatch.setattr(policy, "NETLINK_SOCK_DIAG", 99)
        with pytest.raises(DiagUnavailable):
            diag_owner_uid(accepted.getpeername(), accepted.getsockname())
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(accepted.dup()))
        assert await policy.peer_uid(stream) == os.geteuid()
        await stream.aclose()
