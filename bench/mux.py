"""``python -m bench mux [--mb 50]`` — how fast two stream Muxes move bulk bytes in memory.

No Tox, no sockets, one process: the shell loop the tox thread will run, with the Link
left out. Per case (1 or 8 BULK streams, 1024-byte or 16 KiB ``send()`` calls), the
sender keeps every stream's send buffer full; each turn moves up to 64 chunks of
``data_to_send(1024)`` (one Link frame each) into the receiver, which consumes every
StreamData at once, and the receiver's credit frames back. The figures are payload MB/s
(1 MB = 10**6 bytes) per wall second and per CPU second of this process (both ends: a real
node runs only one of them), against toxcore's ~25-35 MB/s on loopback: the mux must not
be the bottleneck. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from toxbridge.streams import Mux, Priority, StreamData

_CHUNK = 1024  # one Link frame


def _drain(mux: Mux) -> int:
    got = 0
    while (event := mux.next_event()) is not None:
        if isinstance(event, StreamData):
            mux.consume(event.stream_id, len(event.data))
            got += len(event.data)
    return got  # CreditAvailable needs nothing: the sender tops up every turn


def _move(src: Mux, dst: Mux, chunks: int) -> int:
    got = 0
    for _ in range(chunks):
        chunk = src.data_to_send(_CHUNK)
        if not chunk:
            break
        dst.receive_data(chunk)
        got += _drain(dst)
    _drain(src)
    return got


def run_case(streams: int, write: int, total: int) -> dict[str, float]:
    a = Mux(os.urandom(8), initiator=True)
    b = Mux(os.urandom(8), initiator=False)
    ids = [a.open_stream(2, Priority.BULK) for _ in range(streams)]
    block = bytes(write)
    got = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    while got < total:
        for sid in ids:
            while a.send(sid, block) == write:
                pass
        got += _move(a, b, 64)
        _move(b, a, 64)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"streams": streams, "write": write, "MB": round(got / 1e6, 1),
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
            "MBps": round(got / 1e6 / seconds, 1), "cpu_MBps": round(got / 1e6 / cpu, 1)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench mux", description=__doc__)
    parser.add_argument("--mb", type=float, default=50, help="payload per case, MB")
    args = parser.parse_args(argv)
    total = int(args.mb * 1e6)
    cases = [run_case(n, w, total) for n in (1, 8) for w in (1024, 16 * 1024)]
    print(json.dumps({"mb_per_case": args.mb, "cases": cases}))
    return 0
