"""bridge_local across many bridges (issue 14, part 5): three nodes peered pairwise (a
triangle), real daemons on the private Tox network, a bridge_local per node in this test's
trio loop.

Proved here: where a user is reachable over two paths (direct, and through the third node)
every message arrives once and over the direct peer (the third node relays nothing and
its history has none of it), a file too (the third node's file store never holds it); after
one edge is cut (``peers remove`` on both ends) messages between its two ends go the
two-hop way through the third node, still once each, and nothing loops. All the while 200
strangers ask the three nodes for friendship: none is accepted, and each node's peers are
the other two (one, after the cut)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import trio

from bridge_local.client import open_client
from bridge_local.files import download, send_file
from toxbridge.testing import DaemonProc

from .mesh import collect, md5_of, no_more_messages, peers_cli, random_file, start_bridge, \
    status_peers, wait_users
from .strangers import STRANGERS, accepted_keys, flood_of_strangers, ignored_keys, requests, \
    wait_refused

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("triangle"), pytest.mark.timeout(300)]

N = 10  # messages per ordered pair of users
SECRET = "s3cret"  # DaemonProc's: the strangers say it wrong


async def wait_sessions(bridge, keys: list[str], up: bool = True, timeout: float = 90) -> None:
    """Until the bridge's sessions with these peer bridges (keys in hex) are up (or down)."""
    with trio.fail_after(timeout):
        while True:
            core = bridge.core
            if core is not None:
                states = [(s := core.peer_session(bytes.fromhex(k))) is not None and s.peer_up
                          for k in keys]
                if all(x == up for x in states):
                    return
            await trio.sleep(0.2)


async def exchange(pairs, senders: dict, receivers: dict, tag: str) -> None:
    """N messages for every (sender, target) in ``pairs``; every target gets each sender's
    N in order, nothing twice."""
    for src, dst in pairs:
        for i in range(N):
            reply = await senders[src].send(receivers[dst].token, f"{tag}{src}>{dst}:{i}")
            assert reply["code"] == 201, reply
    for dst in {d for _, d in pairs}:
        sources = [s for s, d in pairs if d == dst]
        got = await collect(receivers[dst], N * len(sources), 60)
        for src in sources:
            mine = [m["msg"] for m in got if m["srctoken"] == senders[src].token]
            assert mine == [f"{tag}{src}>{dst}:{i}" for i in range(N)], (src, dst, got)
        extra = await no_more_messages(receivers[dst], 1.0)
        assert extra is None, f"a message arrived twice: {extra}"


async def test_a_triangle_delivers_once_over_the_direct_peer_and_two_hops_after_a_cut(
        own_network, tmp_path, nursery):
    tox_network = own_network
    with ExitStack() as procs:
        def node(args: list[str], name: str) -> DaemonProc:
            return procs.enter_context(DaemonProc(args, tmp_path / f"{name}.tox", tox_network,
                                                  verbose=False))
        a = node(["--listen"], "a")
        b = node(["--listen", "--peer", a.tox_id], "b")
        c = node(["--peer", a.tox_id, "--peer", b.tox_id], "c")
        started = trio.current_time()
        async with flood_of_strangers(tox_network, [a.tox_id, b.tox_id, c.tox_id],
                                      requests(SECRET, allow_list=False)) as flood:
            await deliver_once_and_after_a_cut(a, b, c, tmp_path, nursery)
            checked = trio.current_time()
            # The flood reached the nodes: half of the strangers refused, some by each.
            per_key = await wait_refused(flood, [a, b, c], STRANGERS // 2, 120)
            waited = trio.current_time() - checked
        assert flood.accepted == []
        by_node = [len(set(ignored_keys(n))) for n in (a, b, c)]
        print(f"{len(per_key)} of {STRANGERS} strangers refused by the three nodes "
              f"({sum(per_key.values())} log lines; by a, b, c: {by_node}); the test's checks "
              f"took {checked - started:.1f} s with the flood, then {waited:.1f} s more until "
              f"half of them were refused; {flood.rounds} rounds of iterating them, "
              f"{flood.rebootstraps} bootstraps again")
        ka, kb, kc = (n.tox_id[:64] for n in (a, b, c))
        # Each node accepted the real peers alone (c only dials); after the cut b and c
        # have a alone.
        assert sorted(accepted_keys(a)) == sorted([kb, kc])
        assert accepted_keys(b) == [kc] and accepted_keys(c) == []
        for name, want in (("a", [kb, kc]), ("b", [ka]), ("c", [ka])):
            peers = await trio.to_thread.run_sync(status_peers, tmp_path / f"{name}.tox")
            assert sorted(p["public_key"] for p in peers) == sorted(want), (name, peers)


async def deliver_once_and_after_a_cut(a: DaemonProc, b: DaemonProc, c: DaemonProc, tmp_path,
                                       nursery) -> None:
    ka, kb, kc = (n.tox_id[:64] for n in (a, b, c))
    ba, bb, bc = [await start_bridge(nursery, n.port, tmp_path / f"bridge-{name}")
                  for n, name in ((a, "a"), (b, "b"), (c, "c"))]
    await wait_sessions(ba, [kb, kc])
    await wait_sessions(bb, [ka, kc])
    await wait_sessions(bc, [ka, kb])
    async with open_client(ba.app_port, name="alice") as alice, \
            open_client(bb.app_port, name="bob") as bob, \
            open_client(bc.app_port, name="carol") as carol:
        clients = {"a": alice, "b": bob, "c": carol}
        for me, client in clients.items():
            seen = await wait_users(client, {"alice", "bob", "carol"})
            assert len(seen) == 3, seen  # each user once
            assert [seen[n]["bridge"] for n in ("alice", "bob", "carol")] == [ka, kb, kc]

        # Every user to every other, each over the direct peer.
        every = [(s, d) for s in "abc" for d in "abc" if s != d]
        await exchange(every, clients, clients, "d")
        for bridge in (ba, bb, bc):
            st = bridge.core.statistics()
            assert (st["relayed"], st["duplicates"], st["peer_errors"]) == (0, 0, 0), st
            assert st["sent_peer"] == st["received_peer"] == 2 * N, st
        # The third node never saw the others' messages (its history has none).
        for bridge, x, y in ((ba, bob, carol), (bb, alice, carol), (bc, alice, bob)):
            assert bridge.core.store.history(x.token, y.token, 100) == []

        # A file alice -> carol: direct, the third node's file store never has it.
        src = tmp_path / "f.bin"
        md5 = random_file(src, 2_000_000)
        with trio.fail_after(120):
            ref, reply = await send_file(alice, carol.token, src)
            assert reply["code"] == 201
            assert (await carol.wait_event(command=2003))["fileid"] == ref.fileid
            await carol.wait_event(command=5003, fileid=ref.fileid)
            path = await download(carol, ref.fileid, tmp_path / "got")
        assert md5_of(path) == md5
        assert bb.core.files.store.get(ref.fileid) is None
        assert bb.core.statistics()["relayed"] == 0

        # Cut the edge b-c on both ends: b and c now reach each other through a.
        for profile, key in ((tmp_path / "c.tox", kb), (tmp_path / "b.tox", kc)):
            removed = await trio.to_thread.run_sync(peers_cli, profile, "remove", key)
            assert removed.returncode == 0, removed.stderr
        await wait_sessions(bb, [kc], up=False, timeout=60)
        await wait_sessions(bc, [kb], up=False, timeout=60)
        for client in clients.values():
            assert len(await wait_users(client, {"alice", "bob", "carol"})) == 3
        relayed_before = ba.core.statistics()["relayed"]
        await exchange([("b", "c"), ("c", "b")], clients, clients, "h")
        assert ba.core.statistics()["relayed"] - relayed_before == 2 * N
        assert ba.core.statistics()["duplicates"] == 0
        for bridge in (bb, bc):  # the ends sent and received; they relayed nothing
            st = bridge.core.statistics()
            assert (st["relayed"], st["duplicates"], st["peer_errors"]) == (0, 0, 0), st
        assert len(ba.core.store.history(bob.token, carol.token, 100)) == 2 * N
        # a and the ends: still direct (b relays nothing of alice's).
        await exchange([("a", "b"), ("a", "c")], clients, clients, "x")
        assert ba.core.statistics()["relayed"] - relayed_before == 2 * N
        assert bb.core.statistics()["relayed"] == bc.core.statistics()["relayed"] == 0
    for bridge in (ba, bb, bc):
        with trio.fail_after(10):
            await bridge.stop()
