"""bridge_local across many bridges (issue 14, parts 4 and 5): a hub and three spokes that
each peer only with the hub, real daemons on the private Tox network. The hub and two
spokes run their bridge_local in this test's trio loop (over streams.sock); the third spoke
is a whole node (daemon and bridge_local in one process), so that it can be killed -9. The
four nodes are shared by the module's tests (a friend connection takes ~10 s).

Proved here: users of every spoke see each other with their bridge; messages both ways
through the hub, each arriving once; offline delivery through the hub (store and
forward); a 50 MB file spoke to spoke through the hub with md5 equal; one spoke killed -9
and restarted while the other two keep chatting and a file between them keeps moving: its
users are back after the restart, and what was sent to them meanwhile arrives once. While
the last test runs, 200 strangers ask the hub for friendship: none is accepted, and the
hub's peers are the three spokes alone. The module has a network of its own, and the
flood comes last on it (conftest.tox_network says why)."""

from __future__ import annotations

import signal
from contextlib import ExitStack

import pytest
import trio

from bridge_local.client import open_client
from bridge_local.files import download, send_file
from toxbridge.control.server import request as control_request
from toxbridge.testing import DaemonProc

from .mesh import MB, md5_of, random_file, start_bridge, status_peers, wait_gone, wait_users
from .strangers import STRANGERS, accepted_keys, flood_of_strangers, requests, wait_refused

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("hub"), pytest.mark.timeout(600)]

SECRET = "s3cret"  # DaemonProc's: the strangers say it wrong


@pytest.fixture(scope="module")
def mesh(module_network, tmp_path_factory):
    """{"hub", "s1", "s2", "s3"}: DaemonProcs; s3 a whole node (its app port: s3.app_port),
    started again in place by :func:`start_s3`."""
    d = tmp_path_factory.mktemp("hub")
    nodes: dict = {"dir": d, "net": module_network}
    with ExitStack() as procs:
        hub = nodes["hub"] = procs.enter_context(
            DaemonProc(["--listen"], d / "hub.tox", module_network, verbose=False))
        for name in ("s1", "s2"):
            nodes[name] = procs.enter_context(
                DaemonProc(["--peer", hub.tox_id], d / f"{name}.tox", module_network, verbose=False))
        nodes["s3"] = start_s3(nodes)
        try:
            yield nodes
        finally:
            nodes["s3"].stop()


def start_s3(nodes: dict) -> DaemonProc:
    return DaemonProc(["--peer", nodes["hub"].tox_id], nodes["dir"] / "s3.tox", nodes["net"],
                      verbose=False, raw=False)


async def diagnose(mesh: dict, bh) -> str:
    """The hub's peers (its daemon's view) and sessions (its bridge's), and s3's log."""
    def peers() -> object:
        try:
            return control_request(mesh["dir"] / "hub.bridge" / "control.sock",
                                   "status")["peers"]
        except Exception as exc:  # a diagnosis must not raise
            return repr(exc)
    return (f"hub peers: {await trio.to_thread.run_sync(peers)}; hub bridge: "
            f"{bh.core.statistics()}; s3 log: {mesh['s3'].log[-30:]}")


class Inbox:
    """Every event of one client, as it arrives, with its time (a task reads them)."""

    def __init__(self, client) -> None:
        self.client = client
        self.events: list[tuple[float, dict]] = []
        self._changed = trio.Event()

    async def run(self) -> None:
        async for event in self.client:
            self.events.append((trio.current_time(), event))
            self._changed.set()
            self._changed = trio.Event()

    def messages(self, prefix: str = "", since: float = 0.0, until: float = float("inf")
                 ) -> list[str]:
        """The 2003s whose text starts with ``prefix``, arrived in [since, until)."""
        return [e["msg"] for t, e in self.events if e.get("command") == 2003
                and e.get("msg", "").startswith(prefix) and since <= t < until]

    async def wait(self, predicate, timeout: float) -> None:
        with trio.fail_after(timeout):
            while not predicate(self):
                await self._changed.wait()

    async def wait_event(self, timeout: float, **match) -> dict:
        def found(_) -> bool:
            return any(all(e.get(k) == v for k, v in match.items()) for _, e in self.events)
        await self.wait(found, timeout)
        return next(e for _, e in self.events if all(e.get(k) == v for k, v in match.items()))


async def test_three_spokes_one_killed_and_restarted_while_the_others_chat_and_move_a_file(
        mesh, tmp_path, nursery):
    bh, b1, b2 = [await start_bridge(nursery, mesh[n].port, tmp_path / f"b-{n}")
                  for n in ("hub", "s1", "s2")]
    async with trio.open_nursery() as tasks:
        try:
            await three_spokes(mesh, tmp_path, tasks, bh, b1, b2)
        finally:  # the readers and chatters end before their clients close
            tasks.cancel_scope.cancel()
    for b in (bh, b1, b2):
        with trio.fail_after(10):
            await b.stop()


async def three_spokes(mesh, tmp_path, tasks: trio.Nursery, bh, b1, b2) -> None:
    keys = {n: mesh[n].tox_id[:64] for n in ("hub", "s1", "s2", "s3")}
    where = {"hal": "hub", "u1": "s1", "u2": "s2", "u3": "s3"}
    async with open_client(bh.app_port, name="hal") as hal, \
            open_client(b1.app_port, name="u1") as u1, \
            open_client(b2.app_port, name="u2") as u2, \
            open_client(mesh["s3"].app_port, name="u3") as u3:
        clients = {"hal": hal, "u1": u1, "u2": u2, "u3": u3}
        inbox = {n: Inbox(c) for n, c in clients.items()}
        for box in inbox.values():
            tasks.start_soon(box.run)
        for client in clients.values():  # every user, each once, on its own bridge
            seen = await wait_users(client, set(where))
            assert {n: u["bridge"] for n, u in seen.items()} == \
                {n: keys[node] for n, node in where.items()}, seen
        tokens = {n: c.token for n, c in clients.items()}

        # Spoke to spoke, every way, through the hub: once each, in order.
        pairs = [(a, b) for a in ("u1", "u2", "u3") for b in ("u1", "u2", "u3") if a != b]
        relayed = bh.core.statistics()["relayed"]
        for a, b in pairs:
            for i in range(5):
                assert (await clients[a].send(tokens[b], f"m{a}{b}-{i}"))["code"] == 201
        for a, b in pairs:
            await inbox[b].wait(lambda box, p=f"m{a}{b}-": len(box.messages(p)) >= 5, 60)
        await trio.sleep(1)
        for a, b in pairs:
            assert inbox[b].messages(f"m{a}{b}-") == [f"m{a}{b}-{i}" for i in range(5)]
        assert bh.core.statistics()["relayed"] - relayed == 30

        # A file u1 -> u2 through the hub, and chat between them, while s3 is killed -9.
        src = tmp_path / "f.bin"
        md5 = random_file(src, 20 * MB)
        ref, reply = await send_file(u1, tokens["u2"], src)
        assert reply["code"] == 201
        stop = trio.Event()
        sent = {"u1": 0, "u2": 0}
        codes: list[int] = []
        stopped = {"u1": trio.Event(), "u2": trio.Event()}

        async def chatter(me: str, other: str) -> None:
            try:
                while not stop.is_set():
                    reply = await clients[me].send(tokens[other], f"c{me}-{sent[me]}")
                    codes.append(reply["code"])
                    sent[me] += 1
                    await trio.sleep(0.2)
            finally:
                stopped[me].set()
        tasks.start_soon(chatter, "u1", "u2")
        tasks.start_soon(chatter, "u2", "u1")
        await trio.sleep(1)
        mesh["s3"].signal(signal.SIGKILL)
        await trio.to_thread.run_sync(mesh["s3"].process.wait)
        killed = trio.current_time()
        # Sent to u3 while its node is dead: kept (at the hub, or at s3 if s3 acked them).
        for i in range(5):
            assert (await hal.send(tokens["u3"], f"qh{i}"))["result"] is True
            assert (await u1.send(tokens["u3"], f"q1{i}"))["result"] is True
        await trio.sleep(2)
        # In this thread (it blocks the loop ~1 s): a child's PR_SET_PDEATHSIG fires when
        # the *thread* that started it ends, and trio's worker threads end after ~10 s idle.
        mesh["s3"] = start_s3(mesh)
        restarted = trio.current_time()
        async with open_client(mesh["s3"].app_port, name="u3") as u3b:
            assert u3b.token == tokens["u3"]  # the same user: the bridge's key and the name
            back = Inbox(u3b)
            tasks.start_soon(back.run)
            try:
                await back.wait(lambda b: len(b.messages("qh")) >= 5
                                and len(b.messages("q1")) >= 5, 90)
            except trio.TooSlowError:
                raise AssertionError(f"u3 got {back.messages('q')} 90 s after the restart; "
                                     + await diagnose(mesh, bh)) from None
            queued_in = trio.current_time() - restarted
            for name in ("hal", "u1", "u2"):  # u3 is back for everyone, on its bridge
                seen = await wait_users(clients[name], {"u3"}, 60)
                assert seen["u3"]["bridge"] == keys["s3"]
            assert (await u3b.send(tokens["u1"], "back"))["code"] == 201
            assert (await u1.send(tokens["u3"], "welcome"))["code"] == 201
            await inbox["u1"].wait(lambda b: b.messages("back"), 30)
            await back.wait(lambda b: b.messages("welcome"), 30)
            # The file between the other two completes meanwhile: it was still moving when
            # s3 was killed.
            await inbox["u2"].wait_event(300, command=5003, fileid=ref.fileid)
            file_done = next(t for t, e in inbox["u2"].events
                             if e.get("command") == 5003 and e.get("fileid") == ref.fileid)
            assert file_done > killed
            stop.set()
            with trio.fail_after(10):
                for event in stopped.values():
                    await event.wait()
            assert set(codes) == {201}, codes  # u1 and u2 never saw each other go away
            path = await download(u2, ref.fileid, tmp_path / "got")
            assert md5_of(path) == md5
            # The other two chatted all along: once each, in order, also while s3 was down.
            for me, other in (("u1", "u2"), ("u2", "u1")):
                want = [f"c{me}-{i}" for i in range(sent[me])]
                await inbox[other].wait(lambda b, p=f"c{me}-", n=len(want):
                                        len(b.messages(p)) >= n, 30)
                assert inbox[other].messages(f"c{me}-") == want
                assert inbox[other].messages(f"c{me}-", killed, restarted), \
                    "no chat arrived while s3 was down"
            await trio.sleep(1)
            # Queued for u3 while it was gone: once each, in order; and nothing twice.
            assert back.messages("qh") == [f"qh{i}" for i in range(5)]
            assert back.messages("q1") == [f"q1{i}" for i in range(5)]
            assert back.messages("welcome") == ["welcome"]
            assert inbox["u1"].messages("back") == ["back"]
            print(f"s3 down {restarted - killed:.1f} s; its queued messages in "
                  f"{queued_in:.1f} s after the restart; chat while it was down: "
                  f"{len(inbox['u2'].messages('cu1-', killed, restarted))} u1->u2, "
                  f"{len(inbox['u1'].messages('cu2-', killed, restarted))} u2->u1; sent {sent}; "
                  f"the file complete at b2 {file_done - killed:.1f} s after the kill")


async def test_two_spokes_chat_queue_and_send_a_file_through_a_hub_while_strangers_knock(
        mesh, tmp_path, nursery):
    hub = mesh["hub"]
    spokes = {mesh[n].tox_id[:64] for n in ("s1", "s2", "s3")}
    started = trio.current_time()
    async with flood_of_strangers(mesh["net"], [hub.tox_id],
                                  requests(SECRET, allow_list=False)) as flood:
        bh = await start_bridge(nursery, hub.port, tmp_path / "bh")
        b1 = await start_bridge(nursery, mesh["s1"].port, tmp_path / "b1")
        b2 = await start_bridge(nursery, mesh["s2"].port, tmp_path / "b2")
        await two_spokes(mesh, tmp_path, bh, b1, b2)
        checked = trio.current_time()
        per_key = await wait_refused(flood, [hub], STRANGERS // 2, 120)
        waited = trio.current_time() - checked
    assert flood.accepted == []
    print(f"{len(per_key)} of {STRANGERS} strangers refused by the hub "
          f"({sum(per_key.values())} log lines); the test's checks took {checked - started:.1f} s "
          f"with the flood, then {waited:.1f} s more until half of them were refused; "
          f"{flood.rounds} rounds of iterating them, {flood.rebootstraps} bootstraps again")
    # The hub accepted the spokes alone, and they alone are its peers and its bridge's.
    assert sorted(accepted_keys(hub)) == sorted(spokes), [  # seen once: a spoke's line missing
        line for line in hub.log if any(k in line for k in spokes) or "friend" in line]
    peers = await trio.to_thread.run_sync(status_peers, mesh["dir"] / "hub.tox")
    assert sorted(p["public_key"] for p in peers) == sorted(spokes), peers
    assert {k.hex().upper() for k in bh.core.peer_keys()} <= spokes
    for b in (bh, b1, b2):
        with trio.fail_after(10):
            await b.stop()


async def two_spokes(mesh, tmp_path, bh, b1, b2) -> None:
    hub, s2 = mesh["hub"], mesh["s2"]
    async with open_client(b1.app_port, name="alice") as alice, \
            open_client(bh.app_port, name="hal") as hal:
        async with open_client(b2.app_port, name="bob") as bob:
            seen = await wait_users(alice, {"alice", "bob", "hal"})
            # Each user once, on its own bridge; tokens unique.
            assert seen["bob"]["bridge"] == s2.tox_id[:64]
            assert seen["hal"]["bridge"] == hub.tox_id[:64]
            assert seen["alice"]["side"] == "local" and seen["bob"]["side"] == "peer"
            assert len({u["token"] for u in seen.values()}) == len(seen)
            await wait_users(bob, {"alice", "hal"})
            assert hal.token  # logged in

            # Both ways through the hub, each once.
            for i in range(20):
                assert (await alice.send(bob.token, f"a{i}"))["code"] == 201
                assert (await bob.send(alice.token, f"b{i}"))["code"] == 201
            with trio.fail_after(60):
                got_b = [(await bob.wait_event(command=2003))["msg"] for _ in range(20)]
                got_a = [(await alice.wait_event(command=2003))["msg"] for _ in range(20)]
            assert got_b == [f"a{i}" for i in range(20)]
            assert got_a == [f"b{i}" for i in range(20)]
            with trio.move_on_after(2):
                extra = await bob.wait_event(command=2003)
                pytest.fail(f"a message arrived twice: {extra}")
            assert bh.core.stats["relayed"] >= 40

            # Offline through the hub: stored at the hub until bob is back.
            bob_token = bob.token
        await wait_gone(alice, "bob", 30)
        for i in range(5):
            assert (await alice.send(bob_token, f"q{i}"))["code"] == 204
        async with open_client(b2.app_port, name="bob") as bob:
            with trio.fail_after(60):
                got = [(await bob.wait_event(command=2003))["msg"] for _ in range(5)]
            assert got == [f"q{i}" for i in range(5)]

            # A file spoke to spoke: uploaded to b1, through the hub, downloaded from b2.
            src = tmp_path / "big.bin"
            md5 = random_file(src, 50 * MB)
            with trio.fail_after(300):
                ref, reply = await send_file(alice, bob.token, src)
                assert reply["code"] == 201
                message = await bob.wait_event(command=2003)
                assert message["fileid"] == ref.fileid
                await bob.wait_event(command=5003, fileid=ref.fileid)
                path = await download(bob, ref.fileid, tmp_path / "got")
            assert md5_of(path) == md5
