"""Real network shapes (issue 6, item 1): two daemons on two private hosts behind two
Linux NAT routers, in network namespaces made and removed by the test (toxbridge.testing.netns),
with tox-bootstrapd (TCP relay) and four extra DHT nodes on the "public" segment.

- cone NAT: the peers hole-punch and end on direct UDP;
- symmetric NAT: the peers stay on the TCP relay;
- UDP blocked (daemons with --no-udp): TCP relay only.

In each, a few MB of random frames go both ways, byte-exact and in order, and the apps
are told the link type (the 301 / ``link`` events' ``"link"`` field). Then whole nodes
(daemon + bridge_local) in the same shape: alice and bob chat, and a 20 MB file goes
upload -> bridge to bridge -> download with its md5 checked.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time

import pytest
import trio

from bridge_local.client import client_on
from bridge_local.files import download, send_file
from toxbridge.testing import App, DaemonProc, random_frames, stream_frames
from toxbridge.testing.netns import Topology, unavailable

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("netns")]



@pytest.fixture(scope="module", autouse=True)
def needs_netns():
    """Skip (with the reason) where NAT namespaces cannot be made: not root, no ip/iptables.
    A fixture, not a skipif: the probe makes a namespace, so only when the tests run."""
    why_not = unavailable()
    if why_not is not None:
        pytest.skip(f"NAT namespaces unavailable: {why_not}")

MB_EACH_WAY = 3_000_000
CONNECT_TIMEOUT = 90  # a friend connection takes ~10 s; over NAT and the relay it can take longer
LINK_SETTLE_TIMEOUT = 30  # after the channel opens over TCP, how long hole punching may take
TRANSFER_TIMEOUT = 60

# Found by this test (2026-11-22): behind symmetric NATs, in about 1 run of 4, the
# sending side's toxcore rate fell to its floor (~4.5 lossless packets/s) within ~10 s of
# the channel opening and stayed there. Since the link keeps toxcore's queue under 64
# packets and resets a crawling connection (2026-11-24, toxbridge/link.py, crawl.py) it
# has not been seen in 9 runs of both symmetric tests (to 2026-11-28), so it is no longer
# excused: a stall fails here like any other timeout.
# Found by this test (2026-12-02 to 12-04): over the TCP relay, one direction wedged for
# good: tox-bootstrapd reads only whole packets, and while our bytes kept arriving, the
# buffer holding a packet's start grew until its socket's receive memory was full (zero
# window). Caps on bytes in flight made it rarer (3 of 7 runs, then 1 of 18); flights that
# wait for all their acks (docs/wire.md §4.5, RELAY_FLIGHT) let the relay read to the end:
# 0 of 31 runs wedged since (2026-12-04).


def link_of(app: App) -> str | None:
    """The link type the app was last told (301 or ``link`` event)."""
    link = None
    for e in app.events:
        if e.get("code") == 301 or e.get("event") == "link":
            link = e.get("link")
    return link


def log_link(daemon: DaemonProc) -> str | None:
    """The link type in the daemon's log lines (``channel open (X)``, ``link is now X``)."""
    link = None
    for line in daemon.log:
        m = re.search(r"channel open \((\w+)\)|link is now (\w+)", line)
        if m:
            link = m.group(1) or m.group(2)
    return link


def links_seen(app: App) -> list[str]:
    return [e["link"] for e in app.events if e.get("code") == 301 or e.get("event") == "link"]


async def app_in(net: Topology, role: str, port: int) -> App:
    sock = await trio.to_thread.run_sync(net.connect, role, port)
    return App(trio.SocketStream(trio.socket.from_stdlib_socket(sock)))


@pytest.mark.parametrize("shape, expected_link", [
    ("cone", "UDP"),
    ("symmetric", "TCP"),
    ("no_udp", "TCP"),
])
def test_daemons_behind_nat_carry_frames_both_ways_and_report_the_link(shape, expected_link, tmp_path):
    trio.run(run_shape, shape, expected_link, tmp_path)


async def run_shape(shape: str, expected_link: str, tmp_path) -> None:
    extra = ["--no-udp"] if shape == "no_udp" else []
    with Topology(shape) as net:
        common = dict(network=net.bootstrap, secret="nat-secret")
        with DaemonProc(["--listen", *extra, *net.bootstrap_args()], tmp_path / "l.tox",
                        wrap=net.wrap("a"), **common) as listener, \
                DaemonProc(["--peer", listener.tox_id, *extra, *net.bootstrap_args()], tmp_path / "p.tox",
                           wrap=net.wrap("b"), **common) as peer:
            started = time.monotonic()
            a, b = await app_in(net, "a", listener.port), await app_in(net, "b", peer.port)
            try:
                with trio.fail_after(CONNECT_TIMEOUT):
                    await a.wait_event(code=301)
                    await b.wait_event(code=301)
                connect_s = time.monotonic() - started
                if expected_link == "UDP":
                    # The channel may open over the relay first; hole punching follows.
                    with trio.fail_after(LINK_SETTLE_TIMEOUT):
                        while link_of(a) != "UDP":
                            await a.wait_event(event="link")
                        while link_of(b) != "UDP":
                            await b.wait_event(event="link")
                settled_s = time.monotonic() - started
                ab, ba = random_frames(1, MB_EACH_WAY), random_frames(2, MB_EACH_WAY)
                with trio.fail_after(TRANSFER_TIMEOUT):  # normally 5-7 s
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(stream_frames, a, b, ab)
                        nursery.start_soon(stream_frames, b, a, ba)
                transfer_s = time.monotonic() - started - settled_s
                print(f"{shape}: channel open after {connect_s:.1f} s, links a={links_seen(a)} "
                      f"b={links_seen(b)} settled after {settled_s:.1f} s, "
                      f"{MB_EACH_WAY / 1e6:.0f} MB each way in {transfer_s:.1f} s")
                assert link_of(a) == expected_link and link_of(b) == expected_link, (links_seen(a), links_seen(b))
                if expected_link == "TCP":
                    assert "UDP" not in links_seen(a) + links_seen(b)
                for d in (listener, peer):  # the status in the daemon's log agrees
                    assert log_link(d) == expected_link, d.log[-20:]
                    # and no direction went silent (the stall watchdog would have renewed
                    # the connection within the time limit: a relay wedged by a burst)
                    assert not [line for line in d.log if "acknowledged nothing" in line]
            except BaseException:
                for name, d in (("listener", listener), ("peer", peer)):  # shown on failure
                    print(f"--- {name} log (last 60 lines)", *d.log[-60:], sep="\n")
                raise
            finally:
                await a.aclose()
                await b.aclose()


FILE_BYTES = 20_000_000
FILE_TIMEOUT = 240  # over the relay (its window, docs/wire.md §4.5), 20 MB take ~25 s


@pytest.mark.parametrize("shape", [
    "cone", "symmetric", "no_udp"])
def test_nodes_behind_nat_chat_and_move_a_20_mb_file(shape, tmp_path):
    trio.run(run_nodes, shape, tmp_path)


def random_file(path, size: int) -> str:
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        for _ in range(0, size, 1 << 20):
            block = os.urandom(min(1 << 20, size - f.tell()))
            f.write(block)
            md5.update(block)
    return md5.hexdigest()


async def client_in(net: Topology, role: str, port: int, name: str):
    sock = await trio.to_thread.run_sync(net.connect, role, port)
    return client_on(trio.SocketStream(trio.socket.from_stdlib_socket(sock)), name)


async def run_nodes(shape: str, tmp_path) -> None:
    extra = ["--no-udp"] if shape == "no_udp" else []
    src = tmp_path / "twenty.bin"
    md5 = random_file(src, FILE_BYTES)
    with Topology(shape) as net:
        common = dict(network=net.bootstrap, secret="nat-secret", raw=False)
        with DaemonProc(["--listen", *extra, *net.bootstrap_args()], tmp_path / "l.tox",
                        wrap=net.wrap("a"), **common) as listener, \
                DaemonProc(["--peer", listener.tox_id, *extra, *net.bootstrap_args()],
                           tmp_path / "p.tox", wrap=net.wrap("b"), **common) as peer:
            try:
                async with await client_in(net, "a", listener.app_port, "alice") as alice, \
                        await client_in(net, "b", peer.app_port, "bob") as bob:
                    with trio.fail_after(CONNECT_TIMEOUT):
                        await alice.wait_event(command=301, token=bob.token)
                    reply = await alice.send(bob.token, f"hello through {shape} NAT")
                    assert reply["code"] == 201, reply
                    with trio.fail_after(30):
                        got = await bob.wait_event(command=2003)
                    assert got["msg"] == f"hello through {shape} NAT" and got["srctoken"] == alice.token
                    started = time.monotonic()
                    with trio.fail_after(FILE_TIMEOUT):
                        ref, reply = await send_file(alice, bob.token, src)
                        assert reply["code"] == 201, reply
                        await bob.wait_event(command=5003, fileid=ref.fileid)
                        moved_s = time.monotonic() - started
                        path = await download(bob, ref.fileid, tmp_path / "got")
                    digest = hashlib.md5(path.read_bytes()).hexdigest()
                    assert digest == md5
                    print(f"{shape}: chat ok; 20 MB upload + bridge to bridge in {moved_s:.1f} s, "
                          f"md5 equal; daemon links: {log_link(listener)}, {log_link(peer)}")
            except BaseException:
                for name, d in (("listener", listener), ("peer", peer)):
                    print(f"--- {name} log (last 60 lines)", *d.log[-60:], sep="\n")
                raise


def test_topology_is_isolated_and_leaves_nothing_behind():
    def host_links() -> str:
        return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=15).stdout

    before_links = host_links()
    with Topology("cone", dht_nodes=0) as net:
        names = list(net.ns.values())
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=15).stdout
        assert all(n in listed for n in names)
        assert host_links() == before_links  # no veth end in the host's namespace
        # A private host's only route is its own router; the router has none past 10.77.0.0/24.
        routes = subprocess.run([*net.wrap("r1"), "ip", "route"], capture_output=True, text=True,
                                timeout=15).stdout
        assert "default" not in routes
        # Stateful NAT: the public side cannot open a connection to a private host.
        probe = subprocess.run([*net.wrap("pub"), "python3", "-c",
                                "import socket,sys; s=socket.socket(); s.settimeout(2)\n"
                                "try: s.connect(('10.77.1.2', 9)); sys.exit(1)\n"
                                "except OSError: sys.exit(0)"], timeout=15)
        assert probe.returncode == 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=15).stdout
    assert not any(n in listed for n in names)
    assert host_links() == before_links
