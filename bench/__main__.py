"""``python -m bench NAME [options]``: run one benchmark; each prints one JSON object."""

from __future__ import annotations

import importlib
import sys

BENCHES = ["raw_tox", "channel", "messages", "files", "soak", "reliability", "wan", "catchup",
           "idle", "mux", "simtransport", "lossy", "forward", "hops", "mesh"]


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        print(f"usage: python -m bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(f"bench.{sys.argv[1]}").main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
