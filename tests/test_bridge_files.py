"""Files over real bridges on the private Tox network: upload, bridge to bridge, download,
resume after kill -9 of either bridge or of a downloading client, pause/resume, repair of
a corrupted chunk, hostile names and limits, chat during a transfer.

One pair of raw daemons for the module; each test runs its own bridges (in-process, or as
``python -m bridge_local`` subprocesses when a test kills one) on fresh data dirs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from bridge_local.client import open_client
from bridge_local.fileservice import FilesConfig
from bridge_local.files import (FileProgress, TransferFailed, TransferHandle, download,
                                send_file, upload)
from bridge_local.server import BridgeConfig, BridgeServer, serve
from toxbridge.testing import BridgeLocalProc, DaemonProc

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("files")]

MB = 1024 * 1024
CHUNK = FilesConfig.chunk_size
WINDOW_BYTES = FilesConfig.window * CHUNK  # what a transfer may have in flight (8 MiB)


@pytest.fixture(scope="module")
def pair(tox_network, tmp_path_factory):
    d = tmp_path_factory.mktemp("file-daemons")
    with DaemonProc(["--listen"], d / "listen.tox", tox_network, verbose=False) as listener:
        with DaemonProc(["--peer", listener.tox_id], d / "peer.tox", tox_network,
                        verbose=False) as peer:
            yield listener, peer


async def start_bridge(nursery: trio.Nursery, port: int, data_dir: Path,
                       files: FilesConfig = FilesConfig()) -> BridgeServer:
    config = BridgeConfig(bridge_port=port, data_dir=data_dir, reconnect_delay=0.2, files=files)
    return await nursery.start(partial(serve, config, announce=lambda line: None))


@pytest.fixture
def names(request):
    tag = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]
    return lambda name: f"{name}-{tag}"


def random_file(path: Path, size: int) -> str:
    h = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MB))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(MB):
            h.update(block)
    return h.hexdigest()


def leftovers(data_dir: Path) -> list[Path]:
    """Partial and temporary files left in a bridge's data dir."""
    return [p for p in data_dir.rglob("*") if p.is_file()
            and (p.parent.name in ("partial", "tmp") or p.suffix in (".part", ".journal"))]


async def status(client, fileid: str) -> dict:
    return await client.request({"command": 4002, "token": client.token, "fileid": fileid})


async def wait_user(client, name: str) -> None:
    while name not in {u["name"] for u in await client.users()}:
        await trio.sleep(0.05)


def queued_events(client) -> list[dict]:
    """The events a client has received and not taken yet."""
    out = []
    while True:
        try:
            out.append(client._events.receive_nowait())
        except trio.WouldBlock:
            return out


async def wait_held(client, fileid: str, at_least: int) -> None:
    while True:
        s = await status(client, fileid)
        if s.get("held", 0) >= at_least or s["result"] == 1:
            return
        await trio.sleep(0.02)


async def wait_available(client, fileid: str) -> dict:
    while True:
        s = await status(client, fileid)
        if s["result"] == 1:
            return s
        await trio.sleep(0.05)


# --------------------------------------------------------------------------- the three hops


async def test_50_mb_file_upload_bridge_to_bridge_download_md5_equal_no_partials_left(
        pair, tmp_path, names, nursery):
    src = tmp_path / "big.bin"
    md5 = random_file(src, 50 * MB)
    with trio.fail_after(120):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
        await a.wait_peer()
        await b.wait_peer()
        async with open_client(a.app_port, name=names("alice")) as alice, \
                open_client(b.app_port, name=names("bob")) as bob:
            await wait_user(alice, names("bob"))
            progress = []
            ref, reply = await send_file(alice, bob.token, src, on_event=progress.append)
            assert reply["code"] == 201 and ref.md5 == md5
            assert progress and progress[-1].done == progress[-1].total == 50 * MB
            message = await bob.wait_event(command=2003)
            assert (message["fileid"], message["md5"], message["filesize"]) == \
                (ref.fileid, md5, 50 * MB)
            available = await bob.wait_event(command=5003, fileid=ref.fileid)
            assert available["md5"] == md5
            path = await download(bob, ref.fileid, tmp_path / "got")
            assert md5_of(path) == md5 and path.name == "big.bin"
            s = await status(bob, ref.fileid)
            assert s["counters"]["peer_bytes_received"] >= 50 * MB
    assert not leftovers(tmp_path / "a") and not leftovers(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == ["big.bin"]
    await a.stop()
    await b.stop()


async def test_chat_keeps_flowing_in_order_while_a_large_file_moves(pair, tmp_path, names,
                                                                   nursery):
    src = tmp_path / "f.bin"
    random_file(src, 24 * MB)
    with trio.fail_after(90):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
        await a.wait_peer()
        async with open_client(a.app_port, name=names("alice")) as alice, \
                open_client(a.app_port, name=names("carol")) as carol, \
                open_client(b.app_port, name=names("bob")) as bob:
            await wait_user(alice, names("bob"))
            ref, _ = await send_file(alice, bob.token, src)
            await wait_held(bob, ref.fileid, 1)  # the file is moving
            for i in range(20):
                assert (await carol.send(bob.token, f"c{i}"))["code"] == 201
            got = []
            while len(got) < 20:
                m = await bob.wait_event(command=2003)
                if m["name"] == names("carol"):
                    got.append(m["msg"])
            assert got == [f"c{i}" for i in range(20)]
            s = await status(bob, ref.fileid)
            assert s["result"] != 1 or s.get("held") == 24 * MB
            await wait_available(bob, ref.fileid)
    await a.stop()
    await b.stop()


async def test_a_user_offline_when_the_file_arrives_gets_5003_at_login_after_a_restart(
        pair, tmp_path, names, nursery):
    src = tmp_path / "f.bin"
    md5 = random_file(src, 3 * MB)
    with trio.fail_after(90):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
        await a.wait_peer()
        async with open_client(a.app_port, name=names("alice")) as alice:
            async with open_client(b.app_port, name=names("bob")) as bob:
                await wait_user(alice, names("bob"))
                token = bob.token
            while names("bob") in {u["name"] for u in await alice.users()}:
                await trio.sleep(0.05)
            ref, reply = await send_file(alice, token, src)
            assert reply["code"] == 204  # bob is offline
            async with open_client(b.app_port, name=names("carol")) as carol:
                await wait_available(carol, ref.fileid)  # the file is on b, bob not told
            await b.stop()
            b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
            async with open_client(b.app_port, name=names("bob")) as bob:
                message = await bob.wait_event(command=2003)
                assert message["fileid"] == ref.fileid
                available = await bob.wait_event(command=5003)
                assert (available["fileid"], available["md5"], available["filesize"]) == \
                    (ref.fileid, md5, 3 * MB)
            async with open_client(b.app_port, name=names("bob")) as bob:  # told once only
                await bob.users()  # anything pushed at login came before this reply
                assert 5003 not in [e["command"] for e in queued_events(bob)]
    await a.stop()
    await b.stop()


# --------------------------------------------------------------------------- resume


async def test_kill_9_of_the_receiving_bridge_half_way_resends_at_most_one_window(
        pair, tmp_path, names, nursery):
    src = tmp_path / "f.bin"
    size = 24 * MB
    md5 = random_file(src, size)
    with trio.fail_after(150):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        b = BridgeLocalProc(pair[1].port, tmp_path / "b", tmp_path / "b.log")
        try:
            await a.wait_peer()
            async with open_client(a.app_port, name=names("alice")) as alice:
                async with open_client(b.app_port, name=names("bob")) as bob:
                    await wait_user(alice, names("bob"))
                    ref, _ = await send_file(alice, bob.token, src)
                    await wait_held(bob, ref.fileid, size // 2)
                b.kill()
                b = BridgeLocalProc(pair[1].port, tmp_path / "b", tmp_path / "b.log")
                async with open_client(b.app_port, name=names("bob")) as bob:
                    await wait_available(bob, ref.fileid)
                    path = await download(bob, ref.fileid, tmp_path / "got")
                    assert md5_of(path) == md5
                c = (await status(alice, ref.fileid))["counters"]
                assert c["peer_bytes_sent"] - size <= WINDOW_BYTES
                assert c["peer_chunks_resent"] <= FilesConfig.window
                assert c["peer_resyncs"] >= 1
        finally:
            b.kill()
    assert not leftovers(tmp_path / "b")
    await a.stop()


async def test_kill_9_of_the_sending_bridge_half_way_resends_at_most_one_window(
        pair, tmp_path, names, nursery):
    src = tmp_path / "f.bin"
    size = 24 * MB
    md5 = random_file(src, size)
    with trio.fail_after(150):
        a = BridgeLocalProc(pair[0].port, tmp_path / "a", tmp_path / "a.log")
        b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
        try:
            await b.wait_peer()
            async with open_client(b.app_port, name=names("bob")) as bob:
                async with open_client(a.app_port, name=names("alice")) as alice:
                    await wait_user(alice, names("bob"))
                    ref, _ = await send_file(alice, bob.token, src)
                    await wait_held(bob, ref.fileid, size // 2)
                a.kill()
                a = BridgeLocalProc(pair[0].port, tmp_path / "a", tmp_path / "a.log")
                await wait_available(bob, ref.fileid)
                c = (await status(bob, ref.fileid))["counters"]
                assert c["peer_bytes_received"] - size <= WINDOW_BYTES
                assert c.get("peer_duplicates", 0) <= FilesConfig.window
                path = await download(bob, ref.fileid, tmp_path / "got")
                assert md5_of(path) == md5
        finally:
            a.kill()
    assert not leftovers(tmp_path / "a") and not leftovers(tmp_path / "b")
    await b.stop()


async def test_kill_9_of_a_downloading_client_then_run_again_resumes(pair, tmp_path, names,
                                                                      nursery):
    src = tmp_path / "f.bin"
    size = 40 * MB
    md5 = random_file(src, size)
    got = tmp_path / "got"
    with trio.fail_after(90):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        async with open_client(a.app_port, name=names("alice")) as alice:
            ref = await upload(alice, src)
            base = [sys.executable, "-m", "bridge_local.files", "get", "--app-port",
                    str(a.app_port), "--name", names("bob"), "--dest", str(got), "--quiet",
                    ref.fileid]
            first = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                while (await status(alice, ref.fileid))["counters"].get(
                        "download_bytes_sent", 0) < size // 2:
                    await trio.sleep(0.01)
            finally:
                first.send_signal(signal.SIGKILL)
                first.wait(10)
            assert list((got / ".toxbridge-partial" / "partial").glob("*.journal"))
            second = await trio.run_process(base, capture_stdout=True, check=True)
            assert b"saved" in second.stdout and b"resumed at " in second.stdout
            c = (await status(alice, ref.fileid))["counters"]
            assert c["download_bytes_sent"] - size <= WINDOW_BYTES + 16 * 64 * 1024
    assert md5_of(got / "f.bin") == md5
    assert sorted(p.name for p in got.iterdir()) == ["f.bin"]
    await a.stop()


async def test_the_tox_link_cut_and_restored_mid_transfer_completes(pair, tmp_path, names,
                                                                   nursery, tox_network):
    src = tmp_path / "f.bin"
    size = 24 * MB
    md5 = random_file(src, size)
    d = tmp_path / "daemons"
    d.mkdir()
    with trio.fail_after(150):
        listener = DaemonProc(["--listen"], d / "l.tox", tox_network, verbose=False)
        peer = DaemonProc(["--peer", listener.tox_id], d / "p.tox", tox_network, verbose=False)
        try:
            a = await start_bridge(nursery, listener.port, tmp_path / "a")
            b = await start_bridge(nursery, peer.port, tmp_path / "b")
            await a.wait_peer()
            async with open_client(a.app_port, name=names("alice")) as alice, \
                    open_client(b.app_port, name=names("bob")) as bob:
                await wait_user(alice, names("bob"))
                ref, _ = await send_file(alice, bob.token, src)
                await wait_held(bob, ref.fileid, size // 3)
                # Cut: the peer's daemon dies (kill -9), and with it the Tox link.
                peer.signal(signal.SIGKILL)
                peer.stop()
                await b.stop()
                # Restore: the same profile again, and its bridge on the same data dir.
                peer = DaemonProc(["--peer", listener.tox_id], d / "p.tox", tox_network,
                                  verbose=False)
                b = await start_bridge(nursery, peer.port, tmp_path / "b")
                async with open_client(b.app_port, name=names("bob")) as bob2:
                    await wait_available(bob2, ref.fileid)
                    path = await download(bob2, ref.fileid, tmp_path / "got")
                    assert md5_of(path) == md5
                c = (await status(alice, ref.fileid))["counters"]
                assert c["peer_bytes_sent"] - size <= WINDOW_BYTES
            await a.stop()
            await b.stop()
        finally:
            peer.stop()
            listener.stop()


# --------------------------------------------------------------------------- control, repair


async def test_pause_and_resume_with_7070_then_a_corrupted_chunk_is_repaired(
        pair, tmp_path, names, nursery):
    src = tmp_path / "f.bin"
    size = 48 * MB
    md5 = random_file(src, size)
    with trio.fail_after(60):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        async with open_client(a.app_port, name=names("alice")) as alice:
            handle = TransferHandle()
            events = []
            done = trio.Event()
            result = {}

            async def run() -> None:
                result["ref"] = await upload(alice, src, on_event=events.append, handle=handle)
                done.set()

            nursery.start_soon(run)
            while not any(isinstance(e, FileProgress) for e in events):
                await trio.sleep(0.005)
            handle.pause()
            await trio.sleep(0.3)
            fileid = next(e.fileid for e in events if isinstance(e, FileProgress))
            held = (await status(alice, fileid))["held"]
            await trio.sleep(0.5)
            later = (await status(alice, fileid))["held"]
            assert later == held and 0 < held < size, (held, later)  # paused, chunk 0 stored
            # Corrupt chunk 0 on disk while paused.
            part = next((tmp_path / "a").rglob("*.part"))
            with open(part, "r+b") as f:
                f.write(b"\xff" * 100)
            handle.resume()
            await done.wait()
            s = await status(alice, fileid)
            assert s["result"] == 1 and s["md5"] == md5
            assert s["counters"]["upload_repairs"] >= 1
            path = await download(alice, fileid, tmp_path / "got")
            assert md5_of(path) == md5
    await a.stop()


# --------------------------------------------------------------------------- hostile input


async def test_hostile_names_size_limit_and_quota_give_clear_errors_and_stay_in_the_store(
        pair, tmp_path, names, nursery):
    files = FilesConfig(max_file_size=3 * MB, max_total_size=5 * MB)
    store_dir = tmp_path / "a"
    with trio.fail_after(60):
        a = await start_bridge(nursery, pair[0].port, store_dir, files)
        async with open_client(a.app_port, name=names("alice")) as alice:
            # Small: five of them and a file at the size limit fit the quota (this block's
            # failures were swallowed by the client until it was fixed; five 2 MB copies
            # never fitted 5 MB).
            ok = tmp_path / "ok.bin"
            random_file(ok, 100_000)
            from bridge_local.files import FileRef, file_ref
            base = file_ref(ok)
            for hostile in ("../../etc/passwd", "/etc/passwd", "..", "a" * 128, "x\\..\\y"):
                ref = FileRef(hostile, "../../../escape.txt", base.filesize, base.md5)
                assert await upload(alice, ok, ref=ref) == ref
                assert (await status(alice, hostile))["result"] == 1
            # A NUL byte or a control character in a name: refused at the door.
            with pytest.raises(Exception, match="control"):
                await upload(alice, ok, ref=FileRef("nul", "a\x00b", base.filesize, base.md5))
            big = tmp_path / "big.bin"
            random_file(big, 4 * MB)
            with pytest.raises(TransferFailed) as info:
                await upload(alice, big)
            assert info.value.code == 7110 and "limit" in str(info.value)
            fill = tmp_path / "fill.bin"
            random_file(fill, 3 * MB)  # at the size limit: taken
            await upload(alice, fill)
            second = tmp_path / "second.bin"
            random_file(second, 2 * MB)
            with pytest.raises(TransferFailed) as info:
                await upload(alice, second)
            assert info.value.code == 7111 and "does not fit" in str(info.value)
            with pytest.raises(TransferFailed) as info:
                await download(alice, "no-such-file", tmp_path / "got")
            assert info.value.code == 7115
    await a.stop()
    inside = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert not [p for p in inside if p.name in ("passwd", "escape.txt")]
    assert not (tmp_path.parent / "escape.txt").exists()
    for p in store_dir.rglob("*"):
        if p.is_file() and p.suffix in (".data", ".json") and p.parent.name == "files":
            assert len(p.stem) == 64
