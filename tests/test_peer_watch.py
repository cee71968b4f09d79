"""Peer events for local apps (issue 14, part 4): ``{"op": "peers"}`` on streams.sock lists
a node's peers and then reports each going online or offline, with key and name. Real
daemons on the private Tox network: a listener with two dialers, one of which goes away."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from toxbridge.testing import DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("peerwatch"), pytest.mark.timeout(240)]


class Watch:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream, self.buf = stream, b""

    @classmethod
    async def open(cls, profile: Path) -> tuple["Watch", dict]:
        path = profile.with_suffix(".bridge") / "streams.sock"
        w = cls(await trio.open_unix_socket(os.fspath(path)))
        await w.stream.send_all(b'{"op": "peers"}\n')
        return w, await w.line()

    async def line(self) -> dict:
        while b"\n" not in self.buf:
            data = await self.stream.receive_some(4096)
            assert data, f"the watch closed; got {self.buf!r}"
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


async def test_a_watcher_sees_every_peer_online_and_the_one_that_goes_away(tox_network, tmp_path):
    with DaemonProc(["--listen"], tmp_path / "hub.tox", tox_network) as hub:
        hub_key = hub.tox_id[:64]
        with DaemonProc(["--peer", f"{hub.tox_id}=hub"], tmp_path / "a.tox", tox_network) as a, \
                DaemonProc(["--peer", hub.tox_id], tmp_path / "b.tox", tox_network) as b:
            keys = {a.tox_id[:64], b.tox_id[:64]}
            watch, first = await Watch.open(tmp_path / "hub.tox")
            async with watch.stream:  # closed when an assertion fails too
                assert first["ok"] is True and isinstance(first["peers"], list)
                online = {p["peer"] for p in first["peers"] if p["online"]}
                seen: list[dict] = []
                with trio.fail_after(120):
                    while online != keys:
                        event = await watch.line()
                        seen.append(event)
                        assert event["event"] == "peer" and event["peer"] in keys, event
                        if event["code"] == 301:
                            online.add(event["peer"])
                # The dialer's own view: its one peer, by the name it gave it. Each end learns
                # the other is up from its own handshake, so a may list the hub a moment after
                # the hub listed a: then its next event is the hub's 301.
                spoke, listed = await Watch.open(tmp_path / "a.tox")
                async with spoke.stream:
                    assert [(p["peer"], p.get("name")) for p in listed["peers"]] == [(hub_key, "hub")]
                    if not listed["peers"][0]["online"]:
                        with trio.fail_after(60):
                            event = await spoke.line()
                        assert (event["code"], event["peer"], event.get("name")) \
                            == (301, hub_key, "hub"), event

                b.stop()  # tox_kill: the hub sees it offline at once
                with trio.fail_after(60):
                    event = await watch.line()
                assert (event["code"], event["status"], event["peer"]) \
                    == (302, "offline", b.tox_id[:64]), event
                # a stays: nothing more about it, and a second watcher lists it online.
                with trio.move_on_after(2):
                    extra = await watch.line()
                    pytest.fail(f"an event for a peer that did not change: {extra}")
                again, listed = await Watch.open(tmp_path / "hub.tox")
                await again.stream.aclose()
                state = {p["peer"]: p["online"] for p in listed["peers"]}
                assert state[a.tox_id[:64]] is True and state.get(b.tox_id[:64]) is False, state
