"""The locked app and bridge ports, against real nodes (``python -m toxbridge``) on the
private network: a client process that switched to another uid (nobody) is refused with one
error line; the node's own uid is admitted as before; the app token admits other uids;
the Unix-socket app port (0600, SO_PEERCRED); ``--app-open``.

The other-uid client is a child process started with ``user=``/``group=`` (the switch is
done before exec) running a stdlib-only script: it connects, sends, half-closes and prints
everything the node sent until the node closed. Needs root, as in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import trio

from bridge_local.client import open_client
from bridge_local.protocol import make_token
from toxbridge.framing import DATA, EVENT, FrameDecoder, decode_event
from toxbridge.testing import DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("daemons")]

NOBODY = 65534
TOKEN = "k3y-for-carol-0123456789abcdef"

CLIENT = r"""
import os, socket, sys
kind, where, data = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
print("uid", os.getuid(), flush=True)
try:
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(15)
        s.connect(where)
    else:
        host, port = where.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=15)
except OSError as exc:
    print("connect-error", exc.errno)
    sys.exit(0)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
out = b""
while chunk := s.recv(65536):
    out += chunk
print("got", out.hex())
"""


def _interpreters() -> list[str]:
    return list(dict.fromkeys([sys.executable, getattr(sys, "_base_executable", sys.executable),
                               "/usr/bin/python3"]))


@pytest.fixture(scope="module")
def nobody_python() -> str:
    """An interpreter that uid 65534 may run (the venv's may live under /root)."""
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root (CI runs these as root)")
    for exe in _interpreters():
        try:
            r = subprocess.run([exe, "-I", "-c", "pass"], user=NOBODY, group=NOBODY,
                               extra_groups=[], capture_output=True, timeout=20)
        except OSError:
            continue
        if r.returncode == 0:
            return exe
    pytest.skip(f"no Python interpreter that uid {NOBODY} may run among {_interpreters()}")


def run_client(python: str | None, kind: str, where: str, data: bytes) -> bytes | int:
    """What the node sent until it closed (bytes), or the connect errno (int). ``python``
    None: as ourselves, else as nobody with that interpreter."""
    as_other = {} if python is None else {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    r = subprocess.run([python or sys.executable, "-I", "-c", CLIENT, kind, where, data.hex()],
                       capture_output=True, text=True, timeout=30, **as_other)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"uid {NOBODY if python else os.geteuid()}", r.stdout
    word, value = lines[1].split(" ", 1) if " " in lines[1] else (lines[1], "")
    return int(value) if word == "connect-error" else bytes.fromhex(value)


def lines_of(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


def events_of(data: bytes) -> list[dict]:
    decoder = FrameDecoder(allowed_kinds=(DATA, EVENT))
    decoder.receive_data(data)
    frames = list(decoder)
    assert all(f.kind == EVENT for f in frames)
    return [decode_event(f.payload) for f in frames]


def login(name: str, **extra) -> bytes:
    return json.dumps({"command": 1000, "name": name, **extra}).encode() + b"\n"


def wait_log(node: DaemonProc, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in node.log):
        assert time.monotonic() < deadline, f"no log line with {text!r}:\n" + "\n".join(node.log)
        time.sleep(0.05)


@pytest.fixture(scope="module")
def locked(tox_network, tmp_path_factory):
    """A whole node with the default lock and a Unix-socket app port too."""
    d = tmp_path_factory.mktemp("locked")
    # Pytest's tmp dirs are 0700: the socket gets a directory others may enter, so that
    # only its own mode keeps them out.
    sockdir = Path(tempfile.mkdtemp(prefix="toxbridge-access-"))
    try:
        sockdir.chmod(0o711)
        sock = sockdir / "app.sock"
        with DaemonProc(["--listen", "--app-socket", str(sock)], d / "n.tox", tox_network,
                        raw=False) as node:
            node.expect("app-socket ")
            yield node, sock
        assert not sock.exists()  # removed on a clean stop
    finally:
        shutil.rmtree(sockdir)


@pytest.fixture(scope="module")
def with_token(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("token")
    (d / "token").write_text(TOKEN + "\n")
    with DaemonProc(["--listen", "--app-token-file", str(d / "token")], d / "n.tox", tox_network,
                    raw=False) as node:
        yield node


@pytest.fixture(scope="module")
def raw(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    with DaemonProc(["--listen"], d / "n.tox", tox_network) as node:
        yield node


@pytest.fixture(scope="module")
def opened(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("open")
    with DaemonProc(["--listen", "--app-open"], d / "n.tox", tox_network, raw=False) as node:
        yield node


# -- the app port --------------------------------------------------------------------------

def test_app_port_refuses_another_uid_with_one_9013_line_then_closes(locked, nobody_python):
    node, _ = locked
    got = run_client(nobody_python, "tcp", f"127.0.0.1:{node.app_port}", login("mallory"))
    [reply] = lines_of(got)
    assert reply["command"] == 9000 and reply["code"] == 9013
    assert f"uid {os.geteuid()}" in reply["message"] and f"uid {NOBODY}" in reply["message"]
    wait_log(node, "refused an app connection")


def test_app_port_admits_the_nodes_own_uid_unchanged(locked):
    node, _ = locked
    got = run_client(None, "tcp", f"127.0.0.1:{node.app_port}", login("alice"))
    [reply] = lines_of(got)
    assert reply["command"] == 2000 and reply["name"] == "alice" and "apptoken" not in reply


async def test_unix_socket_is_0600_and_serves_the_same_protocol(locked):
    node, sock = locked
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == os.geteuid()
    key = bytes.fromhex(node.tox_id)[:32]
    with trio.fail_after(20):
        async with open_client(path=sock, name="bob") as bob:
            assert bob.token == make_token(key, "bob")
            users = await bob.users()
            assert [(u["name"], u["ip"], u["port"]) for u in users] == [("bob", "unix", 0)]


def test_unix_socket_mode_keeps_another_uid_out(locked, nobody_python):
    _, sock = locked
    assert run_client(nobody_python, "unix", str(sock), login("mallory")) == 13  # EACCES


def test_unix_socket_checks_so_peercred_even_when_its_mode_lets_others_in(locked, nobody_python):
    node, sock = locked
    os.chmod(sock, 0o666)
    try:
        got = run_client(nobody_python, "unix", str(sock), login("mallory"))
    finally:
        os.chmod(sock, 0o600)
    [reply] = lines_of(got)
    assert reply["code"] == 9013 and f"uid {NOBODY}" in reply["message"]


def test_send_file_reaches_the_node_over_app_socket(locked, tmp_path):
    _, sock = locked
    path = tmp_path / "f.txt"
    path.write_text("hello")
    r = subprocess.run([sys.executable, "-m", "toxbridge", "send-file", "--app-socket", str(sock),
                        "--name", "alice", "--to", "nobody-here", "--quiet", str(path)],
                       capture_output=True, text=True, timeout=30)
    # Logged in over the socket, listed the users, found no such user.
    assert (r.returncode, r.stderr.strip()) == (1, "no user 'nobody-here' is online")


# -- the app token -------------------------------------------------------------------------

def test_app_token_admits_another_uid_whose_login_carries_it(with_token, nobody_python):
    node = with_token
    token = make_token(bytes.fromhex(node.tox_id)[:32], "carol")
    requests = (b'{"command":1001,"token":"x"}\n' + login("carol", apptoken=TOKEN)
                + json.dumps({"command": 1001, "token": token}).encode() + b"\n")
    got = run_client(nobody_python, "tcp", f"127.0.0.1:{node.app_port}", requests)
    replies = lines_of(got)
    assert [r["command"] for r in replies] == [9000, 2000, 2001]
    assert replies[0]["code"] == 9008  # before the login: as for anyone not logged in
    assert replies[1]["token"] == token
    assert [u["name"] for u in replies[2]["users"]] == ["carol"]


@pytest.mark.parametrize("extra, code", [({}, 9014), ({"apptoken": TOKEN + "x"}, 9015),
                                         ({"apptoken": TOKEN[:-1]}, 9015),
                                         ({"apptoken": 12345}, 9015)])
def test_app_token_missing_or_wrong_gets_its_code_and_the_connection_closes(
        with_token, nobody_python, extra, code):
    node = with_token
    requests = login("carol", **extra) + b'{"command":1001}\n'
    replies = lines_of(run_client(nobody_python, "tcp", f"127.0.0.1:{node.app_port}", requests))
    assert [(r["command"], r["code"], r.get("request")) for r in replies] == [(9000, code, 1000)]


def test_app_token_is_not_needed_by_the_nodes_own_uid(with_token):
    node = with_token
    [reply] = lines_of(run_client(None, "tcp", f"127.0.0.1:{node.app_port}", login("dave")))
    assert reply["command"] == 2000


def test_bridge_port_stays_same_uid_even_with_an_app_token(with_token, nobody_python):
    node = with_token
    [event] = events_of(run_client(nobody_python, "tcp", f"127.0.0.1:{node.port}", b""))
    assert event["event"] == "error" and event["code"] == "forbidden"


# -- the bridge port -----------------------------------------------------------------------

def test_bridge_port_refuses_another_uid_with_one_error_event(raw, nobody_python):
    got = run_client(nobody_python, "tcp", f"127.0.0.1:{raw.port}", b"\x01\x00\x02hi")
    [event] = events_of(got)
    assert event["event"] == "error" and event["code"] == "forbidden"
    assert f"uid {NOBODY}" in event["message"]
    wait_log(raw, "refused a bridge port connection")


def test_bridge_port_admits_the_nodes_own_uid(raw):
    events = events_of(run_client(None, "tcp", f"127.0.0.1:{raw.port}", b""))
    assert [e["event"] for e in events][:2] == ["ready", "peer"]
    assert events[0]["tox_id"] == raw.tox_id


# -- --app-open ----------------------------------------------------------------------------

def test_app_open_admits_another_uid_on_both_ports_and_warns(opened, nobody_python):
    [reply] = lines_of(run_client(nobody_python, "tcp", f"127.0.0.1:{opened.app_port}",
                                  login("erin")))
    assert reply["command"] == 2000
    # The bridge port is past the check: its one app (our bridge_local) makes it busy.
    [event] = events_of(run_client(nobody_python, "tcp", f"127.0.0.1:{opened.port}", b""))
    assert event["code"] == "busy"
    wait_log(opened, "--app-open: any local account")


# -- user errors ---------------------------------------------------------------------------

def node_error(tox_network, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toxbridge", "--listen", "--secret", "s",
                           "--profile", str(tmp_path / "e.tox"), "--bootstrap", str(tox_network),
                           *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_an_app_socket_in_use_is_one_line_and_exit_2(locked, tox_network, tmp_path):
    _, sock = locked
    r = node_error(tox_network, tmp_path, "--app-socket", str(sock))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"toxbridge: --app-socket {sock} is in use by a "
                                             "running process"]


@pytest.mark.parametrize("setup, expected", [
    ("file", "--app-socket {p} exists and is not a socket"),
    ("short-token", "the app token file {p} must hold one token of at least 16 characters, "
                    "without spaces"),
    ("raw", "--app-socket and --app-token-file are for the app server: drop --raw"),
])
def test_access_option_errors_are_one_line_and_exit_2(tox_network, tmp_path, setup, expected):
    p = tmp_path / "x"
    p.write_text("short")
    args = {"file": ["--app-socket", str(p)], "short-token": ["--app-token-file", str(p)],
            "raw": ["--raw", "--app-socket", str(p)]}[setup]
    r = node_error(tox_network, tmp_path, *args)
    assert (r.returncode, r.stderr.strip().splitlines()) == (2, ["toxbridge: " + expected.format(p=p)])
