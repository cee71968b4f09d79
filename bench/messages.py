"""The messages benchmark: raw toxcore round trip, then chat messages through two bridges.

In one run, on one private network: the raw toxcore ping-pong (the anchor), then two real
daemons (``--raw``) with a ``python -m bridge_local`` process on each, and clients on the
app ports. Measures the client → client → client message round trip (alice sends ``1002``
to bob, bob answers when the ``2003`` arrives, alice times the ``2003`` coming back), and
messages per second for many small messages pipelined by one client, local-to-local (two
clients of one bridge) and across Tox (a client of each bridge). Prints one JSON object.

Like for like: toxcore's send rate follows what was sent recently (1.2 x the last 600 ms),
so on a fresh connection a ping-pong waits extra loop turns for its budget until the rate has
grown (raw toxcore: ~3.3 ms p50 in its first 250 pings, 1.1 ms after ~1,000). Both round trips
are therefore measured after ``--warmup`` discarded round trips, whose p50s are reported too
(``*_warmup_p50_ms``). The across-Tox flood starts from that slow start as well: besides its
average, ``tox_msgs_peak_per_s`` is its best one-second rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import trio

from bridge_local.client import open_client
from bridge_local.protocol import LineDecoder
from toxbridge.testing import BridgeLocalProc, DaemonProc, start_bootstrap

from .raw_tox import measure_raw, percentile


async def wait_known(port: int, token: str, tag: str, timeout: float = 60) -> None:
    """Until the bridge on ``port`` lists the user ``token``. A user of another bridge is
    known only once its announcement arrived (through a hub: two hops); a message sent
    before that is refused (202) and its 2003 never comes."""
    async with open_client(port, name=f"probe-{tag}") as probe:
        with trio.fail_after(timeout):
            while not any(u.get("token") == token for u in await probe.users()):
                await trio.sleep(0.1)


async def flood(src_port: int, dst_port: int, count: int, tag: str) -> tuple[float, float]:
    """``count`` small messages from one client to another, pipelined; returns the average
    msgs/s and the best one-second rate."""
    async with open_client(dst_port, name=f"sink-{tag}") as sink:
        await wait_known(src_port, sink.token, tag)
        stream = await trio.open_tcp_stream("127.0.0.1", src_port)
        try:
            await stream.send_all(json.dumps({"command": 1000, "name": f"src-{tag}"}).encode()
                                  + b"\n")
            decoder = LineDecoder()
            while True:
                decoder.receive_data(await stream.receive_some(65536))
                line = decoder.next_line()
                if line is not None:
                    token = json.loads(line)["token"]
                    break
            lines = [json.dumps({"command": 1002, "token": token, "goaltoken": sink.token,
                                 "type": 1, "msg": f"m{i}"}).encode() + b"\n"
                     for i in range(count)]
            start = time.monotonic()

            async def send() -> None:
                for i in range(0, count, 200):
                    await stream.send_all(b"".join(lines[i:i + 200]))

            async def drain_replies() -> None:  # events (301 ...) come on this stream too
                seen = 0
                while seen < count:
                    decoder.receive_data(await stream.receive_some(65536))
                    while (line := decoder.next_line()) is not None:
                        reply = json.loads(line)
                        if reply.get("command") != 2002:
                            continue
                        if reply.get("code") != 201:  # not delivered: no 2003 will come
                            raise RuntimeError(f"message {seen} not delivered: {reply}")
                        seen += 1

            arrived = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                nursery.start_soon(drain_replies)
                for i in range(count):
                    event = await sink.wait_event(command=2003)
                    arrived.append(time.monotonic())
                    if event["msg"] != f"m{i}":
                        raise RuntimeError(f"message {i} out of order: {event['msg']}")
            elapsed = time.monotonic() - start
            peak, first = 0, 0
            for last, t in enumerate(arrived):  # the most arrivals in any one-second window
                while t - arrived[first] > 1.0:
                    first += 1
                peak = max(peak, last - first + 1)
            return count / elapsed, float(peak if elapsed > 1.0 else count / elapsed)
        finally:
            await stream.aclose()


async def _round_trips(port_a: int, port_b: int, count: int, warmup: int = 0
                       ) -> tuple[list[float], list[float]]:
    """(the warm-up round trips, the measured ones)."""
    async with open_client(port_a, name="alice") as alice, \
            open_client(port_b, name="bob") as bob:
        await alice.wait_event(command=301, name="bob")

        async def echo() -> None:
            async for event in bob:
                if event["command"] == 2003:
                    await bob.send(event["srctoken"], event["msg"])

        rtts = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            for i in range(warmup + count):
                start = time.monotonic()
                await alice.send(bob.token, f"ping {i}")
                event = await alice.wait_event(command=2003)
                rtts.append(time.monotonic() - start)
                if event["msg"] != f"ping {i}":
                    raise RuntimeError(f"round trip {i} got {event['msg']!r}")
            nursery.cancel_scope.cancel()
        return rtts[:warmup], rtts[warmup:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench messages",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=1000,
                        help="round trips discarded before measuring, raw and messages alike")
    parser.add_argument("--count", type=int, default=100_000, help="messages per flood")
    args = parser.parse_args(argv)
    boot = start_bootstrap()
    result: dict = {"bench": "messages", "pings": args.pings, "warmup": args.warmup,
                    "count": args.count}
    try:
        raw = measure_raw(boot.info, mb=1, pings=args.pings, warmup_pings=args.warmup)
        result["raw_rtt_p50_ms"] = raw["rtt_p50_ms"]
        result["raw_rtt_p99_ms"] = raw["rtt_p99_ms"]
        if args.warmup:
            result["raw_rtt_warmup_p50_ms"] = raw["rtt_warmup_p50_ms"]
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            with DaemonProc(["--listen"], d / "l.tox", boot.info, verbose=False) as listener, \
                    DaemonProc(["--peer", listener.tox_id], d / "p.tox", boot.info,
                               verbose=False) as peer, \
                    BridgeLocalProc(listener.port, d / "a") as a, \
                    BridgeLocalProc(peer.port, d / "b") as b:

                async def run() -> None:
                    with trio.fail_after(600):
                        warm, rtts = await _round_trips(a.app_port, b.app_port, args.pings,
                                                        args.warmup)
                        result["msg_rtt_p50_ms"] = round(percentile(rtts, 0.5) * 1000, 3)
                        result["msg_rtt_p99_ms"] = round(percentile(rtts, 0.99) * 1000, 3)
                        if warm:
                            result["msg_rtt_warmup_p50_ms"] = round(
                                percentile(warm, 0.5) * 1000, 3)
                        average, _ = await flood(a.app_port, a.app_port, args.count, "local")
                        result["local_msgs_per_s"] = round(average)
                        average, peak = await flood(a.app_port, b.app_port, args.count, "tox")
                        result["tox_msgs_per_s"] = round(average)
                        result["tox_msgs_peak_per_s"] = round(peak)

                trio.run(run)
        result["rtt_over_raw_ms"] = round(result["msg_rtt_p50_ms"] - result["raw_rtt_p50_ms"], 3)
    finally:
        boot.stop()
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
