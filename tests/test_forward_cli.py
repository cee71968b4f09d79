"""Port forwarding's flags and config keys: every user error is one line and exit status
2; ``config check`` says what is forwarded and exposed. No Tox network: a node below
fails before it would bootstrap (toward 127.0.0.1 only)."""

from __future__ import annotations

import socket

import pytest

from tests.test_cli import NODE, node, one_error_line, run
from toxbridge.cli.nodeargs import build_config, parse_node_args
from toxbridge.forward import Destination, LocalForward, StdioForward

KEY = "AB" * 32
ALICE, BOB = "CD" * 36 + "0000", "EF" * 36 + "0000"  # Tox IDs (their checksums hold)
TWO_PEERS = ["--peer", f"{ALICE}=alice", "--peer", f"{BOB}=bob"]


@pytest.mark.parametrize("args, message", [
    (["-L", "8080:host"], "argument -L/--forward: '8080:host' is not [BIND:]LPORT:HOST:PORT"),
    (["-L", "8080:host:0"], "argument -L/--forward: port 0 is outside 1..65535"),
    (["-W", "host"], "argument -W/--stdio: 'host' is not HOST:PORT"),
    (["--expose", "a b:22"], "argument --expose: host 'a b' is not a host name"),
    (["--hold-open", "0"], "argument --hold-open: 0 is outside 1..86400 seconds"),
    (["--hold-open", "soon"], "argument --hold-open: 'soon' is not a whole number of seconds"),
    (["--expose-file", "/nonexistent/rules.toml"], "cannot read the rules file /nonexistent/rules.toml"),
])
def test_bad_forward_flags_are_one_line(args, message, capsys, tmp_path):
    argv = ["--listen", "--secret", "s", "--bootstrap", NODE, "--profile", str(tmp_path / "p.tox"), *args]
    assert run(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("toxbridge: " + message), line


def test_a_bad_rules_file_is_one_line(capsys, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text("[[peer]]\nkey = 'ab'\n")
    argv = ["--listen", "--secret", "s", "--bootstrap", NODE, "--expose-file", str(rules),
            "--profile", str(tmp_path / "p.tox")]
    assert run(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == (f"toxbridge: rules file {rules}: [[peer]] 1: 'key' must be a public key "
                    "of 64 hex digits"), line


def test_flags_and_the_rules_file_make_the_config(tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(f'expose = ["10.0.0.2:80"]\n[[peer]]\nkey = "{KEY}"\nexpose = ["db:5432"]\n')
    config = build_config(parse_node_args([
        "--listen", "--secret", "s", "--bootstrap", NODE, "-L", "2222:127.0.0.1:22",
        "-L", "[::1]:0:web:80", "--expose", "127.0.0.1:22", "--expose-file", str(rules)]))
    assert config.forwards == (LocalForward("127.0.0.1", 2222, Destination("127.0.0.1", 22)),
                               LocalForward("::1", 0, Destination("web", 80)))
    assert config.rules.everyone == {Destination("127.0.0.1", 22), Destination("10.0.0.2", 80)}
    assert config.rules.peers == ((bytes.fromhex(KEY), frozenset({Destination("db", 5432)})),)
    assert config.stdio is None


def test_each_forward_names_its_peer(tmp_path):
    """``@PEER`` after a -L or -W; a forward without one reaches ``--via``'s peer."""
    config = build_config(parse_node_args([
        *TWO_PEERS, "--secret", "s", "--bootstrap", NODE, "--via", "bob",
        "-L", "0:127.0.0.1:80@alice", "-L", f"0:127.0.0.1:81@{'CD' * 32}", "-L", "0:web:82",
        "-W", "127.0.0.1:22@alice"]))
    assert [f.via for f in config.forwards] == ["alice", "CD" * 32, None]
    assert config.via == "bob"
    assert config.stdio == StdioForward(Destination("127.0.0.1", 22), "alice")


@pytest.mark.parametrize("args, message", [
    (["-L", "0:127.0.0.1:80@carol"], "-L 127.0.0.1:0:127.0.0.1:80@carol: 'carol' is neither a "
     "public key (64 hex digits) nor a peer's name (--peer ID=NAME, --peer-name KEY=NAME)"),
    (["-W", "127.0.0.1:22@carol"], "-W 127.0.0.1:22@carol: 'carol' is neither"),
    (["-L", "0:127.0.0.1:80@" + KEY], f"-L 127.0.0.1:0:127.0.0.1:80@{KEY}: {KEY[:16]}... is "
     "not a peer of this node (its --peer IDs, --peer-name keys)"),
    (["-L", "0:127.0.0.1:80@alice", "-L", "0:127.0.0.1:81"], "-L 127.0.0.1:0:127.0.0.1:81: "
     "this node dials 2 peers; say which one it reaches (-L 127.0.0.1:0:127.0.0.1:81@NAME, "
     "or --via PEER)"),
    (["-W", "127.0.0.1:22"], "-W 127.0.0.1:22: this node dials 2 peers; say which"),
    (["--via", "carol", "-L", "0:127.0.0.1:80"], "--via carol: 'carol' is neither"),
    (["-L", "0:127.0.0.1:80@a b"], "argument -L/--forward: '0:127.0.0.1:80@a b': the peer "
     "after '@' must be a name, a public key or 'peer'"),
])
def test_a_forward_to_an_unknown_or_unnamed_peer_is_one_line(args, message, capsys, tmp_path):
    argv = [*TWO_PEERS, "--secret", "s", "--bootstrap", NODE, "--profile",
            str(tmp_path / "p.tox"), *args]
    assert run(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("toxbridge: " + message), line


def test_a_listener_may_forward_to_a_key_it_has_not_met_yet():
    """Any allowed peer may come to a listener: its key is not an error (a name is)."""
    config = build_config(parse_node_args([
        "--listen", "--secret", "s", "--bootstrap", NODE, "-L", f"0:127.0.0.1:80@{KEY}"]))
    assert config.forwards[0].via == KEY


def test_config_check_says_what_is_forwarded_and_exposed(capsys, tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(f'listen = true\nsecret = "s"\nbootstrap = ["{NODE}"]\n'
                    'forward = ["2222:127.0.0.1:22"]\nexpose = ["127.0.0.1:80"]\n')
    assert run(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(", -L 127.0.0.1:2222:127.0.0.1:22, exposed to every peer: "
                                 "127.0.0.1:80"), out
    path.write_text(f'listen = true\nsecret = "s"\nbootstrap = ["{NODE}"]\nforward = "x"\n')
    assert run(["config", "check", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"toxbridge: config file {path}: key 'forward': 'x' is not"), line


def test_a_forward_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = node(tmp_path, "--profile", str(tmp_path / "p.tox"), "-L", f"{port}:127.0.0.1:22")
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert line.startswith(f"toxbridge: -L 127.0.0.1:{port}:127.0.0.1:22: cannot listen on "
                           f"127.0.0.1:{port}: "), line


def test_a_forward_off_loopback_warns(tmp_path):
    """In a network namespace that has only ``lo``: 0.0.0.0 reaches nothing else. The
    second -L's port is in use, so the node stops right after binding the first."""
    import os
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    script = (f"ip link set lo up && python3 -c 'import socket,subprocess,sys; s=socket.create_server((\"127.0.0.1\",0)); "
              f"sys.exit(subprocess.run(sys.argv[1:]+[\"-L\",\"%d:127.0.0.1:1\" % s.getsockname()[1]]).returncode)' "
              f"{sys.executable} -m toxbridge --listen --secret s --bootstrap {NODE} "
              f"--profile {tmp_path / 'p.tox'} -L 0.0.0.0:0:127.0.0.1:1")
    r = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert ("-L 0.0.0.0:0:127.0.0.1:1 listens on 0.0.0.0: anyone who reaches it reaches "
            "127.0.0.1:1") in r.stderr, r.stderr
    assert one_error_line(r.stderr).startswith("toxbridge: -L 127.0.0.1:"), r.stderr
