"""A daemon restarted under a running bridge_local: real daemons, bridges as processes.

bridge_local runs as its own process (``python -m bridge_local``) against each daemon of a
pair on the private Tox network. The peer's daemon is stopped and started again on the same
profile and bridge port while clients stay connected and keep sending: the bridge
reconnects by itself, its clients stay logged in (they see the peer bridge go offline and
come back), and every message sent meanwhile, both ways, arrives exactly once, in order."""

from __future__ import annotations

import pytest
import trio

from bridge_local.client import Client, open_client
from toxbridge.testing import BridgeLocalProc, DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("bridges")]


async def online(client: Client, token: str, timeout: float = 30) -> None:
    """Until ``token`` is among the users ``client``'s bridge says are online (2001)."""
    with trio.fail_after(timeout):
        while token not in {u["token"] for u in await client.users()}:
            await trio.sleep(0.1)


async def texts_until(client: Client, marker: str, seen: list[dict]) -> list[str]:
    """Every ``2003`` text up to and including ``marker``; other events go to ``seen``."""
    texts: list[str] = []
    while not texts or texts[-1] != marker:
        event = await client.next_event()
        if event["command"] == 2003:
            texts.append(event["msg"])
        else:
            seen.append(event)
    return texts


def test_daemon_restart_under_running_bridges_loses_and_repeats_nothing(tox_network, tmp_path):
    listener = DaemonProc(["--listen"], tmp_path / "l.tox", tox_network, verbose=False)
    peer = DaemonProc(["--peer", listener.tox_id], tmp_path / "p.tox", tox_network,
                      verbose=False)
    bridges: list[BridgeLocalProc] = []
    try:
        bridges.append(BridgeLocalProc(listener.port, tmp_path / "a", tmp_path / "a.log"))
        bridges.append(BridgeLocalProc(peer.port, tmp_path / "b", tmp_path / "b.log"))
        a, b = bridges
        peer_port = peer.port

        async def scenario() -> None:
            nonlocal peer
            with trio.fail_after(180):
                async with open_client(a.app_port, name="alice") as alice, \
                        open_client(b.app_port, name="bob") as bob:
                    await alice.wait_event(command=301, side="peer", name="bob")
                    assert (await alice.send(bob.token, "before"))["code"] == 201
                    assert (await bob.wait_event(command=2003))["msg"] == "before"

                    peer.stop()  # bob's bridge loses its daemon; alice's loses the link
                    bob_seen: list[dict] = []
                    # bob's bridge says at once that the peer bridge is gone
                    while True:
                        event = await bob.next_event()
                        bob_seen.append(event)
                        if event.get("command") == 302 and "token" not in event:
                            break
                    a_to_b = [f"a{i}" for i in range(20)]
                    b_to_a = [f"b{i}" for i in range(20)]
                    for text in a_to_b[:10]:  # alice's bridge may not know yet: 201 or 204
                        assert (await alice.send(bob.token, text))["result"] is True
                    for text in b_to_a[:10]:  # queued on bob's bridge, daemon down
                        assert (await bob.send(alice.token, text))["code"] == 204

                    peer = DaemonProc(["--peer", listener.tox_id, "--bridge-port",
                                       str(peer_port)], tmp_path / "p.tox", tox_network,
                                      verbose=False)
                    assert peer.port == peer_port
                    for text in a_to_b[10:]:
                        assert (await alice.send(bob.token, text))["result"] is True
                    for text in b_to_a[10:]:
                        assert (await bob.send(alice.token, text))["result"] is True
                    # bob stayed logged in through it all and sees the peer come back
                    await bob.wait_event(command=301, side="peer", name="alice")
                    # Each bridge learns from the other's hello on its own: bob's can know alice
                    # before alice's knows bob (CI, Debian 13: a 204). Asked, not waited on as
                    # events: those would drop alice's 2003s.
                    await online(alice, bob.token)
                    await online(bob, alice.token)
                    assert (await alice.send(bob.token, "end-a"))["code"] == 201
                    assert (await bob.send(alice.token, "end-b"))["code"] == 201
                    # Exactly once, in order: a resent duplicate would come before the marker.
                    alice_seen: list[dict] = []
                    assert await texts_until(bob, "end-a", bob_seen) == a_to_b + ["end-a"]
                    assert await texts_until(alice, "end-b", alice_seen) == b_to_a + ["end-b"]
                    history = [m["msg"] for m in await alice.history(bob.token, limit=1000)]
                    assert sorted(history) == sorted(["before", *a_to_b, *b_to_a,
                                                      "end-a", "end-b"])
                    assert history == [m["msg"] for m in
                                       await bob.history(alice.token, limit=1000)]

        trio.run(scenario)
    finally:
        for bridge in bridges:
            bridge.stop()
        peer.stop()
        listener.stop()
