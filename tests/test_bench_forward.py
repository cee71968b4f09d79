"""``python -m bench forward``: it imports, says its options, refuses bad ones (its figures
are docs/benchmarks.md's business), and its stall rule counts what it should."""

import subprocess
import sys

from bench import forward
from bench.__main__ import BENCHES


def test_bench_forward_is_registered_and_its_help_works():
    assert "forward" in BENCHES
    done = subprocess.run([sys.executable, "-m", "bench", "forward", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for option in ("--mb", "--quick", "--wan", "--count", "--download-mb", "--keystrokes",
                   "--keys-only", "--pairs"):
        assert option in done.stdout


def test_a_bad_count_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "bench", "forward", "--count", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--count must be positive" in done.stderr


def test_a_bad_pair_count_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "bench", "forward", "--pairs", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--pairs must be positive" in done.stderr


def test_the_ratio_is_the_median_of_the_pairs_not_of_the_legs():
    def pair(chan, fwd, done=True):
        return {"channel_MBps": chan, "forward_MBps": fwd,
                "ratio": round(fwd / chan, 3) if done else None}
    # The legs' medians (channel 20, forward 9: 0.45) mix pairs run at different loads;
    # the pairs' own ratios say 0.9 but for one.
    out = forward.summarise_pairs([pair(10, 9), pair(20, 18), pair(30, 3)])
    assert out["forward_ratio"] == 0.9
    assert (out["channel_MBps"], out["forward_MBps"]) == (20, 9)
    assert (out["forward_ratio_min"], out["forward_ratio_max"]) == (0.1, 0.9)
    # A pair whose channel leg was cut has no ratio; it does not count as zero.
    out = forward.summarise_pairs([pair(10, 9), pair(1, 5, done=False)])
    assert out["forward_ratio"] == 0.9
    assert forward.summarise_pairs([pair(1, 5, done=False)])["forward_ratio"] is None


def test_keys_only_is_for_the_wan_leg():
    done = subprocess.run([sys.executable, "-m", "bench", "forward", "--keys-only"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--keys-only is for --wan" in done.stderr


def test_a_stall_is_under_a_tenth_of_the_median_for_five_seconds():
    median = 1_000_000  # B/s; a bin is 0.5 s: 500 kB at the median
    steady = {"done": True, "bins": [500_000] * 30}
    assert not forward._stalled(steady, median)
    slow = {"done": True, "bins": [500_000] * 10 + [40_000] * 10 + [500_000] * 10}
    assert forward._stalled(slow, median)  # 5 s at 8 %
    brief = {"done": True, "bins": [500_000] * 10 + [0] * 9 + [500_000] * 10}
    assert not forward._stalled(brief, median)  # 4.5 s of nothing is not yet a stall
    assert forward._stalled({"done": False, "bins": [500_000] * 30}, median)
