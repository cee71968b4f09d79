"""The README's demo command, run small: it must tell its whole story and stop everything
(the channel, whole nodes, and port forwarding through -L and -W)."""

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("demo")]


def test_the_demo_runs_end_to_end_and_says_what_it_showed():
    done = subprocess.run([sys.executable, "-m", "toxbridge", "demo", "--mb", "2"],
                          capture_output=True, text=True, timeout=420)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for line in ("channel open after", "md5 equal", "alice sees bob online",
                 "code 201", "arrives whole: True", "code 204 (stored)",
                 "carol logs in again and gets 'for when you are back'",
                 "alice uploads to her bridge", "(event 5003)", "bob downloads from his bridge",
                 "bob saved demo-file.bin: md5 equal",
                 "3. port forwarding", "-> 200,", "sha256 equal", "again on the live link: 200",
                 "< 'echo: hello over -W'", "< 'echo: 你好'", "< 'echo: exit'",
                 "the -W node exited with status 0",
                 "stopped both daemons and the bootstrap",
                 "What it showed"):
        assert line in out, f"{line!r} missing from:\n{out}"
    assert out.split("What it showed")[0].count("md5 equal") == 3  # both streams and the file
