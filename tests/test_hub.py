"""bridge_local across many bridges (issue 14, parts 4 and 5): a hub and spokes that each
peer only with the hub, real daemons on the private Tox network, a bridge_local per node
(in this test's trio loop) over streams.sock.

Proved here: users of every spoke see each other with their bridge; messages both ways
through the hub, each arriving once; offline delivery through the hub (store and
forward); a 50 MB file spoke to spoke through the hub with md5 equal."""

from __future__ import annotations

import hashlib
import os
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest
import trio

from bridge_local.client import open_client
from bridge_local.files import download, send_file
from bridge_local.server import BridgeConfig, BridgeServer, serve
from toxbridge.testing import DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("hub"), pytest.mark.timeout(600)]

MB = 1_000_000


async def start_bridge(nursery: trio.Nursery, port: int, data_dir: Path) -> BridgeServer:
    config = BridgeConfig(bridge_port=port, data_dir=data_dir, reconnect_delay=0.2)
    return await nursery.start(partial(serve, config, announce=lambda line: None))


async def wait_users(client, names: set[str], timeout: float = 90) -> dict[str, dict]:
    with trio.fail_after(timeout):
        while True:
            users = {u["name"]: u for u in await client.users()}
            if names <= set(users):
                return users
            await trio.sleep(0.2)


def random_file(path: Path, size: int) -> str:
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            f.write(block)
            md5.update(block)
            left -= len(block)
    return md5.hexdigest()


async def test_two_spokes_chat_queue_and_send_a_file_through_a_hub(tox_network, tmp_path, nursery):
    with ExitStack() as procs:
        hub = procs.enter_context(DaemonProc(["--listen"], tmp_path / "hub.tox", tox_network,
                                             verbose=False))
        spokes = [procs.enter_context(DaemonProc(["--peer", hub.tox_id], tmp_path / f"s{i}.tox",
                                                 tox_network, verbose=False))
                  for i in range(2)]
        bh = await start_bridge(nursery, hub.port, tmp_path / "bh")
        b1 = await start_bridge(nursery, spokes[0].port, tmp_path / "b1")
        b2 = await start_bridge(nursery, spokes[1].port, tmp_path / "b2")
        async with open_client(b1.app_port, name="alice") as alice, \
                open_client(bh.app_port, name="hal") as hal:
            async with open_client(b2.app_port, name="bob") as bob:
                seen = await wait_users(alice, {"alice", "bob", "hal"})
                # Each user once, on its own bridge; tokens unique.
                assert seen["bob"]["bridge"] == spokes[1].tox_id[:64]
                assert seen["hal"]["bridge"] == hub.tox_id[:64]
                assert seen["alice"]["side"] == "local" and seen["bob"]["side"] == "peer"
                assert len({u["token"] for u in seen.values()}) == len(seen)
                await wait_users(bob, {"alice", "hal"})

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
            with trio.fail_after(30):
                while "bob" in {u["name"] for u in await alice.users()}:
                    await trio.sleep(0.2)
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
                assert hashlib.md5(path.read_bytes()).hexdigest() == md5
        for b in (bh, b1, b2):
            with trio.fail_after(10):
                await b.stop()
