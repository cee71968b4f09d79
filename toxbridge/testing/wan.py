"""The WAN emulator: a network namespace with only ``lo``, whose Tox traffic crosses a
delay line (delay each way, jitter, random loss, a bottleneck, cuts).

    with WanNamespace(PathSpec(delay_s=0.025, loss=0.01)) as wan:
        boot = wan.start_bootstrap()                       # tox-bootstrapd inside
        RawPeer(boot, wrap=wan.wrap) ...                   # or DaemonProc(..., wrap=wan.wrap)
        wan.line.stats()                                   # what the line did so far

How: iptables in the namespace sends every UDP packet arriving on ``lo`` (INPUT; and,
when asked, the TCP packets to and from given ports: a TCP relay's) to NFQUEUE; the line process
(``python -m toxbridge.testing.wan line``, inside the namespace) holds each packet as the
sans-IO ``DelayLine`` (``toxbridge.testing.wanpath``) says, then accepts it, or drops it.
Every packet between two processes of the namespace crosses the line once, so a round
trip gets the delay twice. The bottleneck is the line's own, one per sending port (each
Tox instance is one "host" with its own uplink), and not ``tc tbf`` on ``lo``: that would
shape the apps' TCP to their daemons on ``lo`` too and make data and acks share one
queue. ``lo``'s MTU is set to 1500 so that TCP segments are packet-sized, as on a real path.

The line is controlled over a Unix socket (a path, so also from processes in the
namespace): ``LineControl(path).stats()`` / ``.cut(True)``. ``close()`` stops every
process left in the namespace (by PID) and deletes it. Needs root, ``ip``, ``iptables``,
tox-bootstrapd and the ``netfilterqueue`` package (``pip install -e '.[wan]'``);
``unavailable()`` says why not. Not part of the product's API.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from ..network import NodeInfo, die_with_parent, write_bootstrapd_config
from .netns import IP, unavailable as netns_unavailable
from .wanpath import DelayLine, Fate, PathSpec, ipv4_size_and_source

__all__ = ["WanNamespace", "LineControl", "PathSpec", "unavailable"]

QUEUE = 7
HEADER_BYTES = 64  # the kernel copies only this much of each packet to us
CONTROL_MAX = 4096  # bytes of one control request
BOOTSTRAP_PORT, BOOTSTRAP_TCP_PORT = 33445, 33446  # the namespace is ours: these are free


def unavailable() -> str | None:
    """Why the WAN emulator cannot run here, or None when it can."""
    why = netns_unavailable()
    if why is not None:
        return why
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return ("no netfilterqueue package (pip install -e '.[wan]'; it needs "
                "libnetfilter-queue-dev, which native/toxcore-build.sh installs)")
    return None


def _run(cmd: list[str], timeout: float = 15) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


class LineControl:
    """A client of a running line's control socket: one request per connection."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)

    def request(self, obj: dict, timeout: float = 5.0) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.path)
            s.sendall(json.dumps(obj).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data or b"{}")
        if "error" in reply:
            raise RuntimeError(f"delay line: {reply['error']}")
        return reply

    def stats(self) -> dict:
        """The line's counters (``wanpath.LineStats``), ``held``, ``is_cut``, and
        ``kernel_dropped`` (packets the kernel's queue dropped before we saw them)."""
        return self.request({"cmd": "stats"})

    def cut(self, on: bool) -> dict:
        """Cut the path (everything in flight and everything after is dropped) or mend it."""
        return self.request({"cmd": "cut", "on": bool(on)})

    def set(self, **spec) -> dict:
        """Change the path from now on: ``PathSpec`` fields, e.g. ``set(loss=0.1)``."""
        return self.request({"cmd": "set", "spec": spec})

    def share_uplink(self, ports: list[int]) -> dict:
        """Packets from these source ports (UDP or TCP) queue in one bottleneck, as hosts
        behind one access link do (by default each port is a host with its own)."""
        return self.request({"cmd": "group", "ports": [int(p) for p in ports]})


class WanNamespace:
    """A namespace with only ``lo`` and a delay line on its Tox traffic. A context manager."""

    def __init__(self, spec: PathSpec, *, tcp_ports: tuple[int, ...] = (), udp: bool = True,
                 queue: int = QUEUE, line_seconds: float = 7200, chain: str = "INPUT") -> None:
        """``tcp_ports``: TCP ports whose traffic (both ways) crosses the line too, e.g.
        ``(BOOTSTRAP_TCP_PORT,)`` for the TCP relay; ``udp``: UDP crosses it (else UDP is
        untouched). ``line_seconds``: the line stops by itself after this long. ``chain``:
        where the line holds packets, INPUT (after ``lo`` has handed them over) or OUTPUT
        (before: the kernel then counts a held packet against its sender's socket, and TCP
        Small Queues lets a TCP socket have only a few in flight: 0.23 MB/s through a
        50 ms line; INPUT: 6.03 of its 6.25)."""
        if chain not in ("INPUT", "OUTPUT"):
            raise ValueError("chain is INPUT or OUTPUT")
        self.spec = spec
        self.tcp_ports = tuple(tcp_ports)
        self.udp = udp
        self.queue = queue
        self.line_seconds = line_seconds
        self.chain = chain
        self.name = f"tbwan{os.getpid()}{secrets.token_hex(3)}"
        self.wrap = [IP, "netns", "exec", self.name]
        self.iptables = shutil.which("iptables") or shutil.which("iptables", path="/usr/sbin:/sbin") or "iptables"
        self._dir: tempfile.TemporaryDirectory | None = None
        self._created = False
        self._procs: list[subprocess.Popen] = []
        self._line: subprocess.Popen | None = None
        self.line: LineControl | None = None
        self.final_stats: dict | None = None

    def open(self, timeout: float = 20) -> WanNamespace:
        """Make the namespace, start the line, add the rules; on failure, undo everything."""
        try:
            self._dir = tempfile.TemporaryDirectory(prefix="toxbridge-wan-")
            _run([IP, "netns", "add", self.name])
            self._created = True
            _run([IP, "-n", self.name, "link", "set", "lo", "mtu", "1500", "up"])
            self._start_line(timeout)
            rules = [["-p", "udp"]] if self.udp else []
            for port in self.tcp_ports:
                rules += [["-p", "tcp", "--dport", str(port)], ["-p", "tcp", "--sport", str(port)]]
            chain, iface = ("INPUT", "-i") if self.chain == "INPUT" else ("OUTPUT", "-o")
            for rule in rules:
                _run([*self.wrap, self.iptables, "-A", chain, iface, "lo", *rule,
                      "-j", "NFQUEUE", "--queue-num", str(self.queue)])
        except BaseException:
            self.close()
            raise
        return self

    def _start_line(self, timeout: float) -> None:
        control = Path(self._dir.name) / "line.sock"
        cmd = [*self.wrap, sys.executable, "-m", "toxbridge.testing.wan", "line", "--queue", str(self.queue),
               "--spec", json.dumps(self.spec.to_dict()), "--control", str(control),
               "--seconds", str(self.line_seconds)]
        self._line = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                      bufsize=1, preexec_fn=die_with_parent)
        self._procs.append(self._line)
        ready = _Lines(self._line).next(timeout)
        if ready != "ready":
            raise RuntimeError(f"the delay line did not start (said {ready!r})")
        self.line = LineControl(control)

    def blast(self, proto: str, *, rate: float = 6e6, seconds: float = 5.0) -> dict:
        """Plain UDP (paced at ``rate`` bytes/s on the wire) or TCP (as fast as it goes;
        ``wanblast.BLAST_TCP_PORT`` must be in ``tcp_ports``) through the line, no Tox:
        ``toxbridge.testing.wanblast``'s JSON, with the line's counters meanwhile
        (``line``). Is the emulator what limits a row?"""
        before = self.line.stats()
        proc = self.spawn([sys.executable, "-m", "toxbridge.testing.wanblast", proto, "--rate",
                           str(rate), "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=seconds + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"the {proto} blaster failed (exit status {proc.returncode})")
        after = self.line.stats()
        result = json.loads(out.strip().splitlines()[-1])
        result["line"] = {k: after[k] - before[k] for k in ("offered", "queue_full", "lost")}
        result["line"]["cpu_s"] = round(after["cpu_s"] - before["cpu_s"], 3)
        return result

    @property
    def control_path(self) -> str:
        assert self.line is not None, "not open"
        return self.line.path

    def spawn(self, cmd: list[str], **popen) -> subprocess.Popen:
        """Start ``cmd`` inside the namespace; ``close()`` stops it."""
        popen.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen([*self.wrap, *cmd], preexec_fn=die_with_parent, **popen)
        self._procs.append(proc)
        return proc

    def start_bootstrap(self, timeout: float = 15) -> NodeInfo:
        """tox-bootstrapd inside (DHT node and TCP relay on ``BOOTSTRAP_TCP_PORT``)."""
        exe = shutil.which("tox-bootstrapd")
        if exe is None:
            raise RuntimeError("no tox-bootstrapd (run native/toxcore-build.sh)")
        root = Path(self._dir.name) / "bootstrapd"
        root.mkdir()
        conf = write_bootstrapd_config(root, BOOTSTRAP_PORT, BOOTSTRAP_TCP_PORT)
        proc = self.spawn([exe, f"--config={conf}", "--foreground", "--log-backend=stdout"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines = _Lines(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = lines.next(deadline - time.monotonic())
            m = re.search(r"Public Key: ([0-9A-Fa-f]{64})", line or "")
            if m:
                return NodeInfo("127.0.0.1", BOOTSTRAP_PORT, bytes.fromhex(m.group(1)), BOOTSTRAP_TCP_PORT)
            if line is None:
                break
        raise RuntimeError("tox-bootstrapd did not come up in the WAN namespace")

    def exists(self) -> bool:
        """Is the namespace still there (``ip netns list``)?"""
        return any(line.split()[:1] == [self.name] for line in _run([IP, "netns", "list"]).splitlines())

    def close(self) -> None:
        """The line's last counters into ``final_stats``; stop every process in the
        namespace (ours by SIGTERM, any other by PID with SIGKILL); delete it. Safe twice."""
        if self.line is not None and self._line is not None and self._line.poll() is None:
            try:
                self.final_stats = self.line.stats()
            except (OSError, ValueError, RuntimeError):
                pass
        for proc in reversed(self._procs):  # the line last: nothing is left held
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._procs.clear()
        self._line = None
        if self._created:
            r = subprocess.run([IP, "netns", "pids", self.name], capture_output=True, text=True, timeout=15)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run([IP, "netns", "del", self.name], capture_output=True, timeout=15)
            self._created = False
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> WanNamespace:
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Lines:
    """A process's stdout lines, read by one thread into a queue (never blocks the caller)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        self._proc = proc
        threading.Thread(target=self._read, daemon=True, name="wan-lines").start()

    def _read(self) -> None:
        try:
            for line in self._proc.stdout:
                if self._q.qsize() < 1000:  # bounded: later lines are only drained
                    self._q.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass
        self._q.put(None)

    def next(self, timeout: float) -> str | None:
        """The next line within ``timeout`` s; None at EOF or when the time is up."""
        try:
            return self._q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None


# -- the line process (inside the namespace) -------------------------------------------


def _kernel_dropped(queue: int) -> int:
    """Packets the kernel dropped on ``queue`` (its queue full, or our socket's buffer)."""
    try:
        for line in Path("/proc/net/netfilter/nfnetlink_queue").read_text().split("\n"):
            f = line.split()
            if len(f) >= 7 and f[0] == str(queue):
                return int(f[5]) + int(f[6])
    except OSError:
        pass
    return 0


class _Line:
    """The shell: NFQUEUE in, ``DelayLine`` decides, verdicts out; a control socket."""

    def __init__(self, spec: PathSpec, queue: int, control: str) -> None:
        from netfilterqueue import NetfilterQueue

        self.queue = queue
        self.line: DelayLine = DelayLine(spec)
        self.nfq = NetfilterQueue()
        with warnings.catch_warnings():  # "rcvbuf limit is now N": the kernel's cap is fine
            warnings.simplefilter("ignore", RuntimeWarning)
            self.nfq.bind(queue, self._on_packet, max_len=spec.max_held + 1024, range=HEADER_BYTES)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(control)
        self.server.listen(8)
        self.server.setblocking(False)
        self.clients: dict[socket.socket, bytes] = {}
        self.stop = False
        self.uplinks: dict[int, int] = {}  # source port -> the direction it queues in

    def _on_packet(self, pkt) -> None:
        size, source = ipv4_size_and_source(pkt.get_payload())
        direction = self.uplinks.get(source, source)
        if self.line.offer(time.monotonic(), pkt, size, direction) is not Fate.HELD:
            pkt.drop()

    def _answer(self, obj: dict) -> dict:
        cmd = obj.get("cmd")
        if cmd == "stats":
            pass
        elif cmd == "cut":
            for pkt in self.line.cut(time.monotonic(), bool(obj.get("on"))):
                pkt.drop()
        elif cmd == "set":
            try:
                self.line.reconfigure(dataclasses.replace(self.line.spec, **obj.get("spec", {})))
            except (TypeError, ValueError) as exc:
                return {"error": f"bad spec: {exc}"}
        elif cmd == "group":
            ports = obj.get("ports") or []
            if not all(isinstance(p, int) and 0 < p < 65536 for p in ports):
                return {"error": "ports must be 1..65535"}
            for port in ports:
                self.uplinks[port] = -ports[0]  # a key no port has
        elif cmd == "stop":
            self.stop = True
        else:
            return {"error": f"unknown command {cmd!r}"}
        return self.stats()

    def stats(self) -> dict:
        return {**self.line.stats.to_dict(), "held": self.line.held, "is_cut": self.line.is_cut,
                "kernel_dropped": _kernel_dropped(self.queue),
                "cpu_s": round(time.process_time(), 3)}  # the line's own: is it the limit?

    def _client(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(CONTROL_MAX)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buf = self.clients[conn] + data
        if data and not buf.endswith(b"\n") and len(buf) < CONTROL_MAX:
            self.clients[conn] = buf
            return
        try:
            reply = self._answer(json.loads(buf)) if buf.endswith(b"\n") else {"error": "bad request"}
        except ValueError:
            reply = {"error": "bad request"}
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        del self.clients[conn]
        conn.close()

    def run(self, seconds: float) -> dict:
        fd = self.nfq.get_fd()
        end = time.monotonic() + seconds
        print("ready", flush=True)
        try:
            while not self.stop and time.monotonic() < end:
                now = time.monotonic()
                for pkt in self.line.due(now):
                    pkt.accept()
                nxt = self.line.next_due()
                timeout = 0.05 if nxt is None else min(0.05, max(0.0, nxt - time.monotonic()))
                readable, _, _ = select.select([fd, self.server, *self.clients], [], [], timeout)
                for r in readable:
                    if r == fd:
                        self.nfq.run(block=False)
                    elif r is self.server:
                        self._accept()
                    else:
                        self._client(r)
        finally:
            for pkt in self.line.drain():  # let what is in flight go: nothing hangs
                pkt.accept()
            self.nfq.unbind()
            for conn in self.clients:
                conn.close()
            self.server.close()
        return self.stats()

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except BlockingIOError:
            return
        if len(self.clients) >= 8:
            conn.close()
            return
        conn.setblocking(False)
        self.clients[conn] = b""


def _line_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m toxbridge.testing.wan line")
    parser.add_argument("--queue", type=int, default=QUEUE)
    parser.add_argument("--spec", required=True, help="the PathSpec as JSON")
    parser.add_argument("--control", required=True, help="path of the control socket")
    parser.add_argument("--seconds", type=float, default=7200)
    args = parser.parse_args(argv)
    line = _Line(PathSpec.from_dict(json.loads(args.spec)), args.queue, args.control)

    def on_signal(*_) -> None:
        line.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stats = line.run(args.seconds)
    print("stats " + json.dumps(stats), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "line":
        sys.exit(_line_main(sys.argv[2:]))
    print("usage: python -m toxbridge.testing.wan line --spec JSON --control PATH", file=sys.stderr)
    sys.exit(2)
