"""Forwards to several peers from one node (docs/forwarding.md, ``@PEER``): a hub dials two
exposing daemons, each exposing only its own echo server, and forwards one local port to
each; beta dials alpha too, so that alpha is a listener with two peers. Real daemons, real
toxcore, the session's private network."""

from __future__ import annotations

import json
import random
import signal
import sys
import time

import pytest
import trio

from toxbridge.testing import DaemonProc

from .test_forward import Server, connect, echo, echo_once, sees_reset, try_echo

pytestmark = [pytest.mark.tox, pytest.mark.xdist_group("forward")]

HOLD_OPEN = 2  # the hub's --hold-open (the last test cuts one peer)


@pytest.fixture(scope="module")
def hub(tox_network, tmp_path_factory):
    """(hub, {name: exposer}, {(destination, peer): local port}, {name: destination}).
    alpha exposes only dest["alpha"], beta only dest["beta"]; the hub forwards to each
    through its own peer, and once to alpha's destination through beta (refused there).
    alpha also forwards to beta's destination naming no peer (``ports["alpha -L"]``)."""
    d = tmp_path_factory.mktemp("fwdpeers")
    servers = {name: Server(echo) for name in ("alpha", "beta")}
    dest = {name: f"127.0.0.1:{s.port}" for name, s in servers.items()}
    wanted = [(dest["alpha"], "alpha"), (dest["beta"], "beta"), (dest["alpha"], "beta")]
    try:
        with DaemonProc(["--listen", "--expose", dest["alpha"], "-L", f"0:{dest['beta']}"],
                        d / "a.tox", tox_network) as a, \
                DaemonProc(["--listen", "--expose", dest["beta"], "--peer", a.tox_id],
                           d / "b.tox", tox_network) as b:
            forwards = [arg for t, via in wanted for arg in ("-L", f"0:{t}@{via}")]
            with DaemonProc(["--peer", f"{a.tox_id}=alpha", "--peer", f"{b.tox_id}=beta",
                             "--hold-open", str(HOLD_OPEN), *forwards], d / "h.tox",
                            tox_network) as h:
                ports = {}
                for _ in wanted:  # forward 127.0.0.1:PORT -> HOST:PORT via NAME
                    _, local, _, target, _, via = h.expect("forward ").split()
                    ports[target, via] = int(local.rsplit(":", 1)[1])
                assert set(ports) == set(wanted)
                ports["alpha -L"] = int(a.expect("forward ").split()[1].rsplit(":", 1)[1])
                yield h, {"alpha": a, "beta": b}, ports, dest
    finally:
        for s in servers.values():
            s.close()


_online: list = []


async def online(hub) -> None:
    """Both peers carry a forward (once per module)."""
    if _online:
        return
    _, _, ports, dest = hub
    with trio.fail_after(150):
        for name in ("alpha", "beta"):
            while not await try_echo(ports[dest[name], name]):
                await trio.sleep(0.5)
    _online.append(True)


async def status(node: DaemonProc, *args: str) -> bytes:
    profile = node.args[node.args.index("--profile") + 1]
    proc = await trio.run_process([sys.executable, "-m", "toxbridge", *args, "--profile", profile],
                                  capture_stdout=True)
    return proc.stdout


async def test_two_forwards_reach_two_peers_each_with_exact_bytes(hub):
    await online(hub)
    h, _, ports, dest = hub
    rng = random.Random(15)
    sent = {name: rng.randbytes(1_000_000 + i) for i, name in enumerate(("alpha", "beta"))}
    got: dict[str, bytes] = {}
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            async def one(name: str) -> None:
                got[name] = await echo_once(ports[dest[name], name], sent[name])
            for name in sent:
                nursery.start_soon(one, name)
    assert got == sent


async def test_a_forward_reaches_the_peer_it_names_not_another(hub):
    """alpha's destination through beta: beta does not expose it, so beta answers."""
    await online(hub)
    h, _, ports, dest = hub
    with trio.fail_after(10):
        stream = await connect(ports[dest["alpha"], "beta"])
        await sees_reset(stream, timeout=5)
        await stream.aclose()
        reason = f"refused by the peer: not_exposed: {dest['alpha']} is not exposed"
        while not any(reason in line for line in h.log):
            await trio.sleep(0.05)


async def test_status_and_peers_list_show_each_forward_with_its_peer_and_bytes(hub):
    await online(hub)
    h, exposers, ports, dest = hub
    size = {"alpha": 50_000, "beta": 70_000}  # tells the connections apart
    hub_key = h.tox_id[:64]
    with trio.fail_after(60):
        streams = {}
        for name, n in size.items():
            streams[name] = stream = await connect(ports[dest[name], name])
            await stream.send_all(b"s" * n)
            got = 0
            while got < n:
                got += len(await stream.receive_some(65536))
        await trio.sleep(0.5)  # the last credit and counters settle
        mine = json.loads(await status(h, "status", "--json"))
        peers = json.loads(await status(h, "peers", "list", "--json"))
        human = (await status(h, "status")).decode()
        peers_human = (await status(h, "peers", "list")).decode()
        theirs = {name: json.loads(await status(x, "status", "--json"))
                  for name, x in exposers.items()}
        for stream in streams.values():
            await stream.aclose()
    keys = {name: x.tox_id[:64] for name, x in exposers.items()}
    by_listen = {f["listen"]: f for f in mine["forwards"]}
    for name in size:
        f = by_listen[f"127.0.0.1:{ports[dest[name], name]}"]
        assert (f["destination"], f["via"], f["peer"], f["peer_name"]) == (
            dest[name], name, keys[name], name), f
        assert (f["connections"], f["bytes_to_peer"], f["bytes_from_peer"]) == (
            1, size[name], size[name]), f
    conns = {c["peer_name"]: c for c in mine["forward_connections"]}
    assert {n: (c["peer"], c["destination"], c["bytes_to_peer"], c["bytes_from_peer"])
            for n, c in conns.items()} == {
        n: (keys[n], dest[n], size[n], size[n]) for n in size}, mine["forward_connections"]
    # peers list: each peer with its own forwards and connections
    for p in peers:
        name = p["name"]
        assert {f["destination"] for f in p["forwards"]} == (
            {dest["alpha"]} if name == "alpha" else {dest["alpha"], dest["beta"]}), p
        assert [(c["destination"], c["bytes_to_peer"]) for c in p["forward_connections"]] == [
            (dest[name], size[name])], p
    # each exposing daemon carried its own connection, and only that one
    for name, st in theirs.items():
        assert [(c["side"], c["peer"], c["destination"], c["bytes_to_peer"], c["bytes_from_peer"])
                for c in st["forward_connections"]] == [
            ("expose", hub_key, dest[name], size[name], size[name])], st["forward_connections"]
    for text in (human, peers_human):
        assert "forwarded connections" in text and "alpha" in text and "beta" in text, text
    assert "forwards" in human and dest["beta"] in human, human


async def test_a_listener_with_two_peers_says_which_one_a_forward_naming_none_reaches(hub):
    """alpha has two peers (the hub, beta) and a -L that names none: it goes to the first
    and alpha says so, once."""
    await online(hub)
    _, exposers, ports, _ = hub
    a = exposers["alpha"]
    with trio.fail_after(120):
        while True:  # both of alpha's peers online
            st = json.loads(await status(a, "status", "--json"))
            if len(st["peers"]) == 2 and all(p["online"] for p in st["peers"]):
                break
            await trio.sleep(0.5)
        first = st["peers"][0]["public_key"][:16]
        for _ in range(2):
            await try_echo(ports["alpha -L"])  # beta echoes; the hub refuses (not exposed)
        said = [line for line in a.log if "names no peer and this node has 2" in line]
        while not said:
            await trio.sleep(0.05)
            said = [line for line in a.log if "names no peer and this node has 2" in line]
    assert len(said) == 1, said
    assert f"it reaches the first, {first}" in said[0], said
    assert "(say which: @PEER after the forward, or --via PEER)" in said[0]


async def test_a_cut_of_one_peer_resets_only_its_connections(hub):
    """beta frozen past toxcore's friend timeout: after --hold-open the hub resets the
    connection through beta; the one through alpha goes on (hold-open is per peer)."""
    await online(hub)
    h, exposers, ports, dest = hub
    with trio.fail_after(150):
        a = await connect(ports[dest["alpha"], "alpha"])
        b = await connect(ports[dest["beta"], "beta"])
        for s in (a, b):
            await s.send_all(b"ping")
            assert await s.receive_some(10) == b"ping"
        logged = len(h.log)
        exposers["beta"].signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            await sees_reset(b, timeout=60)
            after = time.monotonic() - start
        finally:
            exposers["beta"].signal(signal.SIGCONT)
        await a.send_all(b"still")  # alpha's connection lived through it
        assert await a.receive_some(10) == b"still"
        await a.aclose()
        await b.aclose()
    cut = [line for line in h.log[logged:] if "--hold-open" in line]  # (the link coming
    assert len(cut) == 1, cut  # up at the start may have reset the first tries: not counted)
    assert "the link to beta has been down for" in cut[0], cut
    assert f"(--hold-open {HOLD_OPEN}): resetting 1 forwarded connections" in cut[0], cut
    assert after > 20, after  # not before toxcore's friend timeout (28-32 s)
    print(f"beta's connection reset {after:.1f} s after the cut; alpha's lived")
