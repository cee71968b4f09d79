"""Many peers per node, between real daemons on the private Tox network: a listener with
several dialers, each with its own Link, mux and streams (streams.sock); --max-peers;
strangers; peers added and removed at run time over control.sock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from toxbridge.control.server import request as control_request
from toxbridge.testing import DaemonProc

from .conftest import new_tox

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("peers")]

KIND = 40
SECRET = "s3cret"


def data_dir(profile: Path) -> Path:
    return profile.with_suffix(".bridge")


def peers_of(profile: Path) -> list[dict]:
    return control_request(data_dir(profile) / "control.sock", "status")["peers"]


async def wait_peers(profile: Path, count: int, timeout: float = 120) -> list[dict]:
    """``count`` peers, all online (the listener's view)."""
    with trio.fail_after(timeout):
        while True:
            peers = await trio.to_thread.run_sync(peers_of, profile)
            if len(peers) == count and all(p["online"] for p in peers):
                return peers
            await trio.sleep(0.3)


def cli(profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toxbridge", "peers", *args, "--data-dir",
                           str(data_dir(profile))], capture_output=True, text=True, timeout=30)


async def ask(profile: Path, req: dict,
              opened: list | None = None) -> tuple[trio.SocketStream, dict]:
    """A request on streams.sock and its answer. ``opened`` gets the connection (to close)."""
    stream = await trio.open_unix_socket(os.fspath(data_dir(profile) / "streams.sock"))
    if opened is not None:
        opened.append(stream)
    await stream.send_all(json.dumps(req).encode() + b"\n")
    line = b""
    while not line.endswith(b"\n"):
        data = await stream.receive_some(1)
        assert data, f"closed before a reply; got {line!r}"
        line += data
    return stream, json.loads(line)


async def read_all(stream: trio.SocketStream) -> bytes:
    out = bytearray()
    while data := await stream.receive_some(65536):
        out += data
    return bytes(out)


async def exchange(hub: Path, spoke: Path, spoke_key: str, size: int, pace: float = 0.0,
                   done: list | None = None) -> None:
    """A stream hub -> spoke: ``size`` random bytes each way, both exact. ``pace``: seconds
    between 64 KiB writes (so the stream lasts a while). ``done``: gets the time it ended.
    Its sockets are closed however it ends (a failure here must not warn in a later test)."""
    up, down = os.urandom(size), os.urandom(size)
    got: dict[str, bytes] = {}
    opened: list[trio.SocketStream] = []
    try:
        async with trio.open_nursery() as nursery:
            accepted: list = []

            async def accept() -> None:
                accepted.append(await ask(spoke, {"op": "accept", "kind": KIND}, opened))
            nursery.start_soon(accept)
            await trio.sleep(0.5)  # the accept is registered before the OPEN arrives
            conn, reply = await ask(hub, {"op": "open", "kind": KIND, "peer": spoke_key}, opened)
        assert reply["ok"] is True and reply["peer"] == spoke_key, reply
        s_conn, s_reply = accepted[0]
        assert s_reply["ok"] is True

        async def send(stream, data) -> None:
            for i in range(0, len(data), 65536):
                await stream.send_all(data[i:i + 65536])
                if pace:
                    await trio.sleep(pace)
            await stream.send_eof()

        async def recv(stream, name) -> None:
            got[name] = await read_all(stream)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, conn, up)
            nursery.start_soon(send, s_conn, down)
            nursery.start_soon(recv, s_conn, "up")
            nursery.start_soon(recv, conn, "down")
        assert got["up"] == up and got["down"] == down
        if done is not None:
            done.append(time.monotonic())
    finally:
        for stream in opened:
            stream.socket.close()


def key_of(tox_id: str) -> str:
    return tox_id[:64]


async def test_a_listener_with_three_dialers_and_a_spoke_killed(tox_network, tmp_path):
    hub_p = tmp_path / "hub.tox"
    spokes_p = [tmp_path / f"s{i}.tox" for i in range(3)]
    with DaemonProc(["--listen"], hub_p, tox_network, verbose=True) as hub:
        spokes = [DaemonProc(["--peer", hub.tox_id], p, tox_network, verbose=True)
                  for p in spokes_p]
        try:
            peers = await wait_peers(hub_p, 3)
            keys = [key_of(s.tox_id) for s in spokes]
            assert sorted(p["public_key"] for p in peers) == sorted(keys)
            t0 = time.monotonic()
            with trio.fail_after(180):  # a stream to each, concurrently, exact both ways
                async with trio.open_nursery() as nursery:
                    for p, k in zip(spokes_p, keys):
                        nursery.start_soon(exchange, hub_p, p, k, 1_000_000)
            print(f"3 x 1 MB each way, concurrently: {time.monotonic() - t0:.1f} s")

            # Spoke 0 killed -9 while streams to the other two move; they stay exact.
            done: list[float] = []
            with trio.fail_after(240):
                async with trio.open_nursery() as nursery:
                    for p, k in zip(spokes_p[1:], keys[1:]):
                        nursery.start_soon(exchange, hub_p, p, k, 3_000_000, 0.1, done)
                    await trio.sleep(2)
                    spokes[0].process.kill()
                    spokes[0].process.wait(10)
                    killed = time.monotonic()
            assert len(done) == 2 and min(done) > killed  # they moved on after the kill
            # Restarted, it comes back as the same peer and carries a stream again.
            spokes[0] = DaemonProc(["--peer", hub.tox_id], spokes_p[0], tox_network, verbose=True)
            with trio.fail_after(120):  # the hub has seen the new session (not the old one's state)
                while True:
                    peers = {p["public_key"]: p for p in await wait_peers(hub_p, 3)}
                    if peers[keys[0]]["peer_restarts"] >= 1:
                        break
                    await trio.sleep(0.3)
            try:
                with trio.fail_after(120):
                    await exchange(hub_p, spokes_p[0], keys[0], 200_000)
            except BaseException:
                for name, proc in (("hub", hub), ("restarted spoke", spokes[0])):
                    lines = [ln for ln in proc.log if " tick t=" not in ln]  # not the 1 s ticks
                    print(f"{name} log:\n" + "\n".join(lines[-150:]))
                raise
            peers = {p["public_key"]: p for p in await trio.to_thread.run_sync(peers_of, hub_p)}
            assert peers[keys[0]]["reconnects"] >= 1
            assert all(peers[k]["reconnects"] == 0 for k in keys[1:])  # undisturbed
        finally:
            for s in spokes:
                s.stop()


async def test_max_peers_and_strangers(tox_network, tmp_path):
    hub_p = tmp_path / "hub.tox"
    with DaemonProc(["--listen", "--max-peers", "2"], hub_p, tox_network, verbose=False) as hub:
        stranger = new_tox(tox_network)
        spokes = []
        try:
            stranger.friend_add(bytes.fromhex(hub.tox_id), b"toxbridge/1 not the secret")
            spokes = [DaemonProc(["--peer", hub.tox_id], tmp_path / f"s{i}.tox", tox_network,
                                 verbose=False) for i in range(3)]
            with trio.fail_after(120):
                while not any("its maximum of 2 peers" in line for line in hub.log):
                    stranger.iterate()
                    await trio.sleep(0.05)
                peers = await wait_peers(hub_p, 2)
                for _ in range(100):  # a few more seconds: still 2, the stranger never in
                    stranger.iterate()
                    await trio.sleep(0.03)
            peers = await trio.to_thread.run_sync(peers_of, hub_p)
            keys = {p["public_key"] for p in peers}
            assert len(keys) == 2 and keys < {key_of(s.tox_id) for s in spokes}
            assert stranger.public_key.hex().upper() not in keys
            assert any("ignored a friend request from " + stranger.public_key.hex().upper() in line
                       for line in hub.log)
        finally:
            stranger.close()
            for s in spokes:
                s.stop()


async def test_peers_add_and_remove_at_run_time(tox_network, tmp_path):
    a_p, b_p = tmp_path / "a.tox", tmp_path / "b.tox"
    with DaemonProc(["--listen"], a_p, tox_network, verbose=False) as a, \
            DaemonProc(["--listen"], b_p, tox_network, verbose=False):
        assert await trio.to_thread.run_sync(peers_of, b_p) == []
        added = await trio.to_thread.run_sync(cli, b_p, "add", a.tox_id, "--name", "hub")
        assert added.returncode == 0, added.stderr
        again = await trio.to_thread.run_sync(cli, b_p, "add", a.tox_id)
        assert again.returncode == 2 and "already a peer" in again.stderr
        await wait_peers(b_p, 1)
        await wait_peers(a_p, 1)
        listed = await trio.to_thread.run_sync(cli, b_p, "list", "--json")
        [p] = json.loads(listed.stdout)
        assert p["name"] == "hub" and p["public_key"] == key_of(a.tox_id) and p["online"]
        # A stream by name; removing the peer resets it (the connection closes).
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                accepted: list = []

                async def accept() -> None:
                    accepted.append(await ask(a_p, {"op": "accept", "kind": KIND, "peer": "any"}))
                nursery.start_soon(accept)
                await trio.sleep(0.5)
                conn, reply = await ask(b_p, {"op": "open", "kind": KIND, "peer": "hub"})
            assert reply["ok"] and reply["peer"] == key_of(a.tox_id) and reply["name"] == "hub"
            a_conn, a_reply = accepted[0]
            assert a_reply["ok"]
            await conn.send_all(b"x" * 1000)
            assert len(await a_conn.receive_some(1000)) > 0
        removed = await trio.to_thread.run_sync(cli, b_p, "remove", "hub")
        assert removed.returncode == 0, removed.stderr
        assert "1 streams reset" in removed.stdout
        with trio.fail_after(10):
            assert await read_all(conn) == b""  # closed: the stream is gone
        assert await trio.to_thread.run_sync(peers_of, b_p) == []
        late, refused = await ask(b_p, {"op": "open", "kind": KIND, "peer": "hub"})
        assert refused["ok"] is False and refused["code"] == "unknown_peer"
        await late.aclose()
        gone = await trio.to_thread.run_sync(cli, b_p, "remove", "hub")
        assert gone.returncode == 2 and gone.stderr.count("\n") == 1
        await conn.aclose()
        await a_conn.aclose()
