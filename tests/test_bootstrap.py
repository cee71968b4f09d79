"""Bootstrap degrades, never dies: the retry schedule (pure, tables); each node handed to
toxcore on its own; inside a network namespace that has only ``lo`` (nothing can leave the
machine), bad and unresolvable nodes are warnings that name them, and none usable is one
line and exit status 2; and a node whose only bootstrap node starts after it still gets
into the (private, 127.0.0.1) network."""

from __future__ import annotations

import os
import socket
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toxbridge.bootstrap import Refused, RetrySchedule, add_nodes, describe_refusals
from toxbridge.network import BootstrapDaemon, NodeInfo, free_port, loopback_options, write_bootstrapd_config
from toxbridge.testing import DaemonProc, terminate
from toxbridge.tox import Tox

KEY = bytes.fromhex("AB" * 32)
BAD_NODES = ["nonexistent.invalid:33445:" + "AB" * 32, "300.1.2.3:33445:" + "CD" * 32]
IP = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")


# -- the schedule -----------------------------------------------------------------------

def retry_times(schedule: RetrySchedule, until: float, step: float = 0.5) -> list[float]:
    """The times at which a loop ticking every ``step`` s would retry."""
    times, now = [], 0.0
    while now <= until:
        if schedule.due(now):
            schedule.tried(now)
            times.append(now)
        now += step
    return times


@pytest.mark.parametrize("first, longest, until, expected", [
    (5, 60, 200, [5, 15, 35, 75, 135, 195]),  # 10, 20, 40, then capped at 60
    (1, 4, 20, [1, 3, 7, 11, 15, 19]),
    (2, 2, 9, [2, 4, 6, 8]),
])
def test_retries_back_off_to_a_bound(first, longest, until, expected):
    assert retry_times(RetrySchedule(0.0, first, longest), until) == expected


def test_no_retry_while_connected_and_the_backoff_starts_over_after_a_loss():
    s = RetrySchedule(0.0, 5, 60)
    retry_times(s, 40)  # retries at 5, 15, 35: the next delay is 40
    assert s.connection(True, 41.0) == 41.0  # how long it took
    assert not s.due(1000.0) and s.next_retry() is None
    assert s.connection(True, 42.0) is None  # UDP -> TCP: no news
    s.connection(False, 100.0)
    assert s.attempts == 0 and not s.due(104.9) and s.due(105.0)
    s.tried(105.0)
    assert s.next_retry() == 115.0


def test_one_warning_per_time_without_a_connection():
    s = RetrySchedule(0.0, warn_after=30)
    assert [t for t in range(0, 100, 5) if s.overdue(t)] == [30]
    s.connection(True, 100.0)
    assert not s.overdue(200.0)
    s.connection(False, 200.0)
    assert [t for t in range(200, 300, 5) if s.overdue(t)] == [230]


def test_a_bad_schedule_is_refused():
    with pytest.raises(ValueError):
        RetrySchedule(0.0, first=10, longest=5)


# -- each node on its own (no packet leaves loopback: an IPv6 literal with IPv6 off
#    is refused without any lookup) -----------------------------------------------------

def test_each_node_is_handed_to_toxcore_on_its_own():
    good = NodeInfo("127.0.0.1", free_port(), KEY, tcp_port=free_port())
    v6 = NodeInfo("::1", 33445, KEY)  # a DHT node toxcore refuses with IPv6 off
    with Tox(loopback_options()) as tox:
        usable, refused = add_nodes(tox, [v6, good], [])
    assert usable == 1
    assert refused == [Refused("::1", 33445, "DHT node", "BOOTSTRAP_BAD_HOST")]
    assert describe_refusals(refused) == "DHT node ::1:33445 (BAD_HOST)"
    assert describe_refusals(refused * 5, limit=2).endswith("and 3 more")


# -- real nodes in a namespace with only lo -------------------------------------------

@pytest.fixture
def lo_only_netns():
    """A fresh network namespace with only ``lo`` (up): nothing run in it can reach
    another machine, so a bad node's DNS lookup or packet goes nowhere."""
    if os.geteuid() != 0 or IP is None:
        pytest.skip("network namespaces need root and ip(8)")
    name = f"tbboot{os.getpid()}{secrets.token_hex(2)}"
    subprocess.run([IP, "netns", "add", name], check=True, timeout=15)
    try:
        subprocess.run([IP, "netns", "exec", name, IP, "link", "set", "lo", "up"], check=True, timeout=15)
        links = subprocess.run([IP, "-netns", name, "-o", "link"], capture_output=True, text=True,
                               check=True, timeout=15).stdout.splitlines()
        assert len(links) == 1 and ": lo:" in links[0], links
        yield name
    finally:
        subprocess.run([IP, "netns", "del", name], timeout=15)


def wait_for_line(proc: DaemonProc, text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(proc.log):
            if text in line:
                return line
        assert proc.process.poll() is None, f"exited {proc.process.returncode}:\n" + "\n".join(proc.log)
        time.sleep(0.2)
    raise AssertionError(f"no line with {text!r} in {timeout} s:\n" + "\n".join(proc.log))


@pytest.mark.tox
def test_bad_and_unresolvable_nodes_are_warnings_and_the_good_one_connects(lo_only_netns, tmp_path):
    wrap = [IP, "netns", "exec", lo_only_netns]
    boot = subprocess.Popen([*wrap, sys.executable, "-m", "toxbridge", "bootstrap-node"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = NodeInfo.parse(boot.stdout.readline())
        tcp = int(boot.stderr.readline().split()[-1])  # "TCP relay on port N"
        network = NodeInfo(info.host, info.port, info.public_key, tcp)
        args = ["--listen", *(a for node in BAD_NODES for a in ("--bootstrap", node))]
        with DaemonProc(args, tmp_path / "a.tox", network, wrap=wrap) as node:
            for bad in ("nonexistent.invalid:33445", "300.1.2.3:33445"):
                assert "WARNING" in wait_for_line(node, f"skipping the DHT node {bad}", 10)
            wait_for_line(node, "connected to the Tox network", 60)
            assert node.process.poll() is None
    finally:
        terminate(boot)
        boot.stdout.close()
        boot.stderr.close()


def test_no_usable_bootstrap_node_is_one_line_and_exit_2(lo_only_netns, tmp_path):
    cmd = [IP, "netns", "exec", lo_only_netns, sys.executable, "-m", "toxbridge", "--listen",
           "--secret", "s", "--raw", "--profile", str(tmp_path / "p.tox"),
           *(a for node in BAD_NODES for a in ("--bootstrap", node))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert "Traceback" not in r.stderr
    assert lines[-1].startswith("toxbridge: no usable bootstrap node: toxcore refused each one: "
                                "DHT node nonexistent.invalid:33445 (BAD_HOST), "
                                "DHT node 300.1.2.3:33445 (BAD_HOST)"), lines
    assert [line for line in lines if "toxbridge:" in line and "WARNING" not in line] == lines[-1:]
    assert not (tmp_path / "p.tox").exists()  # nothing half-made


# -- late bootstrap (private network on 127.0.0.1) --------------------------------------

class KeptKeyDaemon(BootstrapDaemon):
    """tox-bootstrapd whose key and ports survive a restart (its files in ``root``)."""

    def __init__(self, root: Path, port: int, tcp_port: int) -> None:
        super().__init__(port, tcp_port)
        self.root = root

    def _config(self, _tmp: Path, port: int, tcp_port: int) -> Path:
        return write_bootstrapd_config(self.root, port, tcp_port)


@pytest.mark.tox
def test_a_node_whose_bootstrap_node_starts_later_still_connects(tmp_path):
    root = tmp_path / "bootstrapd"
    root.mkdir()
    port, tcp = free_port(), free_port(socket.SOCK_STREAM)
    first = KeptKeyDaemon(root, port, tcp).start()  # once, to learn its key
    network = first.info
    first.stop()
    with DaemonProc(["--listen"], tmp_path / "a.tox", network) as listener, \
            DaemonProc(["--peer", listener.tox_id], tmp_path / "b.tox", network) as peer:
        time.sleep(3)  # both started, and their first bootstrap went nowhere
        assert not any("connected to the Tox network" in line for line in listener.log + peer.log)
        late = KeptKeyDaemon(root, port, tcp).start()
        try:
            assert late.info.public_key == network.public_key
            for node in (listener, peer):
                wait_for_line(node, "connected to the Tox network", 60)
            for node in (listener, peer):
                wait_for_line(node, "channel open", 90)
            assert any("bootstrap retry" in line for line in listener.log)
        finally:
            late.stop()
