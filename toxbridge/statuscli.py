"""``toxbridge status``: ask a running node over its control socket how it is.

    toxbridge status [--json] [--profile P | --data-dir D]

The node is found by its data dir (``--data-dir``, else PROFILE_NAME.bridge next to the
profile, as when it was started). No node there: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import ToxbridgeError

__all__ = ["main", "render"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="toxbridge status",
                                description="How a running node is: its Tox ID, the DHT, "
                                "each peer's link, round trip, traffic, queues and transfers.")
    p.add_argument("--json", action="store_true", help="the control socket's reply, as JSON")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--profile", type=Path, help="the node's profile (default: under the user data dir)")
    where.add_argument("--data-dir", type=Path, help="the node's data dir (default: PROFILE_NAME.bridge)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the node")
    return p


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def render(status: dict[str, Any]):
    """The human view of a status reply: rich renderables, in order."""
    from rich.table import Table

    node = Table.grid(padding=(0, 2))
    node.add_row("Tox ID", status["tox_id"])
    node.add_row("mode", status["mode"])
    node.add_row("DHT", status["dht"])
    node.add_row("uptime", f"{status['uptime_s']:.0f} s")
    out = [node]
    peers = Table(title="peers", title_justify="left")
    for col in ("peer", "online", "link", "rtt", "sent", "received", "rate out", "rate in",
                "queues out/in", "in flight", "backlog", "reconnects"):
        peers.add_column(col)
    for p in status["peers"]:
        q = p["queues"]
        peers.add_row(
            p["public_key"][:16] + "…", "yes" if p["online"] else "no", p["link"], _ms(p["rtt_ms"]),
            _size(p["bytes_sent"]), _size(p["bytes_received"]),
            _size(p["rate_sent"]) + "/s", _size(p["rate_received"]) + "/s",
            f"{q['outbound_frames']}/{q['outbound_max']} {q['inbound_runs']}/{q['inbound_max']}",
            _size(q["link_in_flight_bytes"]), _size(q["link_backlog_bytes"]), str(p["reconnects"]))
    out.append(peers if status["peers"] else "peers: none yet")
    if "transfers" in status:
        transfers = Table(title="transfers in flight", title_justify="left")
        for col in ("hop", "file", "done", "size", "state"):
            transfers.add_column(col)
        for t in status["transfers"]:
            done = f"{100 * t['done_bytes'] / t['filesize']:.0f} %" if t["filesize"] else "-"
            state = t["state"] + (" (paused)" if t["paused"] else "")
            transfers.add_row(t["hop"], t["filename"] or str(t["fileid"]), done,
                              _size(t["filesize"]), state)
        out.append(transfers if status["transfers"] else "transfers in flight: none")
    return out


def main(argv: list[str]) -> int:
    from .cli import default_profile
    from .controlsock import control_path, node_data_dir, request

    parser = _parser()
    args = parser.parse_args(argv)
    data_dir = node_data_dir(args.profile or default_profile(), args.data_dir)
    try:
        status = request(control_path(data_dir), "status", timeout=args.timeout)
    except ToxbridgeError as exc:
        parser.exit(2, f"toxbridge status: {exc}\n")
    for key in ("v", "ok"):
        status.pop(key, None)
    if args.json:
        json.dump(status, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console

    console = Console()
    for part in render(status):
        console.print(part)
    return 0
