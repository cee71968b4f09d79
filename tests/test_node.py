"""One command runs a node: `toxbridge --listen` / `--peer ID` start the daemon and
bridge_local in one process; clients on both sides chat; a node stopped with SIGTERM says
goodbye, so the other side's clients learn at once (not after the 20 s heartbeat)."""

from __future__ import annotations

import signal

import pytest
import trio

from bridge_local.client import open_client
from toxbridge.testing import DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("node")]


async def test_two_nodes_chat_and_a_stopped_node_is_seen_offline_at_once(tox_network, tmp_path):
    with DaemonProc(["--listen"], tmp_path / "l.tox", tox_network, raw=False) as listener, \
            DaemonProc(["--peer", listener.tox_id], tmp_path / "p.tox", tox_network, raw=False) as peer:
        assert (tmp_path / "l.bridge").is_dir() and (tmp_path / "p.bridge").is_dir()
        async with open_client(listener.app_port) as alice, open_client(peer.app_port) as bob:
            a = await alice.login("alice")
            b = await bob.login("bob")
            with trio.fail_after(90):  # the friend connection, then the bridges' hello
                await alice.wait_event(command=301, token=b["token"])
            reply = await alice.send(b["token"], "hello bob")
            assert (reply["result"], reply["code"]) == (True, 201)
            with trio.fail_after(10):
                got = await bob.wait_event(command=2003)
            assert (got["srctoken"], got["msg"], got["name"]) == (a["token"], "hello bob", "alice")

            listener.signal(signal.SIGTERM)
            with trio.fail_after(10):  # the bridge's goodbye, not the heartbeat timeout
                await bob.wait_event(command=302, token=a["token"])
        assert listener.process.wait(15) == 0  # the first SIGTERM was a clean exit
        assert any(line == "stopped" for line in listener.log)
