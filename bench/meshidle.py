"""``bench mesh --idle-only``: only the hub with many idle peers, against raw toxcore's.

A raw toxcore hub with ``N`` raw friends (each its own process, iterating at toxcore's
own pace), then a hub node (``--listen``) with ``N`` spoke nodes (whole, or daemons only
with ``--light``) on the same private network: after a quiet settle, each hub's and one
spoke's CPU over the same window, split into the trio thread and the others (the tox
thread) with their wakes per second (``bench.idle.cpu_split``). ``--profile FILE``: after
that window, py-spy records the hub node (every thread, idle frames too) for another
window into FILE (py-spy's raw format; its own sampling would weigh on the figures)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from toxbridge.network import NodeInfo
from toxbridge.testing import DaemonProc
from toxbridge.testing.rawpeer import RawPeer

from .idle import cpu_split

PROFILE_RATE = 200  # samples per second


def _split(prefix: str, pids: list[int], seconds: float) -> dict:
    """cpu_split of a hub and one spoke, as named fields."""
    s = cpu_split(pids, seconds)
    out = {}
    for i, who in enumerate(("hub", "spoke")):
        out[f"{prefix}_{who}_idle_cpu_pct"] = s["cpu"][i]
        if prefix != "raw":  # a raw peer is one thread
            out[f"{prefix}_{who}_trio_pct"] = s["main"][i]
            out[f"{prefix}_{who}_tox_pct"] = s["others"][i]
            out[f"{prefix}_{who}_trio_wakes_per_s"] = s["main_wakes"][i]
            out[f"{prefix}_{who}_tox_wakes_per_s"] = s["others_wakes"][i]
    return out


def measure_raw_hub(network: NodeInfo, peers: int, settle: float, seconds: float) -> dict:
    with ExitStack() as stack:
        hub = stack.enter_context(RawPeer(network, idle_loop=True))
        spokes = [stack.enter_context(RawPeer(network, idle_loop=True)) for _ in range(peers)]
        t0 = time.monotonic()
        RawPeer.befriend_hub(hub, spokes)
        out = {"raw_online_s": round(time.monotonic() - t0, 2)}
        time.sleep(settle)
        out.update(_split("raw", [hub.process.pid, spokes[0].process.pid], seconds))
    return out


def _profile(pid: int, seconds: float, path: Path) -> None:
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise RuntimeError("--profile: no py-spy on PATH or beside this Python")
    subprocess.run([spy, "record", "--pid", str(pid), "--idle", "--threads", "--rate",
                    str(PROFILE_RATE), "--duration", str(round(seconds)), "--format", "raw",
                    "--output", str(path)], check=True, capture_output=True,
                   timeout=seconds + 60)


def measure_node_hub(network: NodeInfo, cfg: dict, wait_online) -> dict:
    peers, light = cfg["hub_peers"], cfg["light"]
    out: dict = {"extra_spokes": "daemon" if light else "whole"}
    with tempfile.TemporaryDirectory(prefix="toxbridge-bench-meshidle-") as tmp, \
            ExitStack() as procs:
        root = Path(tmp)
        hub = procs.enter_context(DaemonProc(["--listen"], root / "hub.tox", network,
                                             verbose=False, raw=False))
        spokes = [procs.enter_context(DaemonProc(["--peer", hub.tox_id], root / f"x{i}.tox",
                                                 network, verbose=False, raw=light))
                  for i in range(peers)]
        out["hub_many_online_s"] = round(wait_online(hub, peers), 2)
        time.sleep(cfg["settle"])
        out.update(_split("node", [hub.process.pid, spokes[0].process.pid], cfg["seconds"]))
        if cfg["profile"]:
            _profile(hub.process.pid, cfg["seconds"], Path(cfg["profile"]))
            out["profile"] = cfg["profile"]
    return out


def measure_idle_only(network: NodeInfo, cfg: dict, wait_online) -> dict:
    peers = cfg["hub_peers"]
    out: dict = {"peers": peers, "seconds": cfg["seconds"], "settle": cfg["settle"]}
    out.update(measure_raw_hub(network, peers, cfg["settle"], cfg["seconds"]))
    out.update(measure_node_hub(network, cfg, wait_online))
    # Per peer beyond the first: the hub's cost less a spoke's (one peer), over peers - 1.
    for prefix in ("raw", "node"):
        hub, spoke = out[f"{prefix}_hub_idle_cpu_pct"], out[f"{prefix}_spoke_idle_cpu_pct"]
        out[f"{prefix}_per_peer_pct"] = round((hub - spoke) / (peers - 1), 3)
    return out
