"""After a cut, the app of the daemon that was frozen can write to its bridge port again at
once (bench/catchup.py): the daemon's app socket gets its small kernel buffers before the
handshake. Set after it, the kernel dropped the app's data while the daemon was frozen and
the app's TCP waited out a backed-off retransmission timer: no frame for 7-8 s after
SIGCONT in half of the 10-20 s cuts measured (docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from bench.catchup import catchup

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("catchup")]


async def test_the_frozen_daemons_app_writes_again_within_3_s_of_sigcont(tox_network, tmp_path):
    out = await catchup(tox_network, tmp_path, cuts=(10, 10), settle=3.0, wait=60.0)
    assert (out["frames_lost"], out["frames_duplicated"]) == (0, 0), out["caught_up_s"]
    for cut in out["detail"]:
        # apps: [s since SIGCONT, frames the listener's app sent, frames the peer's app sent]
        before = [row[2] for row in cut["apps"] if row[0] < 0]
        after = [row[2] for row in cut["apps"] if 0 <= row[0] <= 3]
        assert after and before and after[-1] > before[-1], cut["apps"]
        # toxcore's slow start from its floor takes ~5 s; the old stall took 7-20 s more.
        assert cut["caught_up_s"] is not None and cut["caught_up_s"] < 15, out["caught_up_s"]
