"""Real network shapes in Linux network namespaces, for tests: two private hosts behind
two NAT routers, and a "public" segment with the bootstrap node and extra DHT nodes.

    a (10.77.1.2) --lan1-- r1 [NAT, wan1 10.77.0.1] --+
                                                       +-- br0 in pub (10.77.0.254):
    b (10.77.2.2) --lan2-- r2 [NAT, wan2 10.77.0.2] --+    tox-bootstrapd (TCP relay) + DHT nodes

Shapes: ``cone`` (MASQUERADE, endpoint-independent mapping: hole punching works),
``symmetric`` (MASQUERADE --random-fully: a new port per destination, peers stay on the
TCP relay), ``no_udp`` (the routers forward no UDP at all: TCP relay only).

Isolation: every interface is a veth pair created directly inside namespaces made here (no
end in the host's namespace), every address is in 10.77.0.0/16 inside them, there is no
route or NAT towards the host's network, and LAN discovery and IPv6 are off in every Tox.
Namespace names are unique per ``Topology``; ``close()`` stops every process left inside
(by PID) and deletes the namespaces (the veths go with them). Needs root, ``ip`` and
``iptables``; ``unavailable()`` says why not when they are missing.

Not part of the product's API; used by tests (and benchmarks).
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ..network import NodeInfo, die_with_parent, write_bootstrapd_config

__all__ = ["Topology", "unavailable", "SHAPES", "PUBLIC_IP"]

SHAPES = ("cone", "symmetric", "no_udp")
PUBLIC_IP = "10.77.0.254"
PRIVATE_IP = {"a": "10.77.1.2", "b": "10.77.2.2"}
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _which(tool: str) -> str | None:
    """``tool``'s path, also looking in the sbin directories (a root shell's PATH may lack them)."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


IP = _which("ip") or "ip"


def _run(cmd: list[str], timeout: float = 15) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def unavailable() -> str | None:
    """Why namespaces with NAT cannot be made here, or None when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if _which(tool) is None:
            return f"no `{tool}` (apt-get install iproute2 iptables; native/toxcore-build.sh does)"
    if shutil.which("tox-bootstrapd") is None:
        return "no tox-bootstrapd (run native/toxcore-build.sh)"
    name = f"tbprobe{os.getpid()}{secrets.token_hex(2)}"
    try:
        _run([IP, "netns", "add", name])
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        if _iptables_for(name) is None:
            return "no iptables backend (nft or legacy) works inside a network namespace"
    finally:
        subprocess.run([IP, "netns", "del", name], capture_output=True, timeout=15)
    return None


def _iptables_for(ns: str) -> str | None:
    """The iptables command that works in namespace ``ns``: the default one (nf_tables
    on Debian 12), else the legacy or nft variant, whichever can add a NAT rule."""
    for name in ("iptables", "iptables-nft", "iptables-legacy"):
        exe = _which(name)
        if exe is None:
            continue
        r = subprocess.run([IP, "netns", "exec", ns, exe, "-t", "nat", "-A", "POSTROUTING",
                            "-o", "lo", "-j", "MASQUERADE", "--random-fully"],
                           capture_output=True, timeout=15)
        if r.returncode == 0:
            subprocess.run([IP, "netns", "exec", ns, exe, "-t", "nat", "-F"], capture_output=True, timeout=15)
            return exe
    return None


def _setns_connect(ns: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` *inside* namespace ``ns``, made from a thread
    that joins the namespace (setns is per thread); the socket stays in that namespace."""
    result: list = []

    def work() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            sock.settimeout(None)
            result.append(sock)
        except BaseException as exc:  # handed to the caller
            result.append(exc)

    # A fresh thread that ends right after: the namespace switch dies with it.
    t = threading.Thread(target=work, name=f"setns-{ns}", daemon=True)
    t.start()
    t.join(timeout + 5)
    if not result:
        raise TimeoutError(f"connecting to 127.0.0.1:{port} in {ns} took over {timeout} s")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


class Topology:
    """The five namespaces of one shape, with the bootstrap node and DHT nodes running in
    ``pub``. Use as a context manager (or call ``close()`` in a ``finally``)::

        with Topology("cone") as net:
            DaemonProc([...], profile, net.bootstrap, wrap=net.wrap("a"), ...)
    """

    def __init__(self, shape: str = "cone", *, dht_nodes: int = 4) -> None:
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, not {shape!r}")
        self.shape = shape
        self.prefix = f"tb{os.getpid()}{secrets.token_hex(3)}"
        self.ns = {role: f"{self.prefix}_{role}" for role in ("pub", "r1", "r2", "a", "b")}
        self.iptables = "iptables"
        self._dht_count = dht_nodes
        self._created: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._readers: list[threading.Thread] = []
        self._dir: tempfile.TemporaryDirectory | None = None
        self.bootstrap: NodeInfo | None = None  # tox-bootstrapd: DHT node and TCP relay
        self.dht: list[NodeInfo] = []  # the extra DHT nodes

    # -- set-up ---------------------------------------------------------------------

    def wrap(self, role: str) -> list[str]:
        """The command prefix that runs a program inside the namespace of ``role``."""
        return [IP, "netns", "exec", self.ns[role]]

    def _ip(self, role: str, *args: str) -> None:
        _run([IP, "-n", self.ns[role], *args])

    def _in(self, role: str, *args: str) -> None:
        _run([*self.wrap(role), *args])

    def _ipt(self, role: str, *args: str) -> None:
        self._in(role, self.iptables, *args)

    def open(self, timeout: float = 30) -> Topology:
        """Make the namespaces and start the nodes; on any failure, undo everything."""
        self._dir = tempfile.TemporaryDirectory(prefix="toxbridge-netns-")
        try:
            self._build()
            self._start_bootstrapd(timeout)
            self._start_dht_nodes(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        ns = self.ns
        for role, name in ns.items():
            _run([IP, "netns", "add", name])
            self._created.append(name)
            self._ip(role, "link", "set", "lo", "up")
        self.iptables = _iptables_for(ns["r1"]) or _which("iptables") or "iptables"
        self._ip("pub", "link", "add", "br0", "type", "bridge")
        self._ip("pub", "addr", "add", f"{PUBLIC_IP}/24", "dev", "br0")
        self._ip("pub", "link", "set", "br0", "up")
        masquerade = ["--random-fully"] if self.shape == "symmetric" else []
        for i, host in ((1, "a"), (2, "b")):
            r, wan, lan = f"r{i}", f"wan{i}", f"lan{i}"
            # veth pairs created directly in our namespaces: no end ever in the host's.
            _run([IP, "link", "add", wan, "netns", ns[r], "type", "veth",
                  "peer", "name", f"pw{i}", "netns", ns["pub"]])
            self._ip("pub", "link", "set", f"pw{i}", "master", "br0")
            self._ip("pub", "link", "set", f"pw{i}", "up")
            self._ip(r, "addr", "add", f"10.77.0.{i}/24", "dev", wan)
            self._ip(r, "link", "set", wan, "up")
            _run([IP, "link", "add", lan, "netns", ns[r], "type", "veth",
                  "peer", "name", "eth0", "netns", ns[host]])
            self._ip(r, "addr", "add", f"10.77.{i}.1/24", "dev", lan)
            self._ip(r, "link", "set", lan, "up")
            self._ip(host, "addr", "add", f"{PRIVATE_IP[host]}/24", "dev", "eth0")
            self._ip(host, "link", "set", "eth0", "up")
            self._ip(host, "route", "add", "default", "via", f"10.77.{i}.1")
            self._in(r, _which("sysctl") or "sysctl", "-qw", "net.ipv4.ip_forward=1")
            self._ipt(r, "-t", "nat", "-A", "POSTROUTING", "-o", wan, "-j", "MASQUERADE", *masquerade)
            if self.shape == "no_udp":
                self._ipt(r, "-A", "FORWARD", "-p", "udp", "-j", "DROP")
            # Stateful: nothing unsolicited from the WAN side reaches the private host.
            self._ipt(r, "-A", "FORWARD", "-i", wan, "-m", "conntrack", "--ctstate",
                      "ESTABLISHED,RELATED", "-j", "ACCEPT")
            self._ipt(r, "-A", "FORWARD", "-i", wan, "-j", "DROP")
            # Unsolicited packets to the router itself must not create conntrack entries
            # (they collide with the next outgoing mapping and break hole punching).
            self._ipt(r, "-A", "INPUT", "-i", wan, "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP")

    def _spawn(self, role: str, cmd: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([*self.wrap(role), *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, bufsize=1, preexec_fn=die_with_parent)
        self._procs.append(proc)
        return proc

    def _read_until(self, proc: subprocess.Popen, pattern: str, until: str, timeout: float) -> list[re.Match]:
        """Lines of ``proc`` until one matches ``until``: the matches of ``pattern`` among
        them. Its output is drained in a thread from then on, so it never blocks."""
        found: list[re.Match] = []
        seen: list[str] = []
        done = threading.Event()

        def reader() -> None:
            try:
                for line in proc.stdout:
                    if not done.is_set():
                        seen.append(line.rstrip())
                        m = re.search(pattern, line)
                        if m:
                            found.append(m)
                        if re.search(until, line):
                            done.set()
            except (OSError, ValueError):  # the pipe was closed under us: the node is gone
                pass
            finally:
                done.set()

        thread = threading.Thread(target=reader, daemon=True, name="netns-node-log")
        self._readers.append(thread)
        thread.start()
        if not done.wait(timeout) or proc.poll() is not None or not found:
            raise RuntimeError(f"{proc.args} did not come up in {timeout} s; output:\n" + "\n".join(seen))
        return found

    def _start_bootstrapd(self, timeout: float) -> None:
        root = Path(self._dir.name)
        port, tcp_port = 33445, 33446  # the namespace is ours: any port is free
        conf = write_bootstrapd_config(root, port, tcp_port)
        proc = self._spawn("pub", [shutil.which("tox-bootstrapd"), f"--config={conf}", "--foreground",
                                   "--log-backend=stdout"])
        pattern = r"Public Key: ([0-9A-Fa-f]{64})"
        m = self._read_until(proc, pattern, pattern, timeout)
        self.bootstrap = NodeInfo(PUBLIC_IP, port, bytes.fromhex(m[0].group(1)), tcp_port)

    def _start_dht_nodes(self, timeout: float) -> None:
        if not self._dht_count:
            return
        proc = self._spawn("pub", [sys.executable, "-m", "toxbridge.testing.netns", "dht-nodes",
                                   str(self._dht_count), str(self.bootstrap)])
        found = self._read_until(proc, r"^NODE (\S+)", r"^END$", timeout)
        self.dht = [NodeInfo.parse(m.group(1)) for m in found]

    def bootstrap_args(self) -> list[str]:
        """``--bootstrap`` options for the extra DHT nodes (the main node is DaemonProc's)."""
        return [a for n in self.dht for a in ("--bootstrap", str(n))]

    def connect(self, role: str, port: int, timeout: float = 10) -> socket.socket:
        """A TCP connection to 127.0.0.1:``port`` inside ``role``'s namespace (a daemon's
        bridge port there). The caller owns (and closes) the socket."""
        return _setns_connect(self.ns[role], port, timeout)

    # -- tear-down ------------------------------------------------------------------

    def close(self) -> None:
        """Stop our processes, then any other process still inside our namespaces (by
        PID), and delete the namespaces with their veths. Safe to call twice."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for thread in self._readers:  # they end at EOF, now that the nodes are gone
            thread.join(5)
        for proc in self._procs:
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        self._readers.clear()
        for name in reversed(self._created):
            r = subprocess.run([IP, "netns", "pids", name], capture_output=True, text=True, timeout=15)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run([IP, "netns", "del", name], capture_output=True, timeout=15)
        self._created.clear()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Topology:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()


def _dht_nodes(count: int, bootstrap: str) -> int:
    """Run ``count`` DHT nodes in this process (one thread) until SIGTERM: each
    bootstraps from ``bootstrap`` and from the others. Prints ``NODE HOST:PORT:KEY`` per
    node (HOST: the public address), then ``END``."""
    from ..network import loopback_options
    from ..tox import Tox

    main = NodeInfo.parse(bootstrap)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    toxes = [Tox(loopback_options()) for _ in range(count)]
    try:
        infos = [NodeInfo(PUBLIC_IP, t.udp_port, t.dht_id) for t in toxes]
        for t in toxes:
            t.bootstrap(main.host, main.port, main.public_key)
            for n in infos:
                t.bootstrap(n.host, n.port, n.public_key)
        for n in infos:
            print(f"NODE {n}", flush=True)
        print("END", flush=True)
        while not stop.is_set():
            for t in toxes:
                t.iterate()
            stop.wait(min(t.iteration_interval() for t in toxes))
    finally:
        for t in toxes:
            t.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "dht-nodes":
        sys.exit(_dht_nodes(int(sys.argv[2]), sys.argv[3]))
    print("usage: python -m toxbridge.testing.netns dht-nodes COUNT HOST:PORT:KEY", file=sys.stderr)
    sys.exit(2)
