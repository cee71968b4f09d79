"""The files benchmark: raw toxcore, then one file over all three hops, in one run.

On one private network: the raw anchor on the same volume, then two whole nodes
(``toxbridge --listen`` / ``--peer``, daemon + bridge_local). alice uploads a random file to
her bridge and sends it to bob (upload), the bridges move it (bridge to bridge), bob
downloads it from his bridge (download); md5 checked at the end. While the file moves
between the bridges, alice and bob ping-pong chat messages. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import trio

from bridge_local.client import open_client
from bridge_local.files import download, send_file
from toxbridge.testing import DaemonProc, start_bootstrap

from .channel import peak_rss_mb
from .raw_tox import MB, measure_raw, percentile

IDLE_PINGS = 50


def random_file(path: Path, size: int) -> str:
    md5 = hashlib.md5()
    block = hashlib.sha256(b"toxbridge").digest() * (1 << 15)  # 1 MiB, not compressible away
    with path.open("wb") as f:
        left, n = size, 0
        while left:
            chunk = (n.to_bytes(8, "big") + block)[: min(left, len(block))]
            f.write(chunk)
            md5.update(chunk)
            left -= len(chunk)
            n += 1
    return md5.hexdigest()


async def three_hops(listener: DaemonProc, peer: DaemonProc, src: Path, md5: str,
                     dest: Path, time_limit: float | None = None,
                     idle_pings: int = IDLE_PINGS, marks: dict | None = None) -> dict:
    """alice on ``listener``'s app port sends ``src`` to bob on ``peer``'s (any two whole
    nodes: through a hub too), timing chat round trips idle and while the file moves.
    ``marks``: each round trip's (start, end) in monotonic ns goes into its ``idle`` or
    ``busy`` list (a hop trace matches them)."""
    size = src.stat().st_size
    result: dict = {}
    async with open_client(listener.app_port, name="alice") as alice, \
            open_client(peer.app_port, name="bob") as bob:
        with trio.fail_after(120):
            await alice.wait_event(command=301, token=bob.token)
        rtts: list[float] = []
        idle: list[float] = []
        available: set[str] = set()  # fileids bob was told (5003) are complete

        async def ping(into: list[float]) -> None:
            t, start = time.perf_counter(), time.monotonic_ns()
            await alice.send(bob.token, "ping")
            await alice.wait_event(command=2003, msg="pong")
            into.append(time.perf_counter() - t)
            if marks is not None:
                marks["idle" if into is idle else "busy"].append((start, time.monotonic_ns()))

        async def bob_side() -> None:  # bob's only reader: answers pings, sees the 5003
            while True:
                event = await bob.next_event()
                if event.get("command") == 2003 and event.get("msg") == "ping":
                    await bob.send(alice.token, "pong")
                elif event.get("command") == 5003:
                    available.add(event.get("fileid"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(bob_side)
            with trio.fail_after(60 + idle_pings):
                for _ in range(idle_pings):  # the same round trip with nothing else moving
                    await ping(idle)
            t0 = time.monotonic()
            ref, reply = await send_file(alice, bob.token, src)  # upload, then the 1002
            t1 = time.monotonic()
            if reply.get("code") != 201:
                raise RuntimeError(f"the file message was not delivered: {reply}")
            with trio.move_on_after(time_limit) if time_limit else trio.fail_after(1800):
                while ref.fileid not in available:
                    await ping(rtts)
            t2 = time.monotonic()
            moved = size
            if ref.fileid not in available:  # the time limit: what reached bob's bridge
                with trio.fail_after(60):
                    status = await bob.request({"command": 4002, "token": bob.token, "fileid": ref.fileid})
                counters = status.get("counters") or {}
                moved = max(int(status.get("held") or 0), int(counters.get("peer_bytes_received") or 0))
            nursery.cancel_scope.cancel()
        result["upload_MBps"] = round(size / (t1 - t0) / MB, 2)
        result["file_done"] = moved == size
        result["file_MB"] = round(moved / MB, 1)
        result["file_MBps"] = round(moved / (t2 - t1) / MB, 2)
        result["chat_rtt_p50_ms"] = round(percentile(rtts, 0.5) * 1000, 2) if rtts else None
        result["chat_rtt_p99_ms"] = round(percentile(rtts, 0.99) * 1000, 2) if rtts else None
        result["chat_round_trips"] = len(rtts)
        result["chat_rtt_idle_p50_ms"] = round(percentile(idle, 0.5) * 1000, 2)
        result["chat_rtt_idle_p99_ms"] = round(percentile(idle, 0.99) * 1000, 2)
        result["chat_rtt_ratio"] = (round(result["chat_rtt_p50_ms"] / result["chat_rtt_idle_p50_ms"], 2)
                                    if rtts else None)

        if not result["file_done"]:
            return result
        t3 = time.monotonic()
        with trio.fail_after(time_limit or 1800):  # seen waiting with every byte on disk
            path = await download(bob, ref.fileid, dest)
        t4 = time.monotonic()
        result["download_MBps"] = round(size / (t4 - t3) / MB, 2)
        digest = hashlib.md5()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != md5:
            raise RuntimeError("the downloaded file differs")
        result["md5_equal"] = True
    return result


def measure_files(network, mb: float, *, time_limit: float | None = None,
                  daemon_args: tuple[str, ...] = ()) -> dict:
    """Two whole nodes; one file of ``mb`` MB over the three hops. ``time_limit``: give the
    bridge-to-bridge hop that long, then report what reached the receiving bridge
    (``file_done`` false, no download). ``daemon_args``: more options for both nodes."""
    with tempfile.TemporaryDirectory(prefix="toxbridge-bench-files-") as tmp:
        root = Path(tmp)
        src = root / "file.bin"
        md5 = random_file(src, int(mb * MB))
        with DaemonProc(["--listen", *daemon_args], root / "l.tox", network, verbose=False,
                        raw=False) as listener, \
                DaemonProc(["--peer", listener.tox_id, *daemon_args], root / "p.tox", network,
                           verbose=False, raw=False) as peer:
            result = trio.run(three_hops, listener, peer, src, md5, root / "got", time_limit)
            result["daemon_rss_MB"] = round(max(peak_rss_mb(p.process.pid) for p in (listener, peer)), 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench files", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200, help="file size in MB, and the raw volume (default 200)")
    args = parser.parse_args(argv)
    boot = start_bootstrap()
    try:
        raw = measure_raw(boot.info, args.mb, pings=100, use_relay=True)
        files = measure_files(boot.info, args.mb)
    finally:
        boot.stop()
    result = {"bench": "files", "mb": args.mb, "raw_MBps": raw["lossless_MBps"],
              **files, "ratio": round(files["file_MBps"] / raw["lossless_MBps"], 3)}
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
