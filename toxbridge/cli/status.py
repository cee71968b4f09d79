"""``toxbridge status`` and ``toxbridge peers``: ask a running node over its control socket.

    toxbridge status [--json] [--profile P | --data-dir D]
    toxbridge peers list [--json] [--profile P | --data-dir D]
    toxbridge peers add ID [--name NAME] [...];  toxbridge peers remove KEY|NAME [...]

The node is found by its data dir (``--data-dir``, else PROFILE_NAME.bridge next to the
profile, as when it was started). No node there: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ToxbridgeError

__all__ = ["main", "peers_main", "render"]


def _parser(prog: str = "toxbridge status",
            description: str = "How a running node is: its Tox ID, the DHT, each peer's link, "
            "round trip, traffic, queues and transfers.") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--json", action="store_true", help="the control socket's reply, as JSON")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--profile", type=Path, help="the node's profile (default: under the user data dir)")
    where.add_argument("--data-dir", type=Path, help="the node's data dir (default: PROFILE_NAME.bridge)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the node")
    return p


def _size(n: float) -> str:
    """Bytes, short: 512B, 1.5K, 20.0M (powers of 1024)."""
    for unit in ("B", "K", "M", "G"):
        if abs(n) < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    raise AssertionError


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}ms"


def _table(title: str, columns: tuple[str, ...]):
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
    for col in columns:
        table.add_column(col, no_wrap=True)
    return table


def render(status: dict[str, Any]) -> list:
    """The human view of a status reply: lines and rich tables, in order."""
    out: list = [f"Tox ID {status['tox_id']}",
                 f"mode {status['mode']}, DHT {status['dht']}, up {status['uptime_s']:.0f} s"]
    if not status["peers"]:
        out.append("peers: none yet")
    else:
        peers = _table("peers", ("peer", "link", "transport", "streams", "rtt", "sent", "out/s",
                                 "received", "in/s", "reconnects"))
        queues = _table("queues", ("peer", "app->peer", "peer->app", "in flight", "backlog",
                                   "unread"))
        for p in status["peers"]:
            q, key = p["queues"], p.get("name") or p["public_key"][:12]
            link = p["link"] if p["online"] else "offline"
            transport = "on" if p.get("transport", {}).get("active") else "off"
            peers.add_row(key, link, transport, str(p.get("streams", 0)), _ms(p["rtt_ms"]),
                          _size(p["bytes_sent"]),
                          _size(p["rate_sent"]), _size(p["bytes_received"]),
                          _size(p["rate_received"]), str(p["reconnects"]))
            channel = "outbound_frames" in q  # the v1 channel's queues: the first peer's
            queues.add_row(key, f"{q['outbound_frames']}/{q['outbound_max']} frames" if channel else "-",
                           f"{q['inbound_runs']}/{q['inbound_max']} runs" if channel else "-",
                           _size(q["link_in_flight_bytes"]), _size(q["link_backlog_bytes"]),
                           _size(q["link_received_bytes"]))
        out += [peers, queues]
    if "transfers" in status:
        if not status["transfers"]:
            out.append("transfers in flight: none")
        else:
            transfers = _table("transfers in flight", ("hop", "file", "done", "size", "state"))
            for t in status["transfers"]:
                done = f"{100 * t['done_bytes'] / t['filesize']:.0f}%" if t["filesize"] else "-"
                state = t["state"] + (" (paused)" if t["paused"] else "")
                transfers.add_row(t["hop"], t["filename"] or str(t["fileid"]), done,
                                  _size(t["filesize"]), state)
            out.append(transfers)
    out += _forwards(status)
    return out


def _peer(entry: dict[str, Any]) -> str:
    """A forward's or connection's peer: its name, else the start of its key."""
    return entry.get("peer_name") or (entry.get("peer") or "-")[:12]


def _forwards(status: dict[str, Any]) -> list:
    """Port forwarding: the -L / -W forwards and their peers, what is exposed, the open
    connections (each with its peer and bytes each way)."""
    out: list = []
    if status.get("forwards"):
        table = _table("forwards", ("listen", "destination", "peer", "connections", "to peer",
                                    "from peer"))
        for f in status["forwards"]:
            peer = _peer(f) if f.get("peer") else f"{f.get('via', '-')} (none yet)"
            table.add_row(f["listen"], f["destination"], peer, str(f.get("connections", 0)),
                          _size(f.get("bytes_to_peer", 0)), _size(f.get("bytes_from_peer", 0)))
        out.append(table)
    if "exposed" in status:
        per_peer = status.get("exposed_per_peer") or {}
        out.append("exposed to every peer: " + (", ".join(status["exposed"]) or "nothing")
                   + (f"; rules for {len(per_peer)} peers" if per_peer else ""))
    conns = status.get("forward_connections") or []
    if conns:
        table = _table("forwarded connections", ("side", "peer", "destination", "stream",
                                                 "to peer", "from peer", "age"))
        for c in conns:
            table.add_row(c["side"], _peer(c), c["destination"] or "-", str(c["stream"]),
                          _size(c["bytes_to_peer"]), _size(c["bytes_from_peer"]),
                          f"{c['age_s']:.0f}s")
        out.append(table)
    return out


def _ask(parser: argparse.ArgumentParser, args: argparse.Namespace, cmd: str = "status",
         **request_args: Any) -> dict[str, Any]:
    """The node's reply; no node, or its refusal: one line, exit 2."""
    from ..config import default_profile
    from ..control.server import control_path, node_data_dir, request

    data_dir = node_data_dir(args.profile or default_profile(), args.data_dir)
    try:
        status = request(control_path(data_dir), cmd, timeout=args.timeout, **request_args)
    except ToxbridgeError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    for key in ("v", "ok"):
        status.pop(key, None)
    return status


def _show(obj: Any, parts: list, as_json: bool) -> int:
    if as_json:
        json.dump(obj, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console

    console = Console(highlight=False)
    for part in parts:
        console.print(part, soft_wrap=isinstance(part, str))
    return 0


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    status = _ask(parser, args)
    return _show(status, render(status), args.json)


def peers_main(argv: list[str]) -> int:
    """``toxbridge peers list|add|remove``."""
    sub = argv[0] if argv and argv[0] in ("list", "add", "remove") else "list"
    rest = argv[1:] if argv[:1] == [sub] else argv
    if sub == "add":
        parser = _parser("toxbridge peers add", "Dial a peer now (its friend request carries the "
                         "node's --secret); it lasts while the node runs, and across restarts "
                         "of a --listen node.")
        parser.add_argument("id", metavar="ID", help="the peer's Tox ID (76 hex digits)")
        parser.add_argument("--name", help="a short name for it")
        args = parser.parse_args(rest)
        extra = {"tox_id": args.id} | ({"name": args.name} if args.name else {})
        reply = _ask(parser, args, "peers.add", **extra)
        return _show(reply, [f"dialing {reply['peer']}" + (f" ({reply['name']})" if reply.get("name") else "")],
                     args.json)
    if sub == "remove":
        parser = _parser("toxbridge peers remove", "Remove a peer: delete the friend; its "
                         "streams reset (code 10, peer removed).")
        parser.add_argument("peer", metavar="KEY|NAME", help="its public key or name")
        args = parser.parse_args(rest)
        reply = _ask(parser, args, "peers.remove", peer=args.peer)
        return _show(reply, [f"removed {reply['peer']} ({reply['streams_reset']} streams reset)"],
                     args.json)
    parser = _parser("toxbridge peers list", "The peers of a running node: key, name, link, "
                     "transport, streams, round trip, traffic; the forwards and forwarded "
                     "connections with each.")
    args = parser.parse_args(rest)
    status = _ask(parser, args)
    parts = render(status)[2:4] if status["peers"] else ["peers: none yet"]
    parts += [p for p in _forwards(status) if not isinstance(p, str)]  # the tables
    return _show(status["peers"], parts, args.json)
