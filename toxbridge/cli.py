"""The ``toxbridge`` command line.

    toxbridge bootstrap-node     run a DHT bootstrap node on 127.0.0.1 (private network)
    toxbridge demo               the demo on a private loopback Tox network
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from .errors import ToxbridgeError

log = logging.getLogger("toxbridge")


def _bootstrap_node(args: argparse.Namespace) -> int:
    from .network import BootstrapDaemon, BootstrapNode

    node = (BootstrapNode(args.port, args.tcp_port) if args.python
            else BootstrapDaemon(args.port, args.tcp_port))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    try:
        print(node.info, flush=True)
        if node.info.tcp_port:
            print(f"TCP relay on port {node.info.tcp_port}", file=sys.stderr, flush=True)
        stop.wait()
    finally:
        node.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(mb=args.mb)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toxbridge", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bootstrap-node", help="run a private DHT bootstrap node on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="UDP port (default: a free one)")
    p.add_argument("--tcp-port", type=int, default=0, help="TCP relay port (default: a free one)")
    p.add_argument("--python", action="store_true",
                   help="use a Python Tox instance instead of tox-bootstrapd (no TCP relay unless --tcp-port)")
    p.set_defaults(func=_bootstrap_node)

    p = sub.add_parser("demo", help="run the demo on a private loopback Tox network")
    p.add_argument("--mb", type=float, default=20, help="megabytes to stream between the peers")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.func(args)
    except ToxbridgeError as exc:
        print(f"toxbridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
