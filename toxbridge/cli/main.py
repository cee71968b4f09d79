"""The ``toxbridge`` command: a node (``--listen``, ``--peer ID``, ``--config FILE``; its
options are in ``nodeargs``) or one of the commands in ``COMMANDS``.

Every user error is one line on stderr and exit status 2 (see ``errors``); ``-v`` adds
the traceback. An error that is not a user's is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import USER_ERROR, OneLineParser, user_message
from ..errors import ConfigError
from .nodeargs import (BUNDLED_DATE, NODES_SOURCE, build_app_config, build_config, parse_node_args,
                       read_passphrase)
from ..usage import port_arg

__all__ = ["main", "COMMANDS", "Command"]

log = logging.getLogger("toxbridge")

EXAMPLE_CONFIG = Path(__file__).parent.parent / "data" / "config-example.toml"
VERBOSE_FLAGS = {"-v": 1, "-vv": 2, "--verbose": 1}


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # its line in ``toxbridge --help``
    run: Callable[[list[str]], int]  # the arguments after the name -> exit status


def _setup_logging(verbose: int, node: bool = False) -> None:
    """A node says what it does (INFO) by default; a command only warns."""
    level = logging.WARNING - 10 * min(verbose + node, 2)
    # Under systemd stderr is the journal, which stamps each line itself.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level, format=stamp + "%(name)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(level)


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"toxbridge {name}", description=description)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    return p


# -- the commands -----------------------------------------------------------------------

def _chat(argv: list[str]) -> int:
    from bridge_local.chat import main as chat_main

    return chat_main(argv)


def _files(action: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from bridge_local.files import main as files_main

        return files_main([action, *argv])
    return run


def _status(argv: list[str]) -> int:
    from .status import main as status_main

    return status_main(argv)


def _peers(argv: list[str]) -> int:
    from .status import peers_main

    return peers_main(argv)


def _config(argv: list[str]) -> int:
    p = _parser("config", "The config file: toxbridge --config FILE reads it.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("example", help="print a commented example config file")
    check = sub.add_parser("check", help="read a config file as a node would; say what it means")
    check.add_argument("file", type=Path)
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    if args.action == "example":
        sys.stdout.write(EXAMPLE_CONFIG.read_text())
        return 0
    node_args = parse_node_args(["--config", str(args.file)])
    config = build_config(node_args)
    app = "none (raw)" if node_args.raw else f"{node_args.app_host}:{node_args.app_port or 'free'}"
    print(f"{args.file}: ok: {config.mode}"
          + (f" dialing {len(config.peers)}" if config.peers and config.mode == "listen" else "")
          + f", profile {config.profile}, "
          f"{len(config.bootstrap)} bootstrap nodes, {len(config.tcp_relays)} TCP relays, "
          f"bridge {config.bridge_host}:{config.bridge_port or 'free'}, app {app}"
          + "".join(f", -L {f}" for f in config.forwards)
          + (f", -W {config.stdio}" if config.stdio else "")
          + _exposed(config.rules))
    return 0


def _exposed(rules) -> str:
    everyone = ", ".join(str(d) for d in sorted(rules.everyone))
    per_peer = sum(1 for _ in rules.peers)
    if not everyone and not per_peer:
        return ", nothing exposed"
    return (f", exposed to every peer: {everyone or 'nothing'}"
            + (f", rules for {per_peer} peers" if per_peer else ""))


def _id(argv: list[str]) -> int:
    p = _parser("id", "Print the Tox ID of a profile.")
    p.add_argument("--profile", type=Path, help="the profile file (default: under the user data dir)")
    p.add_argument("--passphrase-env", metavar="VAR", help="the profile's passphrase is in this variable")
    p.add_argument("--passphrase-file", metavar="FILE", help="... or in this file (its first line)")
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    from ..config import default_profile
    from ..tox import Tox, ToxError, ToxOptions, load_profile

    path = args.profile or default_profile()
    passphrase = read_passphrase(args.passphrase_env, args.passphrase_file)
    try:
        savedata = load_profile(path, passphrase)
        if savedata is None:
            raise ConfigError(f"no profile at {path} (run toxbridge --listen once to create it)")
        with Tox(ToxOptions(udp=False, ipv6=False, local_discovery=False, savedata=savedata)) as tox:
            print(tox.address_hex)
    except ToxError as exc:
        message = user_message(exc, path, args.passphrase_env)
        if message is None:
            raise
        raise ConfigError(message) from exc
    return 0


def _bootstrap_node(argv: list[str]) -> int:
    p = _parser("bootstrap-node", "A DHT bootstrap node on 127.0.0.1, for a private Tox network.")
    p.add_argument("--port", type=port_arg, default=0, help="UDP port (default: a free one)")
    p.add_argument("--tcp-port", type=port_arg, default=0, help="TCP relay port (default: a free one)")
    p.add_argument("--python", action="store_true",
                   help="use a Python Tox instance instead of tox-bootstrapd (no TCP relay unless --tcp-port)")
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    from ..network import BootstrapDaemon, BootstrapNode

    node = (BootstrapNode(args.port, args.tcp_port) if args.python
            else BootstrapDaemon(args.port, args.tcp_port))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    try:
        print(node.info, flush=True)
        if node.info.tcp_port:
            print(f"TCP relay on port {node.info.tcp_port}", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        node.stop()
    return 0


def _demo(argv: list[str]) -> int:
    p = _parser("demo", "The demo on a private loopback Tox network.")
    p.add_argument("--mb", type=float, default=20, help="megabytes to stream each way, and the size of the file sent")
    args = p.parse_args(argv)
    _setup_logging(args.verbose)
    from ..testing.demo import run_demo

    return run_demo(mb=args.mb)


# One line per command: its name, its line in --help, and what runs it.
COMMANDS: tuple[Command, ...] = (
    Command("chat", "the terminal chat client for a node's app port", _chat),
    Command("send-file", "send a file to a user (resumable, with a progress bar)", _files("send")),
    Command("get-file", "fetch a file sent to you (resumable, md5-verified)", _files("get")),
    Command("status", "how a running node is: DHT, peer, link, round trip, rates, transfers", _status),
    Command("peers", "a running node's peers: peers list [--json] | add ID [--name N] | remove KEY|NAME", _peers),
    Command("config", "config example: a commented config file; config check FILE", _config),
    Command("id", "print the Tox ID of a profile", _id),
    Command("bootstrap-node", "run a private DHT bootstrap node on 127.0.0.1", _bootstrap_node),
    Command("demo", "the demo on a private loopback Tox network", _demo),
)


def help_text() -> str:
    width = max(len(c.name) for c in COMMANDS) + 2
    commands = "\n".join(f"  {c.name:<{width}}{c.summary}" for c in COMMANDS)
    return f"""\
usage: toxbridge (--listen | --peer ID | --config FILE) [options]
       toxbridge COMMAND [options]

Two programs on two machines talk and move files over an end-to-end-encrypted
peer-to-peer link on the Tox network, with no server of their own.

A node:
  toxbridge --listen --secret S     wait for peers; prints our Tox ID and local ports
  toxbridge --peer ID --secret S    connect to a listener
  toxbridge --config FILE           options from a TOML file (toxbridge config example)
  every node option: toxbridge --listen --help

Commands (each has --help):
{commands}

Bootstrap: without --bootstrap or --nodes a node uses the public nodes list bundled
with toxbridge (of {BUNDLED_DATE}). Public nodes come and go; a fresh list is at
{NODES_SOURCE}: save it and pass --nodes FILE.
"""


def _verbosity(argv: list[str]) -> int:
    return min(2, sum(VERBOSE_FLAGS.get(a, 0) for a in argv))


def _run_node(argv: list[str], context: dict) -> int:
    _setup_logging(_verbosity(argv), node=True)
    args = parse_node_args(argv)
    _setup_logging(args.verbose, node=True)  # the config file may say more
    context.update(passphrase_env=args.passphrase_env,
                   ports={"--bridge-port": args.bridge_port, "--app-port": args.app_port})
    config = build_config(args)
    context["profile"] = config.profile
    from ..control.server import control_path, node_data_dir

    config = dataclasses.replace(config, control_socket=control_path(
        node_data_dir(config.profile, args.data_dir)))
    app_config = None if args.raw else build_app_config(args, config)
    from ..node import run_node_process

    if config.stdio is not None:  # stdout is the forwarded connection
        run_node_process(config, app_config, announce=lambda line: print(line, file=sys.stderr))
    else:
        run_node_process(config, app_config)
    return 0


def _dispatch(argv: list[str], context: dict) -> int:
    lead = 0  # -v before a command name
    while lead < len(argv) and argv[lead] in VERBOSE_FLAGS:
        lead += 1
    rest = argv[lead:]
    if rest in (["-h"], ["--help"]):
        sys.stdout.write(help_text())
        return 0
    if rest and not rest[0].startswith("-"):
        commands = {c.name: c for c in COMMANDS}
        command = commands.get(rest[0])
        if command is None:
            close = difflib.get_close_matches(rest[0], list(commands), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown command {rest[0]!r} ({hint}see toxbridge --help)")
        return command.run(rest[1:] + argv[:lead])
    return _run_node(argv, context)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    context: dict = {}
    try:
        return _dispatch(argv, context)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # trio's exception groups are Exceptions too
        message = user_message(exc, context.get("profile"), context.get("passphrase_env"),
                               context.get("ports"))
        if message is None:
            raise  # a bug: its traceback
        if _verbosity(argv):
            traceback.print_exception(exc)
        print(f"toxbridge: {message}", file=sys.stderr)
        return USER_ERROR
