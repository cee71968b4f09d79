"""The soak, short (issue 6, item 6): a minute of mixed traffic (a stream both ways, chat
both ways, files through two bridges) with two link flaps, on real daemons. Exactness
only: every frame, message and file verified, no error, and the open fds do not grow.
How fast, and RSS over a long run, are ``python -m bench soak``'s business."""

from __future__ import annotations

import pytest

from bench.soak import soak

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("soak")]

SECONDS = 60
FD_BOUND = 1  # medians of the steady fds (store files apart): a socket mid-reconnect at most


async def test_a_short_soak_delivers_everything_exactly_and_leaks_no_fds(tox_network, tmp_path):
    r = await soak(tox_network, tmp_path, SECONDS, flap_every=20, flap_seconds=[5.0],
                   sample_every=2, file_kb=512)
    summary = {k: v for k, v in r.items() if k != "samples"}
    assert r["errors"] == [] and r["error_count"] == 0, summary
    assert r["frames_sent"] > 0 and r["frames_verified"] == r["frames_sent"], summary
    assert r["messages_sent"] > 0 and r["messages_verified"] == r["messages_sent"], summary
    assert r["files_sent"] >= 1 and r["files_verified"] == r["files_sent"], summary
    assert len(r["flaps"]) >= 2, summary
    assert r["soak_fd_growth"] <= FD_BOUND, summary
    assert not any(r["store_fds_end"].values()), summary  # no transfer left a file open
