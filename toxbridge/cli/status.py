"""``toxbridge status`` and ``toxbridge peers``: ask a running node over its control socket.

    toxbridge status [--json] [--profile P | --data-dir D]
    toxbridge peers list [--json] [--profile P | --data-dir D]

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

# A node serves one peer in this version: its peer is chosen at start (--peer ID, or the first
# allowed friend request of --listen), so there is nothing to add or remove at run time yet.
ONE_PEER = ("this node has exactly one peer, chosen when it starts (--peer ID, or the first "
            "allowed request of --listen); restart it to change it")


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
        peers = _table("peers", ("peer", "link", "rtt", "sent", "out/s", "received", "in/s",
                                 "reconnects"))
        queues = _table("queues", ("peer", "app->peer", "peer->app", "in flight", "backlog",
                                   "unread"))
        for p in status["peers"]:
            q, key = p["queues"], p["public_key"][:12]
            link = p["link"] if p["online"] else "offline"
            peers.add_row(key, link, _ms(p["rtt_ms"]), _size(p["bytes_sent"]),
                          _size(p["rate_sent"]), _size(p["bytes_received"]),
                          _size(p["rate_received"]), str(p["reconnects"]))
            queues.add_row(key, f"{q['outbound_frames']}/{q['outbound_max']} frames",
                           f"{q['inbound_runs']}/{q['inbound_max']} runs",
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


def _forwards(status: dict[str, Any]) -> list:
    """Port forwarding: the -L listeners, what is exposed, the open connections."""
    out: list = []
    if status.get("forwards"):
        out.append("forwards: " + ", ".join(f"{f['listen']} -> {f['destination']}"
                                            for f in status["forwards"]))
    if "exposed" in status:
        per_peer = status.get("exposed_per_peer") or {}
        out.append("exposed to every peer: " + (", ".join(status["exposed"]) or "nothing")
                   + (f"; rules for {len(per_peer)} peers" if per_peer else ""))
    conns = status.get("forward_connections") or []
    if conns:
        table = _table("forwarded connections", ("side", "destination", "stream", "to peer",
                                                 "from peer", "age"))
        for c in conns:
            table.add_row(c["side"], c["destination"] or "-", str(c["stream"]),
                          _size(c["bytes_to_peer"]), _size(c["bytes_from_peer"]),
                          f"{c['age_s']:.0f}s")
        out.append(table)
    return out


def _ask(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The node's status reply; no node: one line, exit 2."""
    from ..config import default_profile
    from ..control.server import control_path, node_data_dir, request

    data_dir = node_data_dir(args.profile or default_profile(), args.data_dir)
    try:
        status = request(control_path(data_dir), "status", timeout=args.timeout)
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
    """``toxbridge peers list``: the peers part of the status; ``add``/``remove`` say why not."""
    if argv and argv[0] in ("add", "remove"):
        print(f"toxbridge peers {argv[0]}: {ONE_PEER}", file=sys.stderr)
        return 2
    parser = _parser("toxbridge peers list", "The peers of a running node: key, link, round "
                     "trip, traffic. (add and remove: " + ONE_PEER + ".)")
    args = parser.parse_args(argv[1:] if argv[:1] == ["list"] else argv)
    status = _ask(parser, args)
    return _show(status["peers"], render(status)[2:4] if status["peers"] else ["peers: none yet"],
                 args.json)
