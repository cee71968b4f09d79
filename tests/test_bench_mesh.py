"""``python -m bench mesh``: it is registered, refuses bad options, and ``--quick`` runs the
whole arrangement on a private network (a hub, three spokes, real toxcore) and prints
what it says it prints: the file through the hub arrived whole, the stalled stream
stopped and stayed stopped, every bulk leg moved all its bytes. The figures themselves
are docs/benchmarks.md's business (this machine is shared)."""

import json
import subprocess
import sys

import pytest

from bench.__main__ import BENCHES


def test_bench_mesh_is_registered_and_says_its_options():
    assert "mesh" in BENCHES
    done = subprocess.run([sys.executable, "-m", "bench", "mesh", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for option in ("--mb", "--quick", "--hub-peers", "--no-16", "--light", "--stall-mb", "--messages",
                   "--seconds", "--settle", "--limit"):
        assert option in done.stdout


@pytest.mark.parametrize("args, message", [(["--mb", "0"], "--mb must be positive"),
                                           (["--messages", "-1"], "--messages must be positive"),
                                           (["--limit", "0"], "--limit must be positive")])
def test_a_bad_option_is_a_usage_error(args, message):
    done = subprocess.run([sys.executable, "-m", "bench", "mesh", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr


@pytest.mark.tox
@pytest.mark.timeout(420)
def test_quick_runs_a_hub_and_three_spokes_and_prints_every_figure():
    # ~50 s on a quiet machine. Each leg bounded (--limit: the raw anchor, the file, its
    # download), so a stuck one ends the run with its reason; the whole bounded too.
    try:
        done = subprocess.run([sys.executable, "-m", "bench", "mesh", "--quick", "--limit", "120"],
                              capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench mesh --quick not done in 400 s; its stderr: {exc.stderr!s:.3000}")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["peers"] == 3 and result["file_path"] == "spoke-hub-spoke"
    assert result["file_done"] and result["md5_equal"]
    assert result["chat_busy_round_trips"] > 0 and result["chat_busy_over_idle"] > 0
    assert len(result["bulk3_each_MBps"]) == 3 and result["bulk1_over_raw"] > 0
    # The stalled stream stopped taking bytes, within its window and the socket buffers,
    # and took nothing more while the other stream moved.
    assert result["stalled_stuck"]
    assert result["stalled_took_MB"] < 8
    assert result["stalled_took_after_MB"] == result["stalled_took_MB"]
    assert result["other_stream_ratio"] > 0
    assert result["hub_msgs_per_s"] > 0
    assert 0 < result["hub_rss_MB"] and len(result["spoke_rss_MB"]) == 3
    assert 0 <= result["node1_idle_cpu_pct"] < 100
