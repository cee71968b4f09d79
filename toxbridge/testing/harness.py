"""Real toxbridge daemons (and bridge_local servers) in subprocesses, and a small app
client for their bridge port.

Used by the tests and the benchmarks; not part of the product's API."""

from __future__ import annotations

import os
import queue
import random
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import trio

from ..framing import DATA, EVENT, FrameDecoder, decode_event, encode_data
from ..network import NodeInfo, die_with_parent


def terminate(process: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` s; its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


class DaemonProc:
    """``python -m toxbridge --listen/--peer ...`` with its announcements parsed."""

    def __init__(self, args: list[str], profile: Path, network: NodeInfo, secret: str | None = "s3cret",
                 *, verbose: bool = True, raw: bool = True, wrap: list[str] | None = None) -> None:
        """``raw``: only the daemon (the bridge port is free for a test's app); otherwise
        the node runs bridge_local too and ``app_port`` is its JSON app port.

        ``wrap``: a command prefix that execs the daemon, e.g. ``["ip", "netns", "exec",
        NAME]`` to run it inside a network namespace (the prefix must exec, so that the
        process's PID is the daemon's and ``stop()`` signals the daemon itself)."""
        cmd = [*(wrap or ()), sys.executable, "-m", "toxbridge", *args, "--profile", str(profile),
               "--bootstrap", str(network)]
        if raw:
            cmd.append("--raw")
        if verbose:
            cmd.append("-vv")
        if network.tcp_port:
            cmd += ["--tcp-relay", f"{network.host}:{network.tcp_port}:{network.public_key.hex()}"]
        if secret is not None:
            cmd += ["--secret", secret]
        self.args = cmd
        self.profile = profile
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        # Announcements on stdout, logs on stderr: two pipes, so a log line written by the
        # tox thread can never land inside an announcement.
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                        preexec_fn=die_with_parent)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_log, daemon=True).start()
        self.tox_id = self.expect("tox-id ").split()[1]
        self.port = int(self.expect("bridge ").rsplit(":", 1)[1])
        self.app_port = None if raw else int(self.expect("app ").rsplit(":", 1)[1])

    def _read(self) -> None:
        for line in self.process.stdout:
            self.log.append(line.rstrip())
            self.lines.put(line.rstrip())
        self.process.stdout.close()

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self.log.append(line.rstrip())
        self.process.stderr.close()

    def expect(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r}; log:\n" + "\n".join(self.log)) from None
            if line.startswith(prefix):
                return line

    def stop(self) -> int:
        return terminate(self.process)

    def __enter__(self) -> DaemonProc:
        return self

    def __exit__(self, *exc_info) -> None:
        self.os_resume()
        self.stop()

    def os_resume(self) -> None:
        """SIGCONT, in case a test froze it (a frozen process ignores SIGTERM)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)


def stdio_command(peer_id: str, dest: str, profile: Path, network: NodeInfo,
                  secret: str = "s3cret", extra: tuple[str, ...] = ()) -> list[str]:
    """The command line of a ``-W`` node (stdin/stdout as one connection to ``dest`` at
    the peer ``peer_id``) on ``network``; its own lines go to stderr."""
    cmd = [sys.executable, "-m", "toxbridge", "--peer", peer_id, "-W", dest, "--raw",
           "--profile", str(profile), "--bootstrap", str(network), "--secret", secret, *extra]
    if network.tcp_port:
        cmd += ["--tcp-relay", f"{network.host}:{network.tcp_port}:{network.public_key.hex()}"]
    return cmd


class BridgeLocalProc:
    """``python -m bridge_local`` on a daemon's bridge port, as its own process (as node was
    in the source notes, and so that a test can kill -9 it); stopped by its PID. ``log``:
    a file for its stderr (``-v``), else it is discarded."""

    def __init__(self, bridge_port: int, data_dir: Path, log: Path | None = None,
                 start_timeout: float = 60) -> None:
        self._log = open(log, "a") if log is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge_local", "--bridge", f"127.0.0.1:{bridge_port}",
             "--app-port", "0", "--data-dir", str(data_dir), *(["-v"] if log else [])],
            stdout=subprocess.PIPE, stderr=self._log or subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, text=True, preexec_fn=die_with_parent)
        # Bounded: a bridge that cannot reach its daemon retries for ever without a word
        # on stdout, and a blocking readline would hold a trio test past its own timeout.
        try:
            ready, _, _ = select.select([self.process.stdout], [], [], start_timeout)
            line = self.process.stdout.readline() if ready else ""
        except BaseException:  # a test's own timeout: leave no process or open file behind
            self.kill()
            raise
        if not line.startswith("app "):
            self.kill()
            tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
            raise RuntimeError(f"bridge_local did not start within {start_timeout} s "
                               f"(first line {line!r}); its log ends:\n{tail}")
        self.app_port = int(line.rsplit(":", 1)[1])

    def stop(self) -> int:
        """SIGTERM (it says goodbye to the peer bridge), then SIGKILL after 15 s."""
        terminate(self.process)
        return self._close()

    def kill(self) -> int:
        """kill -9"""
        if self.process.poll() is None:
            self.process.kill()
        return self._close()

    def _close(self) -> int:
        self.process.wait()
        self.process.stdout.close()
        if self._log is not None:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> BridgeLocalProc:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class App:
    """A local app on a daemon's bridge port (trio)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(allowed_kinds=(DATA, EVENT))
        self.events: list[dict] = []

    @classmethod
    async def connect(cls, port: int) -> App:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def next_frame(self):
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            data = await self.stream.receive_some(65536)
            if not data:
                return None
            self.decoder.receive_data(data)

    async def next_event(self) -> dict:
        while True:
            frame = await self.next_frame()
            assert frame is not None, "connection closed"
            if frame.kind == EVENT:
                event = decode_event(frame.payload)
                self.events.append(event)
                return event

    async def wait_event(self, **match) -> dict:
        while True:
            event = await self.next_event()
            if all(event.get(k) == v for k, v in match.items()):
                return event

    async def wait_direct(self) -> dict:
        """Wait until the peer is online over direct UDP (the friend connection may come
        up over a TCP relay first; toxcore 0.2.20 then ends that connection and opens a new
        one when the UDP path is found, which the apps see as 302 and 301). Returns the
        event that said so."""
        online = False
        while True:
            event = await self.next_event()
            if event.get("code") in (301, 302):
                online = event["code"] == 301
            if online and event.get("link") == "UDP" and event.get("code") in (301, None):
                return event

    async def next_data(self) -> bytes | None:
        while True:
            frame = await self.next_frame()
            if frame is None:
                return None
            if frame.kind == DATA:
                return frame.payload
            self.events.append(decode_event(frame.payload))

    async def send(self, payload: bytes) -> None:
        await self.stream.send_all(encode_data(payload))

    async def aclose(self) -> None:
        await self.stream.aclose()


def random_frames(seed: int, total: int) -> list[bytes]:
    """Frames of awkward sizes (0, 1, 1023, 1024, random...) adding up to ``total`` bytes."""
    rng = random.Random(seed)
    out, size = [], 0
    while size < total:
        n = rng.choice([0, 1, 7, 100, 512, 1000, 1023, 1024, rng.randrange(1025)])
        out.append(rng.randbytes(n))
        size += n
    return out


async def stream_frames(src: App, dst: App, frames: list[bytes]) -> None:
    """Send ``frames`` from one app; assert the other gets exactly them, in order."""
    async def send() -> None:
        for start in range(0, len(frames), 64):
            await src.stream.send_all(b"".join(encode_data(f) for f in frames[start:start + 64]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        for i, expected in enumerate(frames):
            got = await dst.next_data()
            assert got == expected, f"frame {i}: {len(got or b'')} bytes, expected {len(expected)}"
