"""The config file: TOML -> options (tables of good and bad values, every error naming the
file, the key and what is wrong), every node flag is a key, flags win over the file, and
``toxbridge config example`` is complete and valid. No Tox network here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from toxbridge.cli import EXAMPLE_CONFIG, main
from toxbridge.cli.configfile import Option, load_config, parse_config
from toxbridge.errors import ConfigError
from toxbridge.network import NodeInfo
from toxbridge.cli.nodeargs import build_config, node_parser, option_table, parse_node_args, port_arg

KEY = "AB" * 32
NODE = f"127.0.0.1:33445:{KEY}"
BASE = Path("/etc/toxbridge")
OPTIONS = {
    "listen": Option("listen", "bool"),
    "bridge-port": Option("bridge_port", "int", port_arg),
    "secret": Option("secret", "str"),
    "profile": Option("profile", "str", Path),
    "bootstrap": Option("bootstrap", "list", NodeInfo.parse),
    "verbose": Option("verbose", "int"),
}


@pytest.mark.parametrize("toml, expected", [
    ("listen = true", {"listen": True}),
    ("bridge-port = 5000", {"bridge_port": 5000}),
    ("secret = 'x y'", {"secret": "x y"}),
    ("profile = 'p.tox'", {"profile": BASE / "p.tox"}),  # relative to the file's directory
    ("profile = '/var/lib/p.tox'", {"profile": Path("/var/lib/p.tox")}),
    ("profile = '~/p.tox'", {"profile": Path("~/p.tox").expanduser()}),
    (f"bootstrap = '{NODE}'", {"bootstrap": [NodeInfo.parse(NODE)]}),  # one string is a list of one
    (f"bootstrap = ['{NODE}', '{NODE}']", {"bootstrap": [NodeInfo.parse(NODE)] * 2}),
    ("bootstrap = []", {"bootstrap": []}),
    ("verbose = 2\nlisten = false", {"verbose": 2, "listen": False}),
    ("", {}),
])
def test_good_values(toml, expected):
    assert load_config(parse_config(toml, "c.toml"), OPTIONS, "c.toml", BASE) == expected


@pytest.mark.parametrize("toml, message", [
    ("listen = 1", "key 'listen': must be true or false, not an integer (1)"),
    ("listen = 'yes'", "key 'listen': must be true or false, not a string ('yes')"),
    ("bridge-port = '5000'", "key 'bridge-port': must be an integer, not a string ('5000')"),
    ("bridge-port = true", "key 'bridge-port': must be an integer, not true or false (True)"),
    ("bridge-port = 99999", "key 'bridge-port': port 99999 out of range"),
    ("bridge-port = 1.5", "key 'bridge-port': must be an integer, not a number (1.5)"),
    ("secret = 5", "key 'secret': must be a string, not an integer (5)"),
    ("bootstrap = 'nonsense'", "key 'bootstrap': bad node 'nonsense' (want HOST:PORT:PUBLIC_KEY)"),
    ("bootstrap = [1, 2]", "key 'bootstrap': must be a string or a list of strings, not a list"),
    ("bootstarp = []", "key 'bootstarp': unknown key (did you mean 'bootstrap'?)"),
    ("zzz = 1", "key 'zzz': unknown key"),
    ("[node]\nlisten = true", "key 'node': is a table; toxbridge reads only top-level keys"),
    ("listen = tru", "not valid TOML: Invalid value (at line 1, column 10)"),
    ("listen = true\nlisten = false", "not valid TOML"),
])
def test_bad_values_name_the_file_and_the_key(toml, message):
    with pytest.raises(ConfigError) as exc:
        load_config(parse_config(toml, "/etc/t.toml"), OPTIONS, "/etc/t.toml", BASE)
    text = str(exc.value)
    assert text.startswith("config file /etc/t.toml: ") and message in text, text
    assert "\n" not in text


def test_every_node_flag_is_a_key_of_its_kind():
    parser = node_parser()
    table = option_table(parser)
    longs = {s[2:] for a in parser._actions for s in a.option_strings if s.startswith("--")}
    assert set(table) == longs - {"help", "config"}
    kinds = {key: o.kind for key, o in table.items()}
    assert kinds["listen"] == kinds["no-udp"] == "bool"
    assert kinds["bridge-port"] == kinds["app-port"] == kinds["verbose"] == "int"
    assert kinds["bootstrap"] == kinds["allow"] == kinds["tcp-relay"] == kinds["peer"] == "list"
    assert kinds["secret"] == kinds["profile"] == "str"
    assert kinds["max-peers"] == "int"


# -- flags over the file ----------------------------------------------------------------

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_the_file_fills_in_what_the_flags_do_not_say(tmp_path):
    path = write(tmp_path, f"listen = true\nsecret = 'from-file'\nbridge-port = 5000\n"
                           f"bootstrap = ['{NODE}']\nprofile = 'me.tox'\nno-udp = true\n")
    args = parse_node_args(["--config", str(path)])
    assert (args.listen, args.secret, args.bridge_port, args.no_udp) == (True, "from-file", 5000, True)
    assert args.profile == tmp_path / "me.tox" and args.bootstrap == [NodeInfo.parse(NODE)]
    assert args.app_port == 0  # neither said: the default


@pytest.mark.parametrize("flags, field, expected", [
    (["--secret", "from-flag"], "secret", "from-flag"),
    (["--bridge-port", "0"], "bridge_port", 0),  # a flag equal to the default still wins
    (["--bootstrap", f"10.0.0.1:1:{KEY}"], "bootstrap", [NodeInfo.parse(f"10.0.0.1:1:{KEY}")]),  # replaced, not added
    (["--profile", "other.tox"], "profile", Path("other.tox")),  # relative to the working directory
    (["-v"], "verbose", 1),
])
def test_flags_win_over_the_file(tmp_path, flags, field, expected):
    path = write(tmp_path, f"listen = true\nsecret = 'from-file'\nbridge-port = 5000\n"
                           f"bootstrap = ['{NODE}']\nprofile = 'me.tox'\nverbose = 2\n")
    assert getattr(parse_node_args(["--config", str(path), *flags]), field) == expected


def test_a_mode_flag_replaces_the_files_mode(tmp_path):
    path = write(tmp_path, "listen = true\nsecret = 's'\n")
    args = parse_node_args(["--config", str(path), "--peer", "CD" * 36 + "0000"])
    assert args.peer == [(bytes.fromhex("CD" * 36 + "0000"), None)] and not args.listen
    path = write(tmp_path, f"peer = '{'CD' * 36 + '0000'}'\nsecret = 's'\n")
    args = parse_node_args(["--listen", "--config", str(path)])
    assert args.listen and args.peer == []


def test_a_file_may_listen_and_dial_several_peers_with_names(tmp_path):
    path = write(tmp_path, f"listen = true\nsecret = 's'\nbootstrap = ['{NODE}']\n"
                           f"peer = ['{'CD' * 36 + '0000'}=laptop', '{'EF' * 36 + '0000'}']\n"
                           f"peer-name = ['{'AB' * 32}=phone']\nmax-peers = 4\nvia = 'laptop'\n")
    config = build_config(parse_node_args(["--config", str(path)]))
    assert config.mode == "listen" and config.max_peers == 4 and config.via == "laptop"
    assert config.peers == (bytes.fromhex("CD" * 36 + "0000"), bytes.fromhex("EF" * 36 + "0000"))
    assert dict(config.names) == {bytes.fromhex("CD" * 32): "laptop",
                                  bytes.fromhex("AB" * 32): "phone"}


@pytest.mark.parametrize("text, message", [
    (f"listen = true\nmax-peers = 2000\nsecret = 's'", "key 'max-peers': 2000 is not"),
    ("secret = 's'", "say --listen or --peer ID (or listen = true"),
    ("peer = 'XYZ'", "key 'peer': Tox ID is not hex"),
])
def test_a_bad_mode_in_the_file(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_node_args(["--config", str(write(tmp_path, text))])


def test_a_secret_in_a_file_others_can_read_is_warned_about(tmp_path, caplog):
    path = write(tmp_path, "listen = true\nsecret = 's'\n")
    path.chmod(0o644)
    parse_node_args(["--config", str(path)])
    assert "chmod 600" in caplog.text


# -- the example --------------------------------------------------------------------------

def test_config_example_prints_a_complete_valid_file(tmp_path, capsys, monkeypatch):
    assert main(["config", "example"]) == 0
    text = capsys.readouterr().out
    assert text == EXAMPLE_CONFIG.read_text()
    table = option_table(node_parser())
    mentioned = set(re.findall(r"^#? ?([a-z][a-z0-9-]*) = ", text, re.MULTILINE))
    assert mentioned == set(table), "keys missing from / unknown to the example"
    # Uncommenting any one line still gives a valid file.
    for line in text.splitlines():
        if re.match(r"^# ?[a-z][a-z0-9-]* = ", line):
            value = line.lstrip("# ").split("#")[0]
            parse_config(value, "line")  # each is TOML on its own
    path = tmp_path / "example.toml"
    path.write_text(text)
    monkeypatch.setenv("TOXBRIDGE_SECRET", "s3cret")
    config = build_config(parse_node_args(["--config", str(path)]))
    assert config.mode == "listen" and config.secret == b"s3cret" and len(config.bootstrap) >= 20
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok: listen,")


def test_config_check_of_a_bad_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, "listen = true\nbridge-port = 'x'\n")
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"toxbridge: config file {path}: key 'bridge-port': must be an integer, not a string ('x')\n"


def test_argparse_types_and_the_file_share_converters():
    assert port_arg("5") == 5 and port_arg(5) == 5
    with pytest.raises(argparse.ArgumentTypeError, match="out of range"):
        port_arg(70000)
