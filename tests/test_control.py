"""The control protocol (sans-IO codec), the status meters, and the control socket on a
real Unix socket: mode 0600, a stale socket replaced, a live one never stolen, bounds.
No Tox network here (test_status.py asks live nodes)."""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
import trio

from toxbridge.control.protocol import (MAX_REQUEST, ControlError, LineBuffer, encode, error_reply,
                               ok_reply, parse_reply, parse_request)
from toxbridge.control.server import (MAX_CONNECTIONS, ControlServer, NodeNotRunning,
                                   bind_control_socket, request)
from toxbridge.errors import ConfigError, RemoteProtocolError
from toxbridge.control.snapshot import RateMeter, RttMeter
from toxbridge.cli.status import main as status_main

# -- the codec ------------------------------------------------------------------------


def test_a_request_parses_with_its_arguments_and_id():
    r = parse_request(b'{"v": 1, "cmd": "peers", "id": 7, "key": "AB"}')
    assert (r.cmd, r.args, r.id) == ("peers", {"key": "AB"}, 7)
    assert parse_request(b'{"cmd": "status"}').cmd == "status"  # v left out means 1


@pytest.mark.parametrize("line, code", [
    (b"{nope", "bad_json"),
    (b"\xff", "bad_json"),
    (b"[1]", "bad_request"),
    (b'{"v": 1}', "bad_request"),
    (b'{"cmd": ""}', "bad_request"),
    (b'{"cmd": 5}', "bad_request"),
    (b'{"v": true, "cmd": "status"}', "bad_request"),
    (b'{"v": 2, "cmd": "status"}', "version"),
    (b'{"cmd": "status", "id": [1]}', "bad_request"),
])
def test_bad_requests_are_refused_with_a_code(line, code):
    with pytest.raises(ControlError) as exc:
        parse_request(line)
    assert exc.value.code == code


def test_replies_round_trip_and_errors_raise():
    assert parse_reply(encode(ok_reply({"a": 1}, rid=3))) == {"v": 1, "ok": True, "id": 3, "a": 1}
    with pytest.raises(ControlError) as exc:
        parse_reply(encode(error_reply("busy", "later")))
    assert (exc.value.code, str(exc.value)) == ("busy", "later")
    with pytest.raises(ControlError) as exc:
        parse_reply(b'{"v": 1}')
    assert exc.value.code == "bad_reply"


def test_line_buffer_splits_lines_and_refuses_a_long_one():
    b = LineBuffer(8)
    b.receive_data(b"ab\ncd")
    assert b.next_line() == b"ab"
    assert b.next_line() is None
    b.receive_data(b"\n12345678\n")
    assert b.next_line() == b"cd"
    assert b.next_line() == b"12345678"  # exactly the limit
    b.receive_data(b"123456789")
    with pytest.raises(RemoteProtocolError):
        b.next_line()


# -- the meters -------------------------------------------------------------------------


def test_rtt_is_the_time_from_first_transmission_to_ack():
    m = RttMeter()
    m.sent(1000, now=10.0)
    m.sent(2000, now=10.1)
    m.acked(1500, now=10.05)  # covers the first offset only
    assert m.last == pytest.approx(0.05) and m.samples == 1
    m.acked(2000, now=10.2)
    assert m.last == pytest.approx(0.1) and m.min == pytest.approx(0.05)
    assert m.srtt == pytest.approx(0.05 + (0.1 - 0.05) / 8)


def test_rtt_never_samples_resent_bytes():
    m = RttMeter()
    m.sent(1000, now=0.0)
    m.lost()  # the connection dropped: the bytes will be resent
    m.sent(1000, now=5.0)  # the resend: not new, not recorded
    m.acked(1000, now=5.01)
    assert m.samples == 0 and m.srtt is None
    m.sent(2000, now=6.0)
    m.acked(2000, now=6.02)
    assert m.last == pytest.approx(0.02)


def test_rtt_pending_is_bounded():
    m = RttMeter(max_pending=4)
    for i in range(1, 100):
        m.sent(i * 100, now=float(i))
    m.acked(10_000, now=100.0)
    assert m.samples == 1 and m.last == pytest.approx(96.0)  # the 4th offset, sent at 4.0


def test_rates_over_the_recent_span_and_a_counter_reset():
    r = RateMeter(span=5.0)
    assert r.sample(0.0, 0, 0) == (0.0, 0.0)
    assert r.sample(1.0, 1000, 500) == (1000.0, 500.0)
    for t in range(2, 20):
        r.sample(float(t), 1000 + (t - 1) * 10, 500)
    sent, received = r.sample(20.0, 1190, 500)
    assert sent == pytest.approx(10.0, rel=0.01) and received == 0.0  # the old burst has aged out
    assert r.sample(21.0, 5, 5) == (0.0, 0.0)  # a new link: counters start again


# -- the socket ---------------------------------------------------------------------------


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def _serving(path, handlers, nursery) -> ControlServer:
    server = ControlServer(bind_control_socket(path), path, handlers)
    await nursery.start(server.serve)
    return server


async def test_the_socket_is_0600_in_a_new_0700_dir_and_answers(tmp_path):
    path = tmp_path / "data" / "control.sock"
    async with trio.open_nursery() as nursery:
        await _serving(path, {"status": lambda args: {"hello": args.get("x")}}, nursery)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
        assert [p.name for p in path.parent.iterdir()] == ["control.sock"]  # no temp dir left
        reply = await trio.to_thread.run_sync(lambda: request(path, "status", x=5))
        assert reply == {"v": 1, "ok": True, "hello": 5}
        with pytest.raises(ControlError) as exc:
            await trio.to_thread.run_sync(lambda: request(path, "nope"))
        assert exc.value.code == "unknown_command" and "status" in str(exc.value)
        nursery.cancel_scope.cancel()
    assert not path.exists()  # removed when the node stops


async def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path):
    path = tmp_path / "control.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # what a kill -9'd node leaves
    async with trio.open_nursery() as nursery:
        await _serving(path, {"status": lambda args: {}}, nursery)
        assert _mode(path) == 0o600
        with pytest.raises(ConfigError, match="already running"):
            bind_control_socket(path)
        assert (await trio.to_thread.run_sync(lambda: request(path, "status")))["ok"]
        nursery.cancel_scope.cancel()


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path):
    path = tmp_path / "control.sock"
    path.write_text("mine")
    with pytest.raises(ConfigError, match="not a socket"):
        bind_control_socket(path)
    assert path.read_text() == "mine"


def test_a_path_too_long_for_a_unix_socket_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="too long"):
        bind_control_socket(tmp_path / ("d" * 120) / "control.sock")


async def test_bounds_long_line_connections_and_a_failing_handler(tmp_path):
    path = tmp_path / "control.sock"

    def boom(args):
        raise KeyError("x")

    async with trio.open_nursery() as nursery:
        await _serving(path, {"boom": boom, "status": lambda args: {}}, nursery)
        # A failing handler is an error reply; the connection (and the node) go on.
        s = trio.socket.socket(trio.socket.AF_UNIX)
        await s.connect(str(path))
        stream = trio.SocketStream(s)
        await stream.send_all(b'{"cmd":"boom","id":1}\n{"cmd":"status","id":2}\n')
        got = b""
        with trio.fail_after(5):
            while got.count(b"\n") < 2:
                got += await stream.receive_some(4096)
        first, second = (json.loads(x) for x in got.splitlines())
        assert first["error"] == "internal" and first["id"] == 1
        assert second["ok"] and second["id"] == 2
        # A line over the limit: an error reply, then the connection closes.
        await stream.send_all(b"x" * (MAX_REQUEST + 10))
        with trio.fail_after(5):
            rest = b""
            while chunk := await stream.receive_some(4096):
                rest += chunk
        assert json.loads(rest)["error"] == "too_long"
        await stream.aclose()
        # More connections than allowed: the extra one is told "busy".
        held = []
        for _ in range(MAX_CONNECTIONS):
            c = trio.socket.socket(trio.socket.AF_UNIX)
            await c.connect(str(path))
            held.append(c)
        await trio.sleep(0.1)
        with pytest.raises(ControlError) as exc:
            await trio.to_thread.run_sync(lambda: request(path, "status"))
        assert exc.value.code == "busy"
        for c in held:
            c.close()
        nursery.cancel_scope.cancel()


def test_request_without_a_node_is_node_not_running(tmp_path):
    with pytest.raises(NodeNotRunning, match="no node is running"):
        request(tmp_path / "control.sock", "status")


def test_status_without_a_node_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        status_main(["--json", "--data-dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("toxbridge status: no node is running") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        status_main(["--profile", str(tmp_path / "p.tox")])  # -> p.bridge/control.sock
    assert exc.value.code == 2
    assert str(tmp_path / "p.bridge") in capsys.readouterr().err


# -- bridge_local's part of a status reply ---------------------------------------------------


def test_the_file_service_lists_an_upload_in_flight_with_its_progress(tmp_path):
    import base64
    import hashlib

    from bridge_local.fileservice import FileService, FilesConfig

    service = FileService(tmp_path, FilesConfig(chunk_size=1024))
    data = os.urandom(4096)
    md5 = hashlib.md5(data).hexdigest()
    assert service.in_flight() == []
    service.client_command(1, 4001, {"command": 4001, "fileid": "f1", "taskid": 1, "type": 1}, 0.0)
    service.client_command(1, 7000, {"command": 7000, "taskid": 1, "filename": "a.bin",
                                     "filesize": 4096, "md5": md5, "session": 1, "fileid": "f1"}, 0.0)
    service.client_command(1, 7001, {"command": 7001, "taskid": 1, "session": 1, "chunk_size": 1024,
                                     "range": [0, 1024], "data": base64.b64encode(data[:1024]).decode()},
                           0.1)
    assert service.in_flight() == [{"hop": "upload", "fileid": "f1", "filename": "a.bin",
                                    "filesize": 4096, "done_bytes": 1024, "state": "receiving",
                                    "paused": False}]
    service.client_gone(1)
    assert service.in_flight() == []
    service.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
async def test_another_user_cannot_connect_even_where_the_directory_is_open(tmp_path):
    import subprocess

    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(open_dir, 0o755)  # only the socket's own mode keeps others out
    path = open_dir / "control.sock"
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n")
    async with trio.open_nursery() as nursery:
        await _serving(path, {"status": lambda args: {}}, nursery)
        done = await trio.to_thread.run_sync(lambda: subprocess.run(
            ["/usr/bin/python3", "-c", probe, str(path)], user=65534, group=65534,
            capture_output=True, timeout=30))
        assert done.returncode == 13, done.stderr
        nursery.cancel_scope.cancel()
