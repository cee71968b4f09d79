"""`toxbridge status` against live nodes on the session's private Tox network: the peer
online, its link type, counters that grow when frames cross, a round trip measured from
the Link's acks; a second node on the same data dir refused; bridge_local's transfers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import trio

from toxbridge.framing import encode_data
from toxbridge.testing import App, DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("daemons")]


def status(data_dir, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toxbridge", "status", "--data-dir", str(data_dir),
                           *extra], capture_output=True, text=True, timeout=30)


def status_json(data_dir) -> dict:
    done = status(data_dir, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def peers(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toxbridge", "peers", *args, "--data-dir",
                           str(data_dir)], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def pair(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("st")
    ld, pd = d / "l.data", d / "p.data"
    with DaemonProc(["--listen", "--data-dir", str(ld)], d / "l.tox", tox_network) as listener:
        with DaemonProc(["--peer", listener.tox_id, "--data-dir", str(pd)], d / "p.tox",
                        tox_network) as peer:
            yield listener, ld, peer, pd


async def test_status_json_shows_the_peer_online_and_counters_growing(pair):
    listener, ld, peer, pd = pair
    sock = ld / "control.sock"
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    a, b = await App.connect(listener.port), await App.connect(peer.port)
    try:
        await online_and_counting(a, b, listener, ld, peer, pd)
    finally:  # a failed check must not leave the sockets to the next test's warnings
        await a.aclose()
        await b.aclose()


async def online_and_counting(a, b, listener, ld, peer, pd) -> None:
    with trio.fail_after(90):
        online = await a.wait_event(code=301)
        await b.wait_event(code=301)
    # The DHT line is toxcore's own connection (its onion's), which may lag the friend's
    # or drop for a while on a busy machine; it must say so, then come back.
    with trio.fail_after(60):
        while (before := await trio.to_thread.run_sync(status_json, ld))["dht"] == "NONE":
            await trio.sleep(0.5)
    assert before["tox_id"] == listener.tox_id and before["mode"] == "listen"
    assert before["dht"] in ("UDP", "TCP")
    [p] = before["peers"]
    assert p["online"] is True and p["state"] == "open"
    assert p["link"] in ("UDP", "TCP") and online["link"] in ("UDP", "TCP")
    assert p["public_key"] == peer.tox_id[:64]
    assert set(p["queues"]) >= {"outbound_frames", "inbound_runs", "link_in_flight_bytes",
                                "link_backlog_bytes"}
    assert "transfers" not in before  # --raw: no bridge_local in this process

    frames = [bytes([i]) * 1000 for i in range(200)]
    await a.stream.send_all(b"".join(encode_data(f) for f in frames))
    with trio.fail_after(60):
        for expected in frames:
            assert await b.next_data() == expected
    after = await trio.to_thread.run_sync(status_json, ld)
    theirs = await trio.to_thread.run_sync(status_json, pd)
    [q] = after["peers"]
    assert q["bytes_sent"] >= p["bytes_sent"] + 200 * 1002
    assert q["frames_sent"] == p["frames_sent"] + 200
    assert q["rate_sent"] > 0
    assert q["rtt_ms"] is not None and 0 < q["rtt_ms"] < 5000  # from the acks of those bytes
    assert after["seq"] > before["seq"]
    [r] = theirs["peers"]
    assert r["public_key"] == listener.tox_id[:64] and r["online"]
    assert r["bytes_received"] >= 200 * 1002
    assert r["frames_received"] >= 200

    human = await trio.to_thread.run_sync(status, ld)
    assert human.returncode == 0, human.stderr
    assert listener.tox_id in human.stdout and "peers" in human.stdout

    listed = await trio.to_thread.run_sync(peers, ld, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [s] = json.loads(listed.stdout)
    assert s["public_key"] == peer.tox_id[:64] and s["online"] and s["frames_sent"] >= 200
    shown = await trio.to_thread.run_sync(peers, ld, "list")
    assert shown.returncode == 0 and peer.tox_id[:12] in shown.stdout
    for verb, why in (("add", "Tox ID must be 38 bytes"), ("remove", "neither a public key")):
        refused = await trio.to_thread.run_sync(peers, ld, verb, "ABCD")
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1
        assert why in refused.stderr


def test_a_second_node_on_the_same_data_dir_is_refused_in_one_line(pair, tox_network, tmp_path):
    listener, ld, _, _ = pair
    done = subprocess.run(
        [sys.executable, "-m", "toxbridge", "--listen", "--secret", "s", "--raw",
         "--profile", str(tmp_path / "other.tox"), "--data-dir", str(ld),
         "--bootstrap", str(tox_network)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("toxbridge: a node is already running") and done.stderr.count("\n") == 1
    assert not (tmp_path / "other.tox").exists()  # stopped before it opened a profile
    assert status_json(ld)["tox_id"] == listener.tox_id  # the live node kept its socket


def test_a_node_with_bridge_local_reports_its_transfers(tox_network, tmp_path):
    with DaemonProc(["--listen"], tmp_path / "n.tox", tox_network, raw=False) as node:
        got = status_json(tmp_path / "n.bridge")  # the default data dir, next to the profile
        assert got["tox_id"] == node.tox_id
        assert got["peers"] == []  # a listener no peer has found yet
        assert got["transfers"] == []


def test_after_kill_9_the_stale_socket_is_replaced_by_the_restarted_node(tox_network, tmp_path):
    import signal

    with DaemonProc(["--listen"], tmp_path / "k.tox", tox_network) as first:
        first.signal(signal.SIGKILL)
        first.process.wait(10)
    sock = tmp_path / "k.bridge" / "control.sock"
    assert sock.exists()  # left behind: nobody answers there now
    done = status(tmp_path / "k.bridge")
    assert done.returncode == 2 and "no node is running" in done.stderr
    with DaemonProc(["--listen"], tmp_path / "k.tox", tox_network) as again:
        assert again.tox_id == first.tox_id
        assert status_json(tmp_path / "k.bridge")["tox_id"] == again.tox_id
    assert not sock.exists()  # a clean stop removes it


def test_a_node_as_the_system_unit_runs_it_passphrase_file_and_journal(tox_network, tmp_path):
    """The unit's ExecStart: --passphrase-file from a credentials dir, logs to a journal
    stream (no timestamps of our own); the profile is encrypted with that passphrase."""
    from toxbridge.tox import is_encrypted, load_profile

    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "passphrase").write_text("from a credential\n")
    state = tmp_path / "state"
    env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
    cmd = [sys.executable, "-m", "toxbridge", "--listen", "--secret", "s", "--raw",
           "--profile", str(state / "profile.tox"), "--data-dir", str(state / "profile.bridge"),
           "--passphrase-file", str(creds / "passphrase"), "--bootstrap", str(tox_network)]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tox_id = process.stdout.readline().split()[1]
        process.stdout.readline()  # bridge ...
        assert status_json(state / "profile.bridge")["tox_id"] == tox_id
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert err and all(line.startswith("toxbridge") for line in err.splitlines())  # no time stamps
    data = (state / "profile.tox").read_bytes()
    assert is_encrypted(data)
    assert load_profile(state / "profile.tox", "from a credential") is not None
    assert not (state / "profile.bridge" / "control.sock").exists()
