"""The terminal chat client's files: ``/send PATH [NAME]`` and ``/get [FILEID] [DIR]`` run as
``python -m bridge_local.chat`` processes on real bridges (private Tox network), with their
progress bar; a ``/get`` killed (-9) half way resumes when run again."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from bridge_local.client import open_client
from bridge_local.files import upload
from tests.test_bridge_files import (  # noqa: F401 -- pair and names are fixtures
    MB,
    WINDOW_BYTES,
    md5_of,
    names,
    pair,
    random_file,
    start_bridge,
    status,
)

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("files")]


class Chat:
    """One chat process: type lines into it, wait for text in what it printed."""

    def __init__(self, port: int, name: str, cwd: Path) -> None:
        cwd.mkdir(exist_ok=True)
        self.cwd = cwd
        self.argv = [sys.executable, "-m", "bridge_local.chat", "--name", name,
                     "--app-port", str(port)]
        self.out = ""
        self.process: trio.Process | None = None
        self.killed = False

    async def __aenter__(self) -> Chat:
        self.process = await trio.lowlevel.open_process(
            self.argv, cwd=self.cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        await self.until("logged in")
        return self

    async def until(self, pattern: str) -> re.Match[str]:
        """Read until ``pattern`` (a regex) matches the output; fails if the process ends."""
        assert self.process is not None
        while (m := re.search(pattern, self.out)) is None:
            chunk = await self.process.stdout.receive_some(65536)
            assert chunk, f"the chat ended before {pattern!r}:\n{self.out}"
            self.out += chunk.decode(errors="replace")
        return m

    async def type(self, line: str) -> None:
        assert self.process is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    def kill(self) -> None:
        """kill -9"""
        assert self.process is not None
        self.killed = True
        self.process.kill()

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        p = self.process
        if not self.killed and exc[0] is None:
            await self.type("/quit")
            with trio.move_on_after(15):
                assert await p.wait() == 0, self.out
        if p.returncode is None:
            p.kill()
        with trio.CancelScope(shield=True):
            await p.wait()
            await p.stdin.aclose()
            await p.stdout.aclose()


async def test_chat_send_and_get_move_a_file_between_bridges_with_a_progress_bar(
        pair, tmp_path, names, nursery):
    src = tmp_path / "report one.bin"
    md5 = random_file(src, 6 * MB)
    got = tmp_path / "got"
    with trio.fail_after(90):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        b = await start_bridge(nursery, pair[1].port, tmp_path / "b")
        await a.wait_peer()
        await b.wait_peer()
        async with Chat(a.app_port, names("alice"), tmp_path / "alice") as alice:
            async with Chat(b.app_port, names("bob"), tmp_path / "bob") as bob:
                await alice.until(re.escape(f"* {names('bob')} (peer) is online"))
                await alice.type(f"/send {shlex.quote(str(src))} {names('bob')}")
                sent = await alice.until(r"sent report one\.bin \(6291456 bytes\) to "
                                         + re.escape(names("bob")) + r"; fileid (\S+)")
                fileid = sent[1]
                # bob sees the file message, then the file is on his bridge (5003)
                await bob.until(re.escape(f"{names('alice')}: report one.bin [file report one"
                                          f".bin, 6291456 bytes, /get {fileid}]"))
                await bob.until(re.escape(f"* file report one.bin is here: /get {fileid}"))
                await bob.type(f"/get {fileid} {shlex.quote(str(got))}")
                saved = await bob.until(r"saved (.+)\n")
                assert saved[1] == str(got / "report one.bin")
                # the bar: label, size done of total (rich's DownloadColumn)
                assert re.search(r"get " + re.escape(fileid[:24]) + r".*6\.3/6\.3 MB", bob.out)
                assert re.search(r"send report one\.bin.*6\.3/6\.3 MB", alice.out)
                assert "resumed" not in bob.out
                await bob.type("/get")  # the last file received, into the current directory
                await bob.until(re.escape("saved report one.bin"))
    assert md5_of(got / "report one.bin") == md5 == md5_of(tmp_path / "bob" / "report one.bin")
    assert sorted(p.name for p in got.iterdir()) == ["report one.bin"]
    await a.stop()
    await b.stop()


async def test_chat_get_killed_half_way_resumes_when_run_again(pair, tmp_path, names, nursery):
    src = tmp_path / "f.bin"
    size = 40 * MB
    md5 = random_file(src, size)
    got = tmp_path / "got"
    with trio.fail_after(90):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        async with open_client(a.app_port, name=names("alice")) as alice:
            ref = await upload(alice, src)

            async def sent() -> int:
                return (await status(alice, ref.fileid))["counters"].get("download_bytes_sent", 0)

            async with Chat(a.app_port, names("bob"), tmp_path / "bob") as first:
                await first.type(f"/get {ref.fileid} {got}")
                while await sent() < size // 2:
                    await trio.sleep(0.01)
                first.kill()
            assert list((got / ".toxbridge-partial" / "partial").glob("*.journal"))
            async with Chat(a.app_port, names("bob"), tmp_path / "bob") as second:
                await second.type(f"/get {ref.fileid} {got}")
                resumed = await second.until(r"resumed at (\d+) of (\d+) bytes")
                await second.until(re.escape(f"saved {got / 'f.bin'}"))
            # Half was sent when the first was killed; what it had written is that less
            # what was still on its way (the download window and the sockets' buffers).
            in_flight = WINDOW_BYTES + 16 * 64 * 1024
            assert size // 2 - in_flight <= int(resumed[1]) < size and int(resumed[2]) == size
            assert await sent() - size <= WINDOW_BYTES + 16 * 64 * 1024
    assert md5_of(got / "f.bin") == md5
    assert sorted(p.name for p in got.iterdir()) == ["f.bin"]
    await a.stop()


async def test_chat_goes_on_while_a_file_moves_in_the_background(pair, tmp_path, names,
                                                                 nursery):
    src = tmp_path / "big.bin"
    random_file(src, 48 * MB)  # about a second to hash and upload; /users takes milliseconds
    with trio.fail_after(90):
        a = await start_bridge(nursery, pair[0].port, tmp_path / "a")
        async with Chat(a.app_port, names("alice"), tmp_path / "alice") as alice, \
                Chat(a.app_port, names("bob"), tmp_path / "bob") as bob:
            await alice.until(re.escape(f"* {names('bob')} (local) is online"))
            await alice.type(f"/send {shlex.quote(str(src))} {names('bob')}")
            await alice.type("/users")
            await alice.until(r"sent big\.bin \(50331648 bytes\)")
            listing = alice.out.index(f"  {names('bob')} (local)")
            assert listing < alice.out.index("sent big.bin"), alice.out  # typing went on
            await bob.until(re.escape(f"{names('alice')}: big.bin [file big.bin"))
    await a.stop()
