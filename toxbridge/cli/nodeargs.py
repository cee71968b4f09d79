"""A node's options: the flags, the config file under them, and the ``Config`` they make.

    argv --> node_parser() --+--> Namespace --> build_config() --> Config (+ BridgeConfig)
    --config FILE --> configfile (keys = the same flags) --+   flags win over the file

Values are checked where they are parsed (a node, a key, a port), so a bad one is a one-line
error naming the flag, or the file and its key.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
from pathlib import Path

from ..access import access_options, add_access_arguments, warn_if_open
from .configfile import Option, load_config, parse_config
from ..errors import ConfigError
from ..usage import OneLineParser, port_arg

__all__ = ["node_parser", "parse_node_args", "option_table", "build_config", "build_app_config",
           "read_nodes", "read_passphrase", "read_rules", "BUNDLED_NODES", "BUNDLED_DATE", "NODES_SOURCE"]

log = logging.getLogger("toxbridge")

BUNDLED_NODES = Path(__file__).parent.parent / "data" / "nodes.json"
BUNDLED_DATE = "2025-02-13"  # the "date" of BUNDLED_NODES
NODES_SOURCE = "https://nodes.tox.chat/json"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MODE_DESTS = ("listen", "peer")


# -- converters: each raises ArgumentTypeError with the reason (argparse shows it) -------

def _checked(parse):
    def convert(text):
        try:
            return parse(text)
        except (ValueError, ConfigError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


@_checked
def node_arg(text: str):
    from ..network import NodeInfo

    return NodeInfo.parse(text)


@_checked
def public_key_arg(text: str) -> bytes:
    from ..tox import PUBLIC_KEY_SIZE, parse_key

    return parse_key(text, PUBLIC_KEY_SIZE, "public key")


@_checked
def forward_arg(text: str):
    from ..forward import parse_local_forward

    return parse_local_forward(text)


@_checked
def destination_arg(text: str):
    from ..forward import parse_destination

    return parse_destination(text)


@_checked
def stdio_arg(text: str):
    from ..forward import parse_stdio_forward

    return parse_stdio_forward(text)


@_checked
def hold_open_arg(text) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = text  # from the config file
    elif isinstance(text, str) and text.isdigit():
        seconds = int(text)
    else:
        raise ValueError(f"{text!r} is not a whole number of seconds")
    if not 1 <= seconds <= 86400:
        raise ValueError(f"{seconds} is outside 1..86400 seconds")
    return seconds


@_checked
def tox_id_arg(text: str) -> bytes:
    from ..tox import parse_address

    return parse_address(text)


def _name(name: str) -> str:
    from ..config import NAME_RULE, valid_name

    if not valid_name(name):
        raise ValueError(f"the name {name!r} is not {NAME_RULE}")
    return name


@_checked
def peer_arg(text: str) -> tuple[bytes, str | None]:
    """``ID`` or ``ID=NAME``."""
    from ..tox import parse_address

    tox_id, sep, name = text.partition("=")
    return parse_address(tox_id), _name(name) if sep else None


@_checked
def peer_name_arg(text: str) -> tuple[bytes, str]:
    """``KEY=NAME`` (a public key, or a Tox ID)."""
    from ..tox import PUBLIC_KEY_SIZE, parse_key

    key, sep, name = text.partition("=")
    if not sep:
        raise ValueError(f"{text!r} is not KEY=NAME")
    size = PUBLIC_KEY_SIZE if len(key.strip()) <= 2 * PUBLIC_KEY_SIZE else PUBLIC_KEY_SIZE + 6
    return parse_key(key, size, "public key")[:PUBLIC_KEY_SIZE], _name(name)


@_checked
def max_peers_arg(text) -> int:
    value = text if isinstance(text, int) and not isinstance(text, bool) else None
    if value is None and isinstance(text, str) and text.isdigit():
        value = int(text)
    if value is None or not 1 <= value <= 1024:
        raise ValueError(f"{text!r} is not a whole number in 1..1024")
    return value


def read_passphrase(env: str | None, file: str | os.PathLike | None) -> str | None:
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


def read_nodes(path: str | os.PathLike) -> list:
    """Nodes from a ``nodes.json`` as Tox clients share it (``{"nodes": [{"ipv4", "ipv6",
    "port", "public_key", "tcp_ports"}, ...]}``), as from https://nodes.tox.chat/json."""
    from ..network import NodeInfo

    try:
        data = json.loads(Path(path).read_text())
        nodes = []
        for n in data["nodes"]:
            host = n.get("ipv4") if n.get("ipv4") not in (None, "", "-") else n.get("ipv6")
            if not host or host == "-":
                continue
            info = NodeInfo.parse(f"{host}:{n['port']}:{n['public_key']}")
            tcp = [p for p in n.get("tcp_ports") or [] if isinstance(p, int)]
            nodes.append(NodeInfo(info.host, info.port, info.public_key, tcp[0] if tcp else None))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError) as exc:
        raise ConfigError(f"cannot read the nodes file {path}: {exc}") from None
    if not nodes:
        raise ConfigError(f"the nodes file {path} lists no node")
    return nodes


def node_parser() -> argparse.ArgumentParser:
    """The node's flags. Each long flag is also a config-file key (see ``option_table``)."""
    p = OneLineParser(prog="toxbridge", usage="toxbridge (--listen | --peer ID ... | --config FILE) [options]",
                      description="Run a toxbridge node.",
                      epilog=f"Without --bootstrap/--nodes a node uses the bundled public nodes list "
                             f"(of {BUNDLED_DATE}); a fresher one: {NODES_SOURCE}, saved and given "
                             f"with --nodes FILE. Commands: toxbridge --help.")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="read options from this TOML file (toxbridge config example); flags win")
    p.add_argument("--listen", action="store_true", help="accept allowed peers; print our Tox ID")
    p.add_argument("--peer", action="append", default=[], metavar="ID[=NAME]", type=peer_arg,
                   help="dial this Tox ID (76 hex digits; repeatable; the first is the v1 "
                        "channel's peer), with an optional short name")
    p.add_argument("--peer-name", action="append", default=[], metavar="KEY=NAME",
                   type=peer_name_arg, help="a short name for a peer's public key (repeatable)")
    p.add_argument("--max-peers", type=max_peers_arg, default=32, metavar="N",
                   help="accept no more peers than this (default 32; dialed ones count)")
    p.add_argument("--secret", help="shared secret carried in the friend request "
                   "(or the TOXBRIDGE_SECRET environment variable)")
    p.add_argument("--allow", action="append", default=[], metavar="KEY", type=public_key_arg,
                   help="a public key allowed to connect to a listener (repeatable)")
    p.add_argument("--allow-file", metavar="FILE", type=Path, help="allowed public keys, one per line")
    p.add_argument("--accept-anyone", action="store_true",
                   help="DANGEROUS: a listener accepts any friend request")
    p.add_argument("--profile", type=Path, help="the profile file (default: under the user data dir)")
    p.add_argument("--passphrase-env", metavar="VAR",
                   help="encrypt the profile with the passphrase in this environment variable")
    p.add_argument("--passphrase-file", metavar="FILE", type=Path,
                   help="... or in this file (its first line), e.g. a systemd credential")
    p.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT:KEY", type=node_arg,
                   help="a DHT node to bootstrap from (repeatable)")
    p.add_argument("--nodes", metavar="FILE", type=Path,
                   help=f"bootstrap nodes from a nodes.json file (as {NODES_SOURCE} serves it)")
    p.add_argument("--tcp-relay", action="append", default=[], metavar="HOST:PORT:KEY", type=node_arg,
                   help="a TCP relay (repeatable)")
    p.add_argument("--no-udp", action="store_true", help="TCP relays only")
    p.add_argument("--lossless-only", action="store_true",
                   help="never carry the channel over our transport on lossy packets")
    p.add_argument("--trace-path", metavar="FILE", type=Path,
                   help="debug: write the transport's state to FILE as JSON lines, 10 a second")
    p.add_argument("--ipv6", action="store_true", help="enable IPv6 (off by default)")
    p.add_argument("--lan-discovery", action="store_true",
                   help="enable LAN discovery (off by default: it broadcasts on your networks)")
    p.add_argument("--bridge-port", type=port_arg, default=0, help="local port for the app (default: free)")
    p.add_argument("--bridge-host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--public-bind", action="store_true",
                   help="allow --bridge-host other than loopback (anyone who reaches it can use the link)")
    p.add_argument("--id-file", type=Path, help="also write our Tox ID to this file")
    p.add_argument("--raw", action="store_true",
                   help="serve only the framed channel on the bridge port (no JSON app server)")
    p.add_argument("--app-port", type=port_arg, default=0, help="the JSON app server's port (default: free)")
    p.add_argument("--app-host", default="127.0.0.1",
                   help="address the app server binds (default 127.0.0.1; others need --public-bind)")
    add_access_arguments(p)
    p.add_argument("-L", "--forward", action="append", default=[],
                   metavar="[BIND:]LPORT:HOST:PORT[@PEER]", type=forward_arg,
                   help="connections to LPORT here reach HOST:PORT at PEER (its name or key; "
                        "default --via); repeatable; BIND default 127.0.0.1; LPORT 0: a free "
                        "port, announced")
    p.add_argument("-W", "--stdio", metavar="HOST:PORT[@PEER]", type=stdio_arg,
                   help="stdin/stdout as one connection to HOST:PORT at PEER (default --via), "
                        "then exit (ssh ProxyCommand); our own lines go to stderr")
    p.add_argument("--expose", action="append", default=[], metavar="HOST:PORT", type=destination_arg,
                   help="peers may reach HOST:PORT through this node (repeatable; nothing by default)")
    p.add_argument("--expose-file", metavar="FILE", type=Path,
                   help="forwarding rules: destinations for every peer and per peer (docs/forwarding.md)")
    p.add_argument("--via", metavar="PEER",
                   help="the peer a -L / -W without @PEER reaches: its public key or name "
                        "(default: the first peer; a node that dials several must say)")
    p.add_argument("--hold-open", metavar="SECONDS", type=hold_open_arg, default=120,
                   help="forwarded connections stay open this long while the Tox link is down "
                        "(default 120)")
    p.add_argument("--data-dir", type=Path,
                   help="the node's data: its control socket; bridge_local's history, queued "
                        "messages, files (default: PROFILE_NAME.bridge next to the profile)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    return p


def option_table(parser: argparse.ArgumentParser) -> dict[str, Option]:
    """Config-file keys from the parser's flags: ``--bridge-port`` is ``bridge-port``.
    A new flag is a new key with nothing to add here."""
    table = {}
    for action in parser._actions:  # argparse has no public list of its actions
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest in ("help", "config"):
            continue
        if isinstance(action, argparse._CountAction):
            kind, convert = "int", None
        elif action.nargs == 0:
            kind, convert = "bool", None
        elif isinstance(action, argparse._AppendAction):
            kind, convert = "list", action.type
        elif action.type is int or isinstance(action.default, int):
            kind, convert = "int", action.type
        else:
            kind, convert = "str", action.type
        table[longs[0][2:]] = Option(action.dest, kind, convert)
    return table


def parse_node_args(argv: list[str]) -> argparse.Namespace:
    """Flags, over the ``--config`` file if one is given. Bad flags exit 2 (argparse);
    a bad file raises ConfigError."""
    parser = node_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        path = args.config
        try:
            text = path.read_text()
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the config file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        data = parse_config(text, str(path))
        values = load_config(data, option_table(parser), str(path), path.parent.absolute())
        if "secret" in values and mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("the config file %s holds the secret and others may read it: chmod 600 %s",
                        path, path)
        twin = node_parser()  # the same flags without defaults: which ones did argv give?
        for action in twin._actions:  # (set_defaults would store SUPPRESS as a value)
            action.default = argparse.SUPPRESS
        given = set(vars(twin.parse_args(argv)))
        if given & set(MODE_DESTS):  # --listen/--peer on the command line replaces the file's mode
            given |= set(MODE_DESTS)
        for dest, value in values.items():
            if dest not in given:
                setattr(args, dest, value)
    if not (args.listen or args.peer):
        where = " (or listen = true / peer = \"ID\" in the config file)" if args.config else ""
        raise ConfigError(f"say --listen or --peer ID{where} (toxbridge --help)")
    return args


def build_config(args: argparse.Namespace):
    from ..config import Config, default_profile  # lazily: it loads libtoxcore, --help must not
    from ..tox import PUBLIC_KEY_SIZE, parse_key

    allow = list(args.allow)
    if args.allow_file:
        try:
            lines = Path(args.allow_file).read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the allow file {args.allow_file}: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            key = line.split("#", 1)[0].strip()  # a comment may name the peer
            if key:
                try:
                    allow.append(parse_key(key, PUBLIC_KEY_SIZE, "public key"))
                except ValueError as exc:
                    raise ConfigError(f"{args.allow_file} line {number}: {exc}") from None
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
    bootstrap = list(args.bootstrap)
    if args.nodes:
        bootstrap += read_nodes(args.nodes)
    if not bootstrap:
        # Real users only: tests, benchmarks and the demo always pass their private node.
        bootstrap = read_nodes(BUNDLED_NODES)
        log.warning("bootstrapping from the bundled public nodes list (%d nodes, of %s); "
                    "for a fresher one: --nodes FILE from %s", len(bootstrap), BUNDLED_DATE, NODES_SOURCE)
    passphrase = read_passphrase(args.passphrase_env, args.passphrase_file)
    rules = read_rules(args.expose, args.expose_file)
    peers, names = _peers(args)
    return Config(
        mode="listen" if args.listen else "peer",
        profile=args.profile or default_profile(),
        peers=peers,
        names=names,
        max_peers=args.max_peers,
        via=args.via,
        secret=secret.encode() if secret else None,
        allow=frozenset(allow),
        accept_anyone=args.accept_anyone,
        passphrase=passphrase,
        bootstrap=tuple(bootstrap),
        tcp_relays=tuple(args.tcp_relay),
        udp=not args.no_udp,
        transport=not args.lossless_only,
        trace_path=args.trace_path,
        ipv6=args.ipv6,
        lan_discovery=args.lan_discovery,
        bridge_host=host,
        bridge_port=args.bridge_port,
        id_file=args.id_file,
        app_open=args.app_open,
        forwards=tuple(args.forward),
        stdio=args.stdio,
        rules=rules,
        hold_open=args.hold_open,
    )


def _peers(args: argparse.Namespace) -> tuple[tuple[bytes, ...], tuple[tuple[bytes, str], ...]]:
    """The Tox IDs to dial (each once, in order) and the peers' names (each unique)."""
    peers: list[bytes] = []
    names: dict[bytes, str] = {}
    for tox_id, name in args.peer:
        if any(p[:32] == tox_id[:32] for p in peers):
            raise ConfigError(f"--peer {tox_id.hex().upper()} is given twice")
        peers.append(tox_id)
        if name:
            names[tox_id[:32]] = name
    for key, name in args.peer_name:
        names[key] = name
    seen: dict[str, bytes] = {}
    for key, name in names.items():
        if seen.setdefault(name, key) != key:
            raise ConfigError(f"the peer name {name!r} is given to two peers")
    if len(peers) > args.max_peers:
        raise ConfigError(f"{len(peers)} --peer flags, but --max-peers is {args.max_peers}")
    _check_forward_peers(args, peers, names)
    return tuple(peers), tuple(names.items())


def _check_forward_peers(args: argparse.Namespace, peers: list[bytes],
                         names: dict[bytes, str]) -> None:
    """Each forward's peer (``@PEER``, else ``--via``) names a peer this node may have.
    A name must be configured; a key must be a dialed or named peer's, unless the node
    listens (any allowed peer may come). A node that dials several peers and is told
    no peer for a forward is refused: the first of them would be a guess."""
    from ..tox import PUBLIC_KEY_SIZE, parse_key

    known = {p[:PUBLIC_KEY_SIZE] for p in peers} | set(names)

    def check(what: str, selector: str) -> None:
        if selector == "peer" or selector in names.values():
            return
        try:
            key = parse_key(selector, PUBLIC_KEY_SIZE, "public key")
        except ValueError:
            raise ConfigError(f"{what}: {selector!r} is neither a public key (64 hex digits) "
                              f"nor a peer's name (--peer ID=NAME, --peer-name KEY=NAME)") from None
        if not args.listen and key not in known:
            raise ConfigError(f"{what}: {selector[:16]}... is not a peer of this node "
                              f"(its --peer IDs, --peer-name keys)")

    if args.via is not None:
        check(f"--via {args.via}", args.via)
    forwards = [("-L", f) for f in args.forward] + ([("-W", args.stdio)] if args.stdio else [])
    for flag, fwd in forwards:
        if fwd.via is not None:
            check(f"{flag} {fwd}", fwd.via)
        elif args.via is None and len(peers) > 1:
            raise ConfigError(f"{flag} {fwd}: this node dials {len(peers)} peers; say which "
                              f"one it reaches ({flag} {fwd}@NAME, or --via PEER)")


def read_rules(expose: list, path: Path | None):
    """``--expose`` and the ``--expose-file`` rules together."""
    from ..forward import Rules, parse_rules

    rules = Rules(frozenset(expose))
    if path is not None:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the rules file {path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
        rules = rules.merged(parse_rules(text, str(path)))
    return rules


def build_app_config(args: argparse.Namespace, config):
    """bridge_local's configuration for a node that runs it in-process."""
    from bridge_local.server import BridgeConfig

    from ..control.server import node_data_dir

    if args.app_host not in LOOPBACK_HOSTS and not args.public_bind:
        raise ConfigError(f"--app-host {args.app_host} is not loopback; add --public-bind if you mean it")
    data_dir = node_data_dir(config.profile, args.data_dir)
    return BridgeConfig(app_host=args.app_host, app_port=args.app_port, data_dir=data_dir,
                        **access_options(args))
