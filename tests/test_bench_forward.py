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
                   "--keys-only"):
        assert option in done.stdout


def test_a_bad_count_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "bench", "forward", "--count", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--count must be positive" in done.stderr


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
