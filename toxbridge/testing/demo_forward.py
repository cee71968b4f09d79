"""The demo's port forwarding part (``toxbridge.testing.demo``, part 3).

An HTTP server (``http.server`` in a thread) and a line-echo server on the listener's side,
both exposed with ``--expose``; the peer forwards a local port to the HTTP server with
``-L`` and a page is fetched through it with ``urllib``, its bytes compared. Then a ``-W``
node (the peer's profile again: the listener knows that identity) opens an interactive line
session to the line-echo server over its stdin/stdout, and each line's answer is checked.
"""

from __future__ import annotations

import hashlib
import http.client
import http.server
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import trio

from ..network import NodeInfo
from .harness import DaemonProc, stdio_command
from .servers import ThreadServer, line_echo

LINK_WAIT = 120.0  # s for the forward's Tox link to come up
LINES = ("hello over -W", "ls -l", "你好", "exit")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the demo prints its own lines
        pass


def _fetch(url: str, deadline: float) -> tuple[int, bytes]:
    """GET ``url``, again every 0.5 s while the link is not up yet (the forward then
    resets the connection), until ``deadline``."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as reply:
                return reply.status, reply.read()
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run_forwarding(network: NodeInfo, workdir: Path, page_kb: int, say) -> bool:
    """Part 3 of the demo; True if the page and every line came back right."""
    site = workdir / "site"
    site.mkdir()
    page = ("<!doctype html><title>toxbridge</title><p>served on the listener's side, "
            "fetched through -L</p>\n<pre>" + secrets.token_hex(page_kb * 500) + "</pre>\n").encode()
    (site / "index.html").write_bytes(page)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    try:
        with ThreadServer(line_echo) as lines:
            web, line = f"127.0.0.1:{httpd.server_port}", f"127.0.0.1:{lines.port}"
            say(f"  an HTTP server on {web} and a line-echo server on {line}, on the listener's side")
            with DaemonProc(["--listen", "--expose", web, "--expose", line], workdir / "x.tox",
                            network, verbose=False) as exposer:
                say(f"  toxbridge --listen --expose {web} --expose {line}")
                with DaemonProc(["--peer", exposer.tox_id, "-L", f"0:{web}"], workdir / "f.tox",
                                network, verbose=False) as fwd:
                    announced = fwd.expect("forward ")
                    say(f"  toxbridge --peer <ID> -L 0:{web}   says: {announced}")
                    local = announced.split()[1]
                    t = time.monotonic()
                    status, body = _fetch(f"http://{local}/", t + LINK_WAIT)
                    same = body == page
                    say(f"  urllib GET http://{local}/ -> {status}, {len(body)} bytes after "
                        f"{time.monotonic() - t:.1f} s (the link came up meanwhile), sha256 "
                        f"{'equal' if same else 'DIFFERENT'} ({hashlib.sha256(body).hexdigest()[:16]}…)")
                    t = time.monotonic()
                    status, again = _fetch(f"http://{local}/", t + 30)
                    say(f"  again on the live link: {status} in {(time.monotonic() - t) * 1000:.0f} ms, "
                        f"bytes {'equal' if again == page else 'DIFFERENT'}")
                    same &= again == page
                # A profile of its own: a new peer of the listener. With the -L node's
                # profile the listener first had to notice that node's successor, and on
                # toxcore 0.2.20 the first open could then miss its 20 s answer.
                say(f"  -W {line}: a node of its own, stdin/stdout as one connection")
                cmd = stdio_command(exposer.tox_id, line, workdir / "w.tox", network)
                answered = trio.run(_session, cmd, say)
    finally:
        httpd.shutdown()
        httpd.server_close()
    return same and answered


async def _session(cmd: list[str], say) -> bool:
    proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL)
    got = b""
    ok = True
    try:
        for i, text in enumerate(LINES):
            want = f"echo: {text}\n".encode()
            t = time.perf_counter()
            with trio.fail_after(LINK_WAIT if i == 0 else 10):
                try:
                    await proc.stdin.send_all(f"{text}\n".encode())
                except trio.BrokenResourceError:  # the -W node already exited
                    say(f"  > {text!r}: the -W node exited before it was answered")
                    return False
                while b"\n" not in got:
                    data = await proc.stdout.receive_some(4096)
                    if not data:
                        break
                    got += data
            answer, _, got = got.partition(b"\n")
            ok &= answer + b"\n" == want
            say(f"  > {text!r}  < {answer.decode(errors='replace')!r}  "
                f"({(time.perf_counter() - t) * 1000:.0f} ms{', with the Tox connect' if i == 0 else ''})")
        await proc.stdin.aclose()  # EOF: the server's EOF ends the -W node
        with trio.fail_after(30):
            code = await proc.wait()
        say(f"  stdin closed: the -W node exited with status {code}")
        return ok and code == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdin.aclose()
        await proc.stdout.aclose()
