"""Tox nodes and options: ``NodeInfo`` (HOST:PORT:KEY), the options every Tox of ours
gets (LAN discovery and IPv6 off), and the bootstrap nodes ``toxbridge bootstrap-node``
runs (a Python Tox that only iterates, or ``tox-bootstrapd`` with a private config).

Never bootstraps to a public node. LAN discovery is off because it broadcasts on the
machine's real interfaces. ``toxbridge.testing.privnet`` builds private networks on these.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ToxbridgeError
from .tox import PUBLIC_KEY_SIZE, Tox, ToxOptions, parse_key

__all__ = [
    "NodeInfo",
    "loopback_options",
    "BootstrapNode",
    "BootstrapDaemon",
    "free_port",
    "die_with_parent",
    "write_bootstrapd_config",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class NodeInfo:
    """A DHT node (or TCP relay): ``host:port:public_key``."""

    host: str
    port: int
    public_key: bytes
    tcp_port: int | None = None  # the TCP relay port, when the node is one

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.public_key.hex().upper()}"

    @classmethod
    def parse(cls, text: str) -> NodeInfo:
        """Parse ``HOST:PORT:KEY``. Raises ConfigError with the reason."""
        try:
            host, port, key = text.strip().rsplit(":", 2)
            port_n = int(port)
            if not 0 < port_n < 65536 or not host:
                raise ValueError("port out of range" if host else "no host")
            return cls(host, port_n, parse_key(key, PUBLIC_KEY_SIZE, "node key"))
        except ValueError as exc:
            raise ConfigError(f"bad node {text!r} (want HOST:PORT:PUBLIC_KEY): {exc}") from None


def loopback_options(**overrides) -> ToxOptions:
    """Options for a Tox on the private loopback network: LAN discovery and IPv6 off.

    Unless a port is given, the UDP port is one the kernel has not handed out lately
    (not toxcore's first free port from 33445): a new node reusing the port of one
    that just stopped finds the DHT still full of the old key there, and its friend
    connection then took over a minute instead of ~10 s.
    """
    options = ToxOptions(ipv6=False, local_discovery=False)
    options = dataclasses.replace(options, **overrides)
    if options.udp and not options.start_port and not options.end_port:
        port = free_port()
        options = dataclasses.replace(options, start_port=port, end_port=port)
    if options.local_discovery or options.ipv6:
        raise ConfigError("a private-network Tox must have LAN discovery and IPv6 off")
    return options


def die_with_parent() -> None:
    """In a child before exec: ask Linux to SIGTERM it when its parent dies, so a
    killed test run leaves no node behind (a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port that is free on 127.0.0.1 right now (for UDP, and TCP when asked)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class BootstrapNode:
    """A Tox instance that only iterates, in a thread: a DHT bootstrap node.

    Optionally a TCP relay too (``tcp_port``), though tox-bootstrapd relays better.
    """

    def __init__(self, port: int = 0, tcp_port: int = 0) -> None:
        start, end = (port, port) if port else (0, 0)
        self.tox = Tox(loopback_options(start_port=start, end_port=end, tcp_port=tcp_port))
        self.info = NodeInfo(LOOPBACK, self.tox.udp_port, self.tox.dht_id, tcp_port or None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Iterate until ``stop()``; call from the thread that owns the node."""
        while not self._stop.is_set():
            self.tox.iterate()
            self._stop.wait(self.tox.iteration_interval())

    def start(self) -> BootstrapNode:
        self._thread = threading.Thread(target=self.run, name="bootstrap-node", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.tox.close()

    def __enter__(self) -> BootstrapNode:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def write_bootstrapd_config(root: Path, port: int, tcp_port: int) -> Path:
    """A tox-bootstrapd config in ``root``: no LAN discovery, no IPv6, no bootstrap nodes
    (a private network), a TCP relay on ``tcp_port``."""
    conf = root / "tox-bootstrapd.conf"
    conf.write_text(
        f'port = {port}\n'
        f'keys_file_path = "{root / "keys"}"\n'
        f'pid_file_path = "{root / "pid"}"\n'
        "enable_ipv6 = false\n"
        "enable_ipv4_fallback = true\n"
        "enable_lan_discovery = false\n"
        "enable_tcp_relay = true\n"
        f"tcp_relay_ports = [{tcp_port}]\n"
        "enable_motd = false\n"
        'motd = ""\n'
        "bootstrap_nodes = ()\n"
    )
    return conf


class BootstrapDaemon:
    """``tox-bootstrapd`` on 127.0.0.1 with a generated config: DHT node and TCP relay.

    The config sets LAN discovery and IPv6 off and has no bootstrap nodes, so the
    daemon talks only to the peers that bootstrap from it.
    """

    def __init__(self, port: int = 0, tcp_port: int = 0, executable: str = "tox-bootstrapd") -> None:
        exe = shutil.which(executable)
        if exe is None:
            raise ToxbridgeError(f"{executable} not found (run native/toxcore-build.sh)")
        self._exe = exe
        self._port = port
        self._tcp_port = tcp_port
        self._dir: tempfile.TemporaryDirectory | None = None
        self.process: subprocess.Popen | None = None
        self.info: NodeInfo | None = None

    def _config(self, root: Path, port: int, tcp_port: int) -> Path:
        return write_bootstrapd_config(root, port, tcp_port)

    def start(self, timeout: float = 10.0) -> BootstrapDaemon:
        """Start the daemon and wait for its ``Public Key:`` line.

        Raises ToxbridgeError when it does not come up (e.g. a port is taken).
        """
        for attempt in range(5):
            port = self._port or free_port()
            tcp_port = self._tcp_port or free_port(socket.SOCK_STREAM)
            self._dir = tempfile.TemporaryDirectory(prefix="toxbridge-bootstrapd-")
            conf = self._config(Path(self._dir.name), port, tcp_port)
            self.process = subprocess.Popen(
                [self._exe, f"--config={conf}", "--foreground", "--log-backend=stdout"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, bufsize=1, preexec_fn=die_with_parent,
            )
            key = self._read_key(timeout)
            if key is not None:
                self.info = NodeInfo(LOOPBACK, port, key, tcp_port)
                # Keep draining its output so it never blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True, name="bootstrapd-log").start()
                return self
            self.stop()
            if self._port:
                break
        raise ToxbridgeError("tox-bootstrapd did not start (see its log lines above)")

    def _read_key(self, timeout: float) -> bytes | None:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        result: list[bytes] = []

        def reader() -> None:
            for line in self.process.stdout:
                log.debug("tox-bootstrapd: %s", line.rstrip())
                m = re.search(r"Public Key: ([0-9A-Fa-f]{64})", line)
                if m:
                    result.append(bytes.fromhex(m.group(1)))
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(max(0.0, deadline - time.monotonic()))
        if result and self.process.poll() is None:
            return result[0]
        return None

    def _drain(self) -> None:
        proc = self.process
        if proc is not None and proc.stdout is not None:
            try:
                for line in proc.stdout:
                    log.debug("tox-bootstrapd: %s", line.rstrip())
            except (ValueError, OSError):  # stop() closed the pipe under us: done
                pass

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> BootstrapDaemon:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
