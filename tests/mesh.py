"""Helpers for the tests of bridge_local across many bridges (hub, spokes, triangle): a
bridge_local in the test's trio loop, waits bounded in time, random files, the node's
``peers`` CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

from bridge_local.server import BridgeConfig, BridgeServer, serve
from toxbridge.control.server import request as control_request

MB = 1_000_000


async def start_bridge(nursery: trio.Nursery, port: int, data_dir: Path) -> BridgeServer:
    config = BridgeConfig(bridge_port=port, data_dir=data_dir, reconnect_delay=0.2)
    return await nursery.start(partial(serve, config, announce=lambda line: None))


async def wait_users(client, names: set[str], timeout: float = 90) -> dict[str, dict]:
    """The 2001 once every name in ``names`` is in it (by name)."""
    with trio.fail_after(timeout):
        while True:
            users = {u["name"]: u for u in await client.users()}
            if names <= set(users):
                return users
            await trio.sleep(0.2)


async def wait_gone(client, name: str, timeout: float = 60) -> None:
    with trio.fail_after(timeout):
        while name in {u["name"] for u in await client.users()}:
            await trio.sleep(0.2)


def random_file(path: Path, size: int) -> str:
    """``size`` random bytes at ``path``; returns their md5."""
    md5 = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            f.write(block)
            md5.update(block)
            left -= len(block)
    return md5.hexdigest()


def md5_of(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            md5.update(block)
    return md5.hexdigest()


def peers_cli(profile: Path, *args: str) -> subprocess.CompletedProcess:
    """``toxbridge peers ARGS`` against the node of ``profile`` (its data dir beside it)."""
    return subprocess.run([sys.executable, "-m", "toxbridge", "peers", *args, "--data-dir",
                           str(profile.with_suffix(".bridge"))],
                          capture_output=True, text=True, timeout=30)


async def collect(client, count: int, timeout: float) -> list[dict]:
    """The next ``count`` messages (2003) of ``client``."""
    with trio.fail_after(timeout):
        return [await client.wait_event(command=2003) for _ in range(count)]


async def no_more_messages(client, seconds: float = 2.0) -> dict | None:
    """A 2003 that arrives within ``seconds`` (a duplicate), or None."""
    with trio.move_on_after(seconds):
        return await client.wait_event(command=2003)
    return None


def status_peers(profile: Path) -> list[dict]:
    """The peers of the running node of ``profile``, as its control socket reports them."""
    return control_request(profile.with_suffix(".bridge") / "control.sock", "status")["peers"]
