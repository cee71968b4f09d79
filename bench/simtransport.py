"""``python -m bench simtransport [--seconds 6] [--json]`` — the transport over lossy packets
(toxbridge.transport) on *simulated* paths (toxbridge.testing.simpath): no toxcore, no
network, simulated time.

Rows: round trips of 20, 50 and 150 ms x random loss of 0, 0.1 and 1 % x a 50 Mbit/s
bottleneck (a drop-tail queue of one round trip) or none (then the line is 200 Mbit/s,
25 MB/s: about what one core of toxcore moves; its queue is one round trip too). Each
row: goodput (stream bytes the receiving app got) over the whole run and after the
first 2 s, as MB/s and as a share of the line's rate (which counts the 57 bytes of
toxcore's and UDP/IP's headers per packet, so 94.5 % is the most a full packet can
carry), the bytes resent, the queue's delay (median and 95th percentile after 2 s), and
the CPU time spent inside the two endpoints per DATA packet sent (sender, receiver and the
acks both ways; wall time on a shared machine, so an upper bound). Prints a Markdown table,
or with ``--json`` one JSON object. ``--cpu``: the CPU per packet when the endpoints are
driven as the tox thread would, in 1 ms loop turns (process time), as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

from toxbridge.testing.simpath import PathSpec, Simulation
from toxbridge.transport import BbrController, Endpoint

RTTS = (0.020, 0.050, 0.150)
LOSSES = (0.0, 0.001, 0.01)
BOTTLENECK = 50e6 / 8  # 6.25 MB/s
LINE = 200e6 / 8  # "no bottleneck": 25 MB/s


def run_row(rtt: float, loss: float, rate: float, seconds: float, seed: int = 1) -> dict:
    spec = PathSpec(delay_s=rtt / 2, loss=loss, rate_Bps=rate, queue_bytes=int(rate * rtt),
                    seed=seed)
    sim = Simulation(spec, seed=seed)
    sender = Endpoint(controller=BbrController(rng=random.Random(seed)))
    flow = sim.add_flow(sender, Endpoint())
    wall = time.perf_counter()
    sim.run(seconds)
    wall = time.perf_counter() - wall
    stats = sender.statistics()
    queue = sorted(q for t, q in sim.queue_delays if t >= 2.0)
    steady = sim.goodput(flow, 2.0, seconds)
    return {
        "rtt_ms": round(rtt * 1e3), "loss": loss, "line_MBps": rate / 1e6,
        "bottleneck": rate == BOTTLENECK, "seconds": seconds,
        "goodput_MBps": round(flow.delivered / seconds / 1e6, 3),
        "steady_MBps": round(steady / 1e6, 3),
        "share": round(flow.delivered / seconds / rate, 3),
        "steady_share": round(steady / rate, 3),
        "resent_pct": round(100 * stats.bytes_resent / max(stats.bytes_sent, 1), 2),
        "queue_p50_ms": round(queue[len(queue) // 2] * 1e3, 1) if queue else None,
        "queue_p95_ms": round(queue[int(len(queue) * 0.95)] * 1e3, 1) if queue else None,
        "packets": stats.packets_sent,
        "cpu_us_per_packet": round(sim.endpoint_cpu_s / max(stats.packets_sent, 1) * 1e6, 1),
        "sim_wall_s": round(wall, 1),
    }


def cpu_turns(seconds: float = 3.0, rate: float = LINE, rtt: float = 0.020,
              turn: float = 0.001) -> dict:
    """The endpoints' CPU per DATA packet as the tox thread would drive them: loop turns of
    ``turn`` s, each handing over every packet due and sending what the endpoints have
    (many packets per call, unlike the event-by-event simulator)."""
    from toxbridge.testing.wanpath import DelayLine

    line = DelayLine(PathSpec(delay_s=rtt / 2, rate_Bps=rate, queue_bytes=int(rate * rtt)))
    a, b = Endpoint(controller=BbrController(rng=random.Random(1))), Endpoint()
    cpu, now, delivered, filler = 0.0, 0.0, 0, bytes(1 << 20)
    while now < seconds:
        c0 = time.process_time()
        for to_b, packet in line.due(now):
            (b if to_b else a).receive_datagram(packet, now)
        for ep in (a, b):
            t = ep.timeout()
            if t is not None and t <= now:
                ep.handle_timer(now)
        while a.send_room:
            a.send(filler[: a.send_room])
        delivered += len(b.receive())
        out_a, out_b = a.datagrams_to_send(now), b.datagrams_to_send(now)
        cpu += time.process_time() - c0
        for packet in out_a:
            line.offer(now, (True, packet), len(packet) + 57, "fwd")
        for packet in out_b:
            line.offer(now, (False, packet), len(packet) + 57, "rev")
        now += turn
    packets = a.statistics().packets_sent
    per_packet = cpu / max(packets, 1)
    return {"simulated_s": seconds, "rtt_ms": rtt * 1e3, "line_MBps": rate / 1e6,
            "goodput_MBps": round(delivered / seconds / 1e6, 2), "packets": packets,
            "acks": b.statistics().acks_sent,
            "cpu_us_per_packet": round(per_packet * 1e6, 1),
            "core_share_at_19000_pps": round(per_packet * 19_000, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench simtransport",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="simulated seconds per row")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    parser.add_argument("--cpu", action="store_true",
                        help="only the CPU per packet, driven in 1 ms loop turns (JSON)")
    args = parser.parse_args(argv)
    if args.cpu:
        print(json.dumps(cpu_turns()))
        return 0
    rows = [run_row(rtt, loss, rate, args.seconds + (2.0 if rtt > 0.1 else 0.0))
            for rate in (BOTTLENECK, LINE) for rtt in RTTS for loss in LOSSES]
    if args.json:
        print(json.dumps({"rows": rows, "loadavg": os.getloadavg()}))
        return 0
    print("| RTT | loss | line | goodput MB/s (share of line) | after 2 s | resent | queue p50 / p95 | CPU µs/packet |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        line = "50 Mbit/s bottleneck" if r["bottleneck"] else "none (200 Mbit/s line)"
        print(f"| {r['rtt_ms']} ms | {r['loss'] * 100:g} % | {line} | {r['goodput_MBps']:.2f} "
              f"({r['share'] * 100:.0f} %) | {r['steady_MBps']:.2f} ({r['steady_share'] * 100:.0f} %) "
              f"| {r['resent_pct']:.1f} % | {r['queue_p50_ms']} / {r['queue_p95_ms']} ms "
              f"| {r['cpu_us_per_packet']} |")
    print(f"\nload average {os.getloadavg()[0]:.1f} (2 cores, shared)")
    return 0
