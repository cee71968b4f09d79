"""The reliability report (issue 6): runs the proving ground and prints one JSON object.

Parts (``--only`` / ``--skip``, comma-separated): ``nat`` (cone NAT, symmetric NAT and
UDP blocked, in network namespaces: needs root, ``ip`` and ``iptables``), ``flaps`` and
``load`` (``bench.proving``'s scenarios), ``fuzz`` (pytest on tests/test_fuzz.py and
tests/test_fuzz_real.py, cases and failures parsed from its output), ``strangers`` (pytest
on tests/test_strangers.py) and ``soak`` (``bench.soak``, short by default). Every part
runs what it reports; a part that cannot run leaves its keys null and says why under
``errors`` (or ``skipped``).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import trio

from toxbridge.testing import App, DaemonProc, random_frames, stream_frames

PARTS = ("nat", "flaps", "load", "fuzz", "strangers", "soak")
ROOT = Path(__file__).resolve().parent.parent
KEYS = {
    "nat": ("nat_cone_link", "nat_symmetric_link", "no_udp_ok"),
    "flaps": ("flaps", "frames_lost", "frames_duplicated", "messages_sent",
              "messages_delivered_once"),
    "load": ("load_p99_ms",),
    "fuzz": ("fuzz_cases", "fuzz_failures"),
    "strangers": ("strangers_accepted",),
    "soak": ("soak_rss_growth_pct", "soak_fd_growth"),
}


# --------------------------------------------------------------------------- NAT shapes


def _links(app: App) -> list[str]:
    return [e["link"] for e in app.events if e.get("code") == 301 or e.get("event") == "link"]


async def _shape(shape: str, work: Path, mb: int) -> dict[str, Any]:
    """Two daemons behind two NAT routers (toxbridge.testing.netns); the link type the apps were
    last told once the link settles, and whether ``mb`` MB went both ways intact."""
    from toxbridge.testing.netns import Topology

    extra = ["--no-udp"] if shape == "no_udp" else []
    out: dict[str, Any] = {"shape": shape}
    started = time.monotonic()
    with Topology(shape) as net:
        common = dict(network=net.bootstrap, secret="nat-secret", verbose=False)
        with DaemonProc(["--listen", *extra, *net.bootstrap_args()], work / f"{shape}-l.tox",
                        wrap=net.wrap("a"), **common) as listener, \
                DaemonProc(["--peer", listener.tox_id, *extra, *net.bootstrap_args()],
                           work / f"{shape}-p.tox", wrap=net.wrap("b"), **common) as peer:
            socks = [await trio.to_thread.run_sync(net.connect, role, d.port)
                     for role, d in (("a", listener), ("b", peer))]
            a, b = (App(trio.SocketStream(trio.socket.from_stdlib_socket(s))) for s in socks)
            try:
                with trio.fail_after(120):
                    await a.wait_event(code=301)
                    await b.wait_event(code=301)
                out["connect_s"] = round(time.monotonic() - started, 1)
                # Hole punching may move the link from the relay to UDP after it opens.
                with trio.move_on_after(30):
                    while _links(a)[-1:] != ["UDP"] or _links(b)[-1:] != ["UDP"]:
                        await (a if _links(a)[-1:] != ["UDP"] else b).wait_event(event="link")
                with trio.fail_after(120):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(stream_frames, a, b, random_frames(1, mb * 1_000_000))
                        nursery.start_soon(stream_frames, b, a, random_frames(2, mb * 1_000_000))
                out["data_ok"] = True
                la, lb = _links(a)[-1:], _links(b)[-1:]
                out["link"] = la[0] if la == lb and la else f"mixed {la} {lb}"
                out["links_seen"] = _links(a)
            finally:
                await a.aclose()
                await b.aclose()
    out["total_s"] = round(time.monotonic() - started, 1)
    return out


def part_nat(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from toxbridge.testing.netns import unavailable

    why = unavailable()
    if why is not None:
        return {"skipped": f"NAT namespaces unavailable: {why}"}
    shapes = {}
    for shape in ("cone", "symmetric", "no_udp"):
        try:
            shapes[shape] = trio.run(_shape, shape, work, args.nat_mb)
        except BaseException as exc:  # one shape failing does not hide the others
            if isinstance(exc, KeyboardInterrupt):
                raise
            shapes[shape] = {"shape": shape, "error": _short(exc)}
    return {"nat_cone_link": shapes["cone"].get("link"),
            "nat_symmetric_link": shapes["symmetric"].get("link"),
            "no_udp_ok": bool(shapes["no_udp"].get("data_ok")) and shapes["no_udp"].get("link") == "TCP",
            "nat": shapes}


# --------------------------------------------------------------------------- flaps, load


def _proving():
    try:
        from . import proving
    except ImportError as exc:
        raise RuntimeError(f"bench/proving.py is not usable: {exc}") from None
    return proving


def part_flaps(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    proving = _proving()
    seconds = tuple(float(s) for s in args.flap_seconds.split(",")) if args.flap_seconds \
        else proving.FLAP_SECONDS
    r = trio.run(partial(proving.flaps, None, work / "flaps", seconds=seconds))
    # Pending (sent, not arrived when the scenario gave up waiting) is not "lost": shown too.
    pending = {k: r[k] for k in ("frames_pending", "messages_pending") if k in r}
    return {k: r[k] for k in KEYS["flaps"]} | pending | {"flaps_detail": r}


def part_load(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    proving = _proving()
    r = trio.run(partial(proving.load, None, work / "load", clients=args.load_clients,
                         messages=args.load_messages))
    r.pop("per_client", None)  # 100 entries: too long for the report
    return {"load_p99_ms": r["load_p99_ms"], "load": r}


# --------------------------------------------------------------------------- pytest parts


def _pytest(*files: str, extra: tuple[str, ...] = (), timeout: float = 3600) -> tuple[str, dict[str, int]]:
    """Run pytest on ``files`` (no xdist, no cache); its output, and its outcome counts."""
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-s", "-p", "no:cacheprovider",
           "-p", "no:randomly", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    counts = {k: 0 for k in ("passed", "failed", "error", "skipped", "xfailed", "xpassed")}
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)",
                              summary[-1] if summary else ""):
        counts[word.rstrip("s") if word.startswith("error") else word] += int(n)
    if not summary:
        counts["error"] += 1  # pytest did not get as far as a summary
    return out, counts


def part_fuzz(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # test_fuzz.py counts its generated inputs per surface and prints the total at the end;
    # test_fuzz_real.py prints its inputs per surface too ("real-socket fuzz inputs: {...}"),
    # else its hypothesis examples are counted from the statistics.
    out1, c1 = _pytest("tests/test_fuzz.py")
    m = re.search(r"fuzz inputs per surface: .*? total (\d+)", out1)
    out2, c2 = _pytest("tests/test_fuzz_real.py", extra=("--hypothesis-show-statistics",))
    listed = re.search(r"real-socket fuzz inputs: (\{.*\})", out2)
    if listed:
        real = sum(ast.literal_eval(listed.group(1)).values())
    else:
        real = sum(int(n) for n in re.findall(r"(\d+) passing(?: examples)?,", out2))
    failures = sum(c[k] for c in (c1, c2) for k in ("failed", "error"))
    result: dict[str, Any] = {
        "fuzz_cases": (int(m.group(1)) if m else 0) + real,
        "fuzz_failures": failures,
        "fuzz": {"test_fuzz": c1, "test_fuzz_cases": int(m.group(1)) if m else None,
                 "test_fuzz_real": c2, "test_fuzz_real_examples": real}}
    if not m:
        result["fuzz"]["note"] = "test_fuzz.py printed no total (its count test did not run)"
    if failures:
        result["fuzz"]["output_tail"] = (out1 + out2)[-3000:]
    return result


def part_strangers(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # The flood test asserts that none of its strangers became a friend of the listener,
    # that the real peer kept working, and the pending cap; the socket tests, loopback.
    out, counts = _pytest("tests/test_strangers.py")
    flood = re.search(r"STRANGERS = (\d+)", (ROOT / "tests/strangers.py").read_text())  # the flood
    ok = counts["failed"] == 0 and counts["error"] == 0 and counts["passed"] > 0
    result: dict[str, Any] = {
        "strangers_accepted": 0 if ok else None,
        "strangers": {"requests": int(flood.group(1)) if flood else None, "pytest": counts}}
    if not ok:
        result["strangers"]["output_tail"] = out[-3000:]
        raise_later = "tests/test_strangers.py did not pass; strangers_accepted unknown"
        result["strangers"]["error"] = raise_later
    return result


def part_soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from .soak import run

    r = run(args.soak_seconds, flap_every=max(10.0, args.soak_seconds / 6), flap_seconds=[5.0, 35.0],
            sample_every=max(1.0, args.soak_seconds / 100), file_kb=1024)
    samples = r.pop("samples")
    r["sample_count"] = len(samples)
    return {"soak_rss_growth_pct": r["soak_rss_growth_pct"], "soak_fd_growth": r["soak_fd_growth"],
            "soak": r}


# --------------------------------------------------------------------------- main


def _short(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[-1500:]


def _parts(text: str | None) -> set[str]:
    names = {p.strip() for p in (text or "").split(",") if p.strip()}
    unknown = names - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench reliability",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help=f"run only these parts ({','.join(PARTS)})")
    parser.add_argument("--skip", help="run all parts but these")
    parser.add_argument("--nat-mb", type=int, default=3, help="MB each way per NAT shape (default 3)")
    parser.add_argument("--flap-seconds", help="flap durations, comma-separated "
                        "(default: bench.proving.FLAP_SECONDS)")
    parser.add_argument("--load-clients", type=int, default=50, help="clients per bridge (default 50)")
    parser.add_argument("--load-messages", type=int, default=1000,
                        help="messages per client (default 1000)")
    parser.add_argument("--soak-seconds", type=float, default=300,
                        help="the soak's length (default 300; python -m bench soak runs 30 min)")
    args = parser.parse_args(argv)
    only, skip = _parts(args.only), _parts(args.skip)
    chosen = [p for p in PARTS if (not only or p in only) and p not in skip]
    report: dict[str, Any] = {"bench": "reliability", "parts": chosen}
    for key in (k for p in PARTS for k in KEYS[p]):
        report[key] = None
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="toxbridge-reliability-") as tmp:
        for name in chosen:
            t = time.monotonic()
            try:
                out = globals()[f"part_{name}"](args, Path(tmp))
            except Exception as exc:  # reported, and the other parts still run
                errors[name] = _short(exc)
                out = {}
            if "skipped" in out:
                skipped[name] = out.pop("skipped")
            if name == "strangers" and "error" in out.get("strangers", {}):
                errors[name] = out["strangers"]["error"]
            report.update(out)
            seconds[name] = round(time.monotonic() - t, 1)
    report["seconds"] = seconds
    report["skipped"] = skipped
    report["errors"] = errors
    json.dump(report, sys.stdout)
    print()
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
