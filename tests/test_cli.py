"""The command line: bad arguments give exit status 2 and one clear line, never a traceback;
`toxbridge id` prints a profile's Tox ID; the bundled public nodes list parses. Nothing here
starts a Tox network (node mode is exercised by test_daemon.py)."""

from __future__ import annotations

import pytest

from toxbridge.cli import BUNDLED_NODES, _read_nodes, main
from toxbridge.network import loopback_options
from toxbridge.tox import Tox, save_profile

NODE = "127.0.0.1:33445:" + "AB" * 32
PEER_ID = "CD" * 38


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--listen", "--bootstrap", NODE], "needs --secret"),
        (["--peer", "XYZ", "--secret", "s", "--bootstrap", NODE], "Tox ID"),
        (["--listen", "--secret", "s", "--bootstrap", "nonsense"], "bad node"),
        (["--listen", "--secret", "s", "--bootstrap", "127.0.0.1:99999:" + "AB" * 32], "port out of range"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--bridge-host", "0.0.0.0"], "--public-bind"),
        (["--listen", "--secret", "s", "--nodes", "/nonexistent/nodes.json"], "cannot read the nodes file"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-env", "TOXBRIDGE_TEST_UNSET"],
         "TOXBRIDGE_TEST_UNSET"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-file", "/nonexistent/pw"],
         "cannot read the passphrase file /nonexistent/pw"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-file", "/dev/null"],
         "the passphrase file /dev/null is empty"),
        (["--listen", "--secret", "s", "--bootstrap", NODE, "--passphrase-file", "/dev/null",
          "--passphrase-env", "X"], "not both"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("TOXBRIDGE_SECRET", raising=False)
    monkeypatch.delenv("TOXBRIDGE_TEST_UNSET", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_listen_and_peer_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--listen", "--peer", PEER_ID, "--secret", "s", "--bootstrap", NODE])
    assert exc.value.code == 2


def test_id_prints_the_profiles_tox_id(tmp_path, capsys):
    profile = tmp_path / "p.tox"
    with Tox(loopback_options()) as tox:
        save_profile(profile, tox.savedata())
        address = tox.address.hex().upper()
    assert main(["id", "--profile", str(profile)]) == 0
    assert capsys.readouterr().out.strip() == address


def test_id_of_a_missing_profile_is_a_clear_error(tmp_path, capsys):
    assert main(["id", "--profile", str(tmp_path / "none.tox")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("toxbridge: no profile at") and err.count("\n") == 1


def test_the_bundled_public_nodes_list_parses():
    nodes = _read_nodes(str(BUNDLED_NODES))
    assert len(nodes) >= 8
    assert all(len(n.public_key) == 32 and n.port and n.tcp_port for n in nodes)
    assert not any(n.host.startswith("127.") for n in nodes)


def test_id_reads_the_passphrase_from_a_file_like_a_systemd_credential(tmp_path, capsys):
    profile, secret = tmp_path / "p.tox", tmp_path / "credentials" / "passphrase"
    secret.parent.mkdir()
    secret.write_text("correct horse\n")  # the newline is not part of it
    with Tox(loopback_options()) as tox:
        save_profile(profile, tox.savedata(), "correct horse")
        address = tox.address.hex().upper()
    assert main(["id", "--profile", str(profile), "--passphrase-file", str(secret)]) == 0
    assert capsys.readouterr().out.strip() == address
