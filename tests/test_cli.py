"""The command line: every user error (bad flags, a bad config, a corrupt or wrongly
encrypted profile, a port in use) is one line and exit status 2, never a traceback (``-v``
shows it); ``toxbridge --help`` lists every command in one line each; ``toxbridge id``
prints a profile's Tox ID; the bundled public nodes list parses. No Tox network here: a
node run below fails before it would bootstrap, or bootstraps toward 127.0.0.1 only (no
bootstrap in this file, and none from the bundled list: test_bootstrap.py covers bad nodes)."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from toxbridge.cli import COMMANDS, main
from toxbridge.cli.errors import user_message
from toxbridge.errors import ConfigError, RemoteProtocolError, ToxbridgeError
from toxbridge.network import loopback_options
from toxbridge.cli.nodeargs import BUNDLED_DATE, BUNDLED_NODES, read_nodes
from toxbridge.tox import DecryptionError, FriendAddError, Tox, ToxNewError, save_profile
from toxbridge.tox.profile import ProfileError

NODE = "127.0.0.1:33445:" + "AB" * 32
PEER_ID = "CD" * 36 + "0000"  # its checksum: 18 0xCD bytes XORed at each of two places
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \S+ (DEBUG|INFO|WARNING|ERROR) ")
ALL_COMMANDS = ("chat", "send-file", "get-file", "status", "peers", "config", "id", "bootstrap-node", "demo")


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits; our own errors return
        return exc.code


def one_error_line(err: str) -> str:
    """The one line that is not a log line; fails if there are more, or a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("toxbridge"), err
    return lines[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--listen", "--bootstrap", NODE], "needs --secret"),
        (["--peer", "XYZ", "--secret", "s", "--bootstrap", NODE], "argument --peer: Tox ID is not hex"),
        (["--listen", "--secret", "s", "--bootstrap", "nonsense"], "argument --bootstrap: bad node"),
        (["--listen", "--secret", "s", "--bootstrap", "127.0.0.1:99999:" + "AB" * 32], "port out of range"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--bridge-host", "0.0.0.0"], "--public-bind"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--app-port", "70000"], "port 70000 out of range"),
        (["--listen", "--secret", "s", "--nodes", "/nonexistent/nodes.json"], "cannot read the nodes file"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-env", "TOXBRIDGE_TEST_UNSET"],
         "TOXBRIDGE_TEST_UNSET"),
        (["--listen", "--peer", PEER_ID, "--peer", PEER_ID, "--secret", "s", "--bootstrap", NODE],
         "is given twice"),
        (["--peer", PEER_ID + "=0abc", "--secret", "s", "--bootstrap", NODE], "not 1-32 letters"),
        (["--peer", "CD" * 38, "--secret", "s", "--bootstrap", NODE], "checksum does not match"),
        (["--listen", "--max-peers", "0", "--secret", "s", "--bootstrap", NODE], "--max-peers"),
        (["--listen", "--via", "nobody", "--secret", "s", "--bootstrap", NODE], "--via nobody"),
        (["--listen", "--secret", "s", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--listen", "--config", "/nonexistent/node.toml"], "cannot read the config file /nonexistent/node.toml"),
        ([], "say --listen or --peer ID"),
        (["stauts"], "unknown command 'stauts' (did you mean status?"),
        (["id", "--profile"], "toxbridge id: argument --profile: expected one argument"),
        (["bootstrap-node", "--port", "x"], "toxbridge bootstrap-node: argument --port"),
        (["chat", "--name", "a"], "toxbridge chat: give one of --app-port N or --app-socket PATH"),
        (["send-file", "--app-port", "1"], "toxbridge send-file: the following arguments are required"),
        (["get-file", "--app-port", "x"], "toxbridge get-file: argument --app-port"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-file", "/nonexistent/pw"],
         "cannot read the passphrase file /nonexistent/pw"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-file", "/dev/null"],
         "the passphrase file /dev/null is empty"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-file", "/dev/null",
          "--passphrase-env", "X"], "not both"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("TOXBRIDGE_SECRET", raising=False)
    monkeypatch.delenv("TOXBRIDGE_TEST_UNSET", raising=False)
    assert run(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert message in line, line


@pytest.mark.parametrize("argv", [["chat", "--name", "a"], ["send-file", "--name", "a", "--to", "b", __file__],
                                  ["get-file", "--name", "a", "F" * 32]])
def test_a_client_with_no_bridge_on_its_port_is_one_line(argv, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: nothing answers there
        port = s.getsockname()[1]
        assert run([*argv, "--app-port", str(port)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"toxbridge {argv[0]}: ") and str(port) in line, line


def test_a_bad_config_file_is_one_line_naming_file_and_key(tmp_path, capsys):
    path = tmp_path / "node.toml"
    path.write_text("listen = true\nsecret = 's'\napp-port = 'eighty'\n")
    assert run(["--config", str(path)]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"toxbridge: config file {path}: key 'app-port': must be an integer, not a string ('eighty')")


def test_help_lists_every_command_in_one_line_each(capsys):
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and not out.startswith("The ")  # no reST, no module docstring
    assert out.startswith("usage: toxbridge")
    assert [c.name for c in COMMANDS] == list(ALL_COMMANDS)
    for name in ALL_COMMANDS:
        rows = [line for line in out.splitlines() if re.match(rf"^  {re.escape(name)}\s{{2,}}\S", line)]
        assert len(rows) == 1, (name, out)
    assert "https://nodes.tox.chat/json" in out and BUNDLED_DATE in out


def test_every_command_has_its_help(capsys):
    for name in ("config", "id", "bootstrap-node", "demo"):
        assert run([name, "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: toxbridge {name}")
    assert run(["--listen", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--config FILE" in out and "https://nodes.tox.chat/json" in out


def test_id_prints_the_profiles_tox_id(tmp_path, capsys):
    profile = tmp_path / "p.tox"
    with Tox(loopback_options()) as tox:
        save_profile(profile, tox.savedata())
        address = tox.address.hex().upper()
    assert main(["id", "--profile", str(profile)]) == 0
    assert capsys.readouterr().out.strip() == address


@pytest.fixture
def encrypted_profile(tmp_path):
    profile = tmp_path / "enc.tox"
    with Tox(loopback_options()) as tox:
        save_profile(profile, tox.savedata(), "right passphrase")
    return profile


@pytest.mark.parametrize("setup, message", [
    ("missing", "no profile at {p} (run toxbridge --listen once to create it)"),
    ("corrupt", "the profile {p} is not a Tox profile toxcore can load (NEW_LOAD_BAD_FORMAT)"),
    ("no passphrase", "the profile {p} is encrypted: give its passphrase with --passphrase-env VAR"),
    ("wrong passphrase", "cannot decrypt the profile {p} (DECRYPTION_FAILED): the passphrase in "
                         "$TB_PASS is wrong"),
])
def test_id_of_a_bad_profile_is_one_line(setup, message, tmp_path, encrypted_profile, capsys, monkeypatch):
    profile, argv = tmp_path / "p.tox", []
    if setup == "corrupt":
        profile.write_bytes(b"\x00" * 8 + b"not savedata" * 20)
    elif setup != "missing":
        profile = encrypted_profile
    if setup == "wrong passphrase":
        monkeypatch.setenv("TB_PASS", "wrong")
        argv = ["--passphrase-env", "TB_PASS"]
    assert run(["id", "--profile", str(profile), *argv]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("toxbridge: " + message.format(p=profile)), line


# -- a node that fails at its start (real processes, as a user runs them) ---------------

def node(tmp_path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toxbridge", "--listen", "--secret", "s", "--bootstrap", NODE,
                           *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
                          cwd=tmp_path)


@pytest.mark.parametrize("setup, message", [
    ("corrupt", "is not a Tox profile toxcore can load (NEW_LOAD_BAD_FORMAT): restore it from a backup"),
    ("no passphrase", "is encrypted: give its passphrase with --passphrase-env VAR"),
    ("wrong passphrase", "(DECRYPTION_FAILED): the passphrase in $TB_PASS is wrong"),
])
def test_a_node_with_a_bad_profile_says_so_in_one_line(setup, message, tmp_path, encrypted_profile):
    profile, args = tmp_path / "p.tox", []
    if setup == "corrupt":
        profile.write_bytes(b"\x00" * 8 + b"not savedata" * 20)
    else:
        profile = encrypted_profile
        if setup == "wrong passphrase":
            args = ["--passphrase-env", "TB_PASS"]
    r = node(tmp_path, "--profile", str(profile), *args, env={"TB_PASS": "wrong"})
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert line.startswith("toxbridge: ") and str(profile) in line and message in line, line


@pytest.mark.parametrize("option", ["--bridge-port", "--app-port"])
def test_a_port_in_use_is_one_line(option, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = node(tmp_path, "--profile", str(tmp_path / "p.tox"), option, str(port))
        verbose = node(tmp_path, "--profile", str(tmp_path / "p.tox"), option, str(port), "-v")
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr) == (f"toxbridge: cannot listen on {option} {port}: address already "
                                        "in use; choose another port (0 picks a free one) or host")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr  # -v: the traceback too
    assert verbose.stderr.splitlines()[-1] == r.stderr.splitlines()[-1]


def test_the_bundled_public_nodes_list_parses():
    nodes = read_nodes(BUNDLED_NODES)
    data = json.loads(BUNDLED_NODES.read_text())
    assert data["date"] == BUNDLED_DATE and len(nodes) == len(data["nodes"]) >= 20
    assert all(len(n.public_key) == 32 and n.port for n in nodes)
    assert sum(1 for n in nodes if n.tcp_port) >= 20
    assert not any(n.host.startswith(("127.", "10.", "192.168.", "localhost")) for n in nodes)


def _os_error(code: int, name: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), *([name] if name else []))


@pytest.mark.parametrize("exc, expected", [
    (ConfigError("bad thing"), "bad thing"),
    (ExceptionGroup("trio", [ExceptionGroup("inner", [ConfigError("deep")])]), "deep"),
    (ProfileError("load_profile", "PROFILE_ENCRYPTED"), "the profile /p.tox is encrypted"),
    (DecryptionError("tox_pass_decrypt", "DECRYPTION_FAILED"), "cannot decrypt the profile /p.tox"),
    (ToxNewError("tox_new", "NEW_LOAD_BAD_FORMAT"), "the profile /p.tox is not a Tox profile"),
    (ToxNewError("tox_new", "NEW_PORT_ALLOC"), "toxcore found no free UDP port"),
    (FriendAddError("tox_friend_add", "FRIEND_ADD_OWN_KEY"), "--peer is this node's own Tox ID"),
    (_os_error(errno.EADDRINUSE), "cannot listen on --app-port 5000: address already in use"),
    (_os_error(errno.EACCES, "/var/lib/x"), "cannot use /var/lib/x: permission denied"),
    (ToxbridgeError("tox-bootstrapd not found (run native/toxcore-build.sh)"), "tox-bootstrapd not found"),
    # Bugs keep their traceback:
    (RuntimeError("oops"), None),
    (RemoteProtocolError("bad frame"), None),
    (FriendAddError("tox_friend_add", "FRIEND_ADD_NULL"), None),
    (_os_error(errno.ECONNRESET), None),
])
def test_which_errors_are_the_users_and_their_line(exc, expected):
    message = user_message(exc, Path("/p.tox"), "PASS", {"--bridge-port": 0, "--app-port": 5000})
    if expected is None:
        assert message is None
    else:
        assert message is not None and message.startswith(expected) and "\n" not in message, message


def test_id_reads_the_passphrase_from_a_file_like_a_systemd_credential(tmp_path, capsys):
    profile, secret = tmp_path / "p.tox", tmp_path / "credentials" / "passphrase"
    secret.parent.mkdir()
    secret.write_text("correct horse\n")  # the newline is not part of it
    with Tox(loopback_options()) as tox:
        save_profile(profile, tox.savedata(), "correct horse")
        address = tox.address.hex().upper()
    assert main(["id", "--profile", str(profile), "--passphrase-file", str(secret)]) == 0
    assert capsys.readouterr().out.strip() == address
