"""Strangers (issue 6, item 5): a flood of friend requests from hundreds of unknown keys,
wrong secrets, and the right secret from a key not on the allow-list, while a real pair
works; and the sockets a running daemon opens."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import trio

from toxbridge.config import Config
from toxbridge.testing import App, DaemonProc
from toxbridge.tox import Tox, ToxOptions, load_profile, save_profile

from .strangers import STRANGERS, accepted_keys, flood_of_strangers, ignored_keys, requests

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("strangers")]

SECRET = "right-secret"
FLOOD_SECONDS = 60  # at most; the flood ends earlier once every stranger has been refused
CAP = Config(mode="listen", profile=Path("x")).max_pending_requests


def new_profile(path: Path) -> bytes:
    """Write a fresh profile; return its public key."""
    with Tox(ToxOptions(udp=False, ipv6=False, local_discovery=False)) as t:
        save_profile(path, t.savedata())
        return t.public_key


def friend_keys(profile: Path) -> list[bytes]:
    with Tox(ToxOptions(udp=False, ipv6=False, local_discovery=False, savedata=load_profile(profile))) as t:
        return [t.friend_public_key(f) for f in t.friend_list()]


async def test_a_flood_of_strangers_is_refused_while_the_real_peer_keeps_working(own_network,
                                                                                  tmp_path):
    tox_network = own_network  # a flood is for a network no later test uses (conftest)
    peer_key = new_profile(tmp_path / "p.tox")
    listen_args = ["--listen", "--allow", peer_key.hex()]
    with DaemonProc(listen_args, tmp_path / "l.tox", tox_network, secret=SECRET) as listener, \
            DaemonProc(["--peer", listener.tox_id], tmp_path / "p.tox", tox_network, secret=SECRET) as peer:
        a, b = await App.connect(listener.port), await App.connect(peer.port)
        try:
            with trio.fail_after(90):
                await a.wait_event(code=301)
                await b.wait_event(code=301)
            async with flood_of_strangers(tox_network, [listener.tox_id],
                                          requests(SECRET, allow_list=True)) as flood:
                # Frames keep flowing between the real pair during the flood.
                rounds, deadline = 0, time.monotonic() + FLOOD_SECONDS
                while time.monotonic() < deadline and len(set(ignored_keys(listener))) < STRANGERS:
                    with trio.fail_after(30):
                        await a.send(b"a%d" % rounds)
                        await b.send(b"b%d" % rounds)
                        assert await b.next_data() == b"a%d" % rounds
                        assert await a.next_data() == b"b%d" % rounds
                    rounds += 1
                    await trio.sleep(0.2)
            assert rounds > 10
            assert flood.accepted == []
            refused = ignored_keys(listener)
            per_key = Counter(refused)
            strangers = flood.hex_keys()
            print(f"{len(per_key)} of {STRANGERS} strangers refused, {len(refused)} log lines, "
                  f"{rounds} round trips during the flood; cap {CAP}; "
                  f"keys logged more than once: {sum(1 for n in per_key.values() if n > 1)}")
            assert set(per_key) <= strangers  # only strangers were refused
            assert len(per_key) >= STRANGERS // 2  # the flood did reach the listener
            # Only the real peer was ever accepted, and it still is the peer.
            log = "\n".join(listener.log)
            assert accepted_keys(listener) == [peer_key.hex().upper()]
            assert [e["peer"] for e in a.events if e.get("event") == "friend"] == [peer_key.hex().upper()]
            assert "replaces" not in log
            # The remembered strangers are capped: no key is logged twice while remembered,
            # so a key logged again was forgotten after CAP newer strangers came.
            for key, n in per_key.items():
                if n > 1:
                    first = refused.index(key)
                    second = refused.index(key, first + 1)
                    assert len(set(refused[first + 1:second])) >= CAP, key
            with trio.fail_after(30):
                await a.send(b"after")
                assert await b.next_data() == b"after"
        finally:
            await a.aclose()
            await b.aclose()
        assert listener.stop() == 0
    assert friend_keys(tmp_path / "l.tox") == [peer_key]


def sockets_of(pid: int) -> list[tuple[str, str, int, str]]:
    """(protocol, local address, port, TCP state) of every inet socket the process holds,
    from /proc/PID/fd (socket inodes) and /proc/PID/net/{tcp,udp,tcp6,udp6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", fd.readlink().as_posix())
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    out = []
    for proto in ("tcp", "udp", "tcp6", "udp6"):
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            f = line.split()
            if f[9] not in inodes:
                continue
            addr_hex, port_hex = f[1].split(":")
            if len(addr_hex) == 8:
                addr = ".".join(str(b) for b in reversed(bytes.fromhex(addr_hex)))
            else:
                addr = addr_hex  # IPv6: reported raw
            state = "LISTEN" if f[3] == "0A" and proto.startswith("tcp") else f[3]
            out.append((proto, addr, int(port_hex, 16), state))
    return out


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_every_port_the_product_opens_is_on_loopback(tox_network, tmp_path):
    """The bridge port and bridge_local's app port listen on 127.0.0.1 only. toxcore's own
    UDP socket binds 0.0.0.0 (its default; the product does not choose it): reported, and
    asserted to be the only socket not on loopback."""
    with DaemonProc(["--listen"], tmp_path / "l.tox", tox_network, secret=SECRET, raw=False) as node:
        socks = sockets_of(node.process.pid)
        print("sockets of a listener (bridge + app server):", socks)
        listening = [s for s in socks if s[3] == "LISTEN"]
        assert {s[2] for s in listening} >= {node.port, node.app_port}
        assert all(s[1] == "127.0.0.1" for s in listening), listening
        udp = [s for s in socks if s[0].startswith("udp")]
        assert len(udp) == 1 and udp[0][0] == "udp", udp  # toxcore's DHT socket; IPv6 off
        public = [s for s in socks if s[1] != "127.0.0.1"]
        assert public == udp  # nothing else leaves loopback (outbound TCP to the relay: 127.0.0.1 here)


def test_a_public_bridge_or_app_port_must_be_asked_for(tmp_path):
    for option in ("--bridge-host", "--app-host"):
        r = subprocess.run([sys.executable, "-m", "toxbridge", "--listen", "--secret", "x",
                            "--profile", str(tmp_path / "x.tox"), "--bootstrap",
                            "127.0.0.1:33445:" + "AB" * 32, option, "0.0.0.0"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and "--public-bind" in r.stderr, (option, r.stderr)
