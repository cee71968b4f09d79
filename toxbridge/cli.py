"""The ``toxbridge`` command line.

    toxbridge --listen [--secret S | --allow KEY]   wait for a peer; prints our Tox ID
    toxbridge --peer ID [--secret S]                connect to a listener
    toxbridge id [--profile P]                      print the profile's Tox ID
    toxbridge status [--json] [--profile P | --data-dir D]   how a running node is
    toxbridge bootstrap-node                        a DHT bootstrap node on 127.0.0.1
    toxbridge demo                                  the demo on a private loopback network
    toxbridge chat --name NAME --app-port N         the terminal chat client
    toxbridge send-file --app-port N --name ME --to NAME PATH     send a file (resumable)
    toxbridge get-file --app-port N --name ME [--dest DIR] FILEID  fetch a file (resumable)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .access import access_options, add_access_arguments, warn_if_open
from .errors import ConfigError, ToxbridgeError

log = logging.getLogger("toxbridge")

BUNDLED_NODES = Path(__file__).parent / "data" / "nodes.json"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _bootstrap_node(args: argparse.Namespace) -> int:
    from .network import BootstrapDaemon, BootstrapNode

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


def _demo(args: argparse.Namespace) -> int:
    from .testing.demo import run_demo

    return run_demo(mb=args.mb)


SUBCOMMANDS = ("bootstrap-node", "demo", "id", "chat", "send-file", "get-file", "status")


def default_profile() -> Path:
    from .config import default_profile  # lazily: it loads libtoxcore, --help must not

    return default_profile()


def _read_nodes(path: str) -> list:
    """Nodes from a ``nodes.json`` as Tox clients share it (``{"nodes": [{"ipv4", "port",
    "public_key", "tcp_ports"}, ...]}``)."""
    from .network import NodeInfo

    try:
        data = json.loads(Path(path).read_text())
        nodes = []
        for n in data["nodes"]:
            host = n.get("ipv4") if n.get("ipv4") not in (None, "", "-") else n.get("ipv6")
            if not host:
                continue
            info = NodeInfo.parse(f"{host}:{n['port']}:{n['public_key']}")
            tcp = [p for p in n.get("tcp_ports") or [] if isinstance(p, int)]
            nodes.append(NodeInfo(info.host, info.port, info.public_key, tcp[0] if tcp else None))
        return nodes
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the nodes file {path}: {exc}") from None


def node_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toxbridge", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen", action="store_true", help="wait for a peer; print our Tox ID")
    mode.add_argument("--peer", metavar="ID", help="the listener's Tox ID (76 hex digits)")
    p.add_argument("--secret", help="shared secret carried in the friend request "
                   "(or the TOXBRIDGE_SECRET environment variable)")
    p.add_argument("--allow", action="append", default=[], metavar="KEY",
                   help="a public key allowed to connect to a listener (repeatable)")
    p.add_argument("--allow-file", metavar="FILE", help="allowed public keys, one per line")
    p.add_argument("--accept-anyone", action="store_true",
                   help="DANGEROUS: a listener accepts any friend request")
    p.add_argument("--profile", type=Path, help="the profile file (default: under the user data dir)")
    p.add_argument("--passphrase-env", metavar="VAR",
                   help="encrypt the profile with the passphrase in this environment variable")
    p.add_argument("--passphrase-file", metavar="FILE",
                   help="... or in this file (its first line), e.g. a systemd credential")
    p.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT:KEY",
                   help="a DHT node to bootstrap from (repeatable)")
    p.add_argument("--nodes", metavar="FILE", help="bootstrap nodes from a nodes.json file")
    p.add_argument("--tcp-relay", action="append", default=[], metavar="HOST:PORT:KEY",
                   help="a TCP relay (repeatable)")
    p.add_argument("--no-udp", action="store_true", help="TCP relays only")
    p.add_argument("--ipv6", action="store_true", help="enable IPv6 (off by default)")
    p.add_argument("--lan-discovery", action="store_true",
                   help="enable LAN discovery (off by default: it broadcasts on your networks)")
    p.add_argument("--bridge-port", type=int, default=0, help="local port for the app (default: free)")
    p.add_argument("--bridge-host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--public-bind", action="store_true",
                   help="allow --bridge-host other than loopback (anyone who reaches it can use the link)")
    p.add_argument("--id-file", type=Path, help="also write our Tox ID to this file")
    p.add_argument("--raw", action="store_true",
                   help="serve only the framed channel on the bridge port (no JSON app server)")
    p.add_argument("--app-port", type=int, default=0, help="the JSON app server's port (default: free)")
    p.add_argument("--app-host", default="127.0.0.1",
                   help="address the app server binds (default 127.0.0.1; others need --public-bind)")
    add_access_arguments(p)
    p.add_argument("--data-dir", type=Path,
                   help="the node's data: its control socket; bridge_local's history, queued "
                        "messages, files (default: PROFILE_NAME.bridge next to the profile)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    return p


def build_config(args: argparse.Namespace):
    from .config import Config
    from .network import NodeInfo
    from .tox import ADDRESS_SIZE, PUBLIC_KEY_SIZE, parse_key

    try:
        peer_id = parse_key(args.peer, ADDRESS_SIZE, "--peer Tox ID") if args.peer else None
        allow = [parse_key(k, PUBLIC_KEY_SIZE, "--allow key") for k in args.allow]
        if args.allow_file:
            lines = Path(args.allow_file).read_text().split()
            allow += [parse_key(k, PUBLIC_KEY_SIZE, "allowed key") for k in lines]
    except (ValueError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    secret = args.secret if args.secret is not None else os.environ.get("TOXBRIDGE_SECRET")
    if args.listen and not (secret or allow or args.accept_anyone):
        raise ConfigError("a listener needs --secret, --allow or --allow-file "
                          "(or --accept-anyone, which lets anyone in)")
    if args.accept_anyone:
        log.warning("--accept-anyone: ANY Tox user who knows our ID can use this bridge")
    warn_if_open(args)
    if args.raw and (args.app_socket or args.app_token_file):
        raise ConfigError("--app-socket and --app-token-file are for the app server: drop --raw")
    host = args.bridge_host
    if host not in LOOPBACK_HOSTS and not args.public_bind:
        raise ConfigError(f"--bridge-host {host} is not loopback; add --public-bind if you mean it")
    if args.public_bind and host not in LOOPBACK_HOSTS:
        log.warning("the bridge port is bound to %s: anyone who reaches it can use the link", host)
    bootstrap = [NodeInfo.parse(b) for b in args.bootstrap]
    if args.nodes:
        bootstrap += _read_nodes(args.nodes)
    if not bootstrap:
        # Real users only: tests, benchmarks and the demo always pass their private node.
        bootstrap = _read_nodes(str(BUNDLED_NODES))
        log.warning("bootstrapping from the bundled public nodes list (%d nodes, scanned 2020-03); "
                    "for a fresh one: --nodes FILE from https://nodes.tox.chat/json", len(bootstrap))
    passphrase = read_passphrase(args.passphrase_env, args.passphrase_file)
    return Config(
        mode="listen" if args.listen else "peer",
        profile=args.profile or default_profile(),
        peer_id=peer_id,
        secret=secret.encode() if secret else None,
        allow=frozenset(allow),
        accept_anyone=args.accept_anyone,
        passphrase=passphrase,
        bootstrap=tuple(bootstrap),
        tcp_relays=tuple(NodeInfo.parse(r) for r in args.tcp_relay),
        udp=not args.no_udp,
        ipv6=args.ipv6,
        lan_discovery=args.lan_discovery,
        bridge_host=host,
        bridge_port=args.bridge_port,
        id_file=args.id_file,
        app_open=args.app_open,
    )


def read_passphrase(env: str | None, file: str | None) -> str | None:
    """The profile's passphrase from ``--passphrase-env`` or ``--passphrase-file`` (its
    first line; a systemd credential is such a file), or None."""
    if env and file:
        raise ConfigError("give --passphrase-env or --passphrase-file, not both")
    if env:
        passphrase = os.environ.get(env)
        if not passphrase:
            raise ConfigError(f"the environment variable {env} is empty or unset")
        return passphrase
    if file:
        try:
            lines = Path(file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the passphrase file {file}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        if not lines or not lines[0]:
            raise ConfigError(f"the passphrase file {file} is empty")
        return lines[0]
    return None


def _id(args: argparse.Namespace) -> int:
    from .tox import Tox, ToxOptions, load_profile

    path = args.profile or default_profile()
    passphrase = read_passphrase(args.passphrase_env, args.passphrase_file)
    savedata = load_profile(path, passphrase)
    if savedata is None:
        raise ConfigError(f"no profile at {path} (run toxbridge --listen once to create it)")
    with Tox(ToxOptions(udp=False, ipv6=False, local_discovery=False, savedata=savedata)) as tox:
        print(tox.address_hex)
    return 0


def _setup_logging(verbose: int) -> None:
    # Under systemd stderr is the journal, which stamps each line itself.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose + 1, 2),
        format=stamp + "%(name)s %(levelname)s %(message)s",
    )


def run_node(argv: list[str]) -> int:
    parser = node_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from .controlsock import control_path, node_data_dir

    try:
        config = build_config(args)
        config = dataclasses.replace(config, control_socket=control_path(
            node_data_dir(config.profile, args.data_dir)))
        app_config = None if args.raw else build_app_config(args, config)
        from .node import run_node_process

        run_node_process(config, app_config)
    except ConfigError as exc:
        parser.exit(2, f"toxbridge: {exc}\n")
    return 0


def build_app_config(args: argparse.Namespace, config):
    """bridge_local's configuration for a node that runs it in-process."""
    from bridge_local.server import BridgeConfig

    from .controlsock import node_data_dir

    if args.app_host not in LOOPBACK_HOSTS and not args.public_bind:
        raise ConfigError(f"--app-host {args.app_host} is not loopback; add --public-bind if you mean it")
    data_dir = node_data_dir(config.profile, args.data_dir)
    return BridgeConfig(app_host=args.app_host, app_port=args.app_port, data_dir=data_dir,
                        **access_options(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toxbridge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Node options (secret, allow-list, profile, bootstrap, ports): toxbridge --listen --help")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bootstrap-node", help="run a private DHT bootstrap node on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="UDP port (default: a free one)")
    p.add_argument("--tcp-port", type=int, default=0, help="TCP relay port (default: a free one)")
    p.add_argument("--python", action="store_true",
                   help="use a Python Tox instance instead of tox-bootstrapd (no TCP relay unless --tcp-port)")
    p.set_defaults(func=_bootstrap_node)

    p = sub.add_parser("id", help="print the Tox ID of a profile")
    p.add_argument("--profile", type=Path, help="the profile file (default: under the user data dir)")
    p.add_argument("--passphrase-env", metavar="VAR", help="the profile's passphrase is in this variable")
    p.add_argument("--passphrase-file", metavar="FILE", help="... or in this file (its first line)")
    p.set_defaults(func=_id)

    p = sub.add_parser("demo", help="run the demo on a private loopback Tox network")
    p.add_argument("--mb", type=float, default=20, help="megabytes to stream each way, and the size of the file sent")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chat"]:  # the clients have their own options
        from bridge_local.chat import main as chat_main

        return chat_main(argv[1:])
    if argv[:1] == ["status"]:
        from .statuscli import main as status_main

        return status_main(argv[1:])
    if argv[:1] in (["send-file"], ["get-file"]):
        from bridge_local.files import main as files_main

        return files_main([argv[0].split("-")[0], *argv[1:]])
    try:
        if not any(a in SUBCOMMANDS for a in argv[:2]) and any(
                a == "--listen" or a.startswith("--peer") for a in argv):
            return run_node(argv)
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING - 10 * min(args.verbose, 2),
            format="%(asctime)s %(name)s %(levelname)s %(message)s",
        )
        return args.func(args)
    except ToxbridgeError as exc:
        print(f"toxbridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
