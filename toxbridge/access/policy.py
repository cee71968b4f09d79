"""Who may use a node's local ports: the app port (bridge_local) and the bridge port.

By default only processes of the node's own uid: on accept the server asks the kernel who
owns the other end, through ``SO_PEERCRED`` on a Unix socket, or for loopback TCP by a
sock_diag netlink lookup of the connecting socket by both ends' address and port
(:mod:`.sockdiag`; microseconds), falling back to the socket table (``/proc/net/tcp``,
:mod:`.procnet`; milliseconds, read in a worker thread) where netlink is not available. With an app token (``--app-token-file``) other uids may use the
app port if their ``1000`` login carries it (``bridge_local.apptoken``); the bridge port
has no login, so it stays same-uid. ``--app-open`` turns the check off.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import logging
import os
import socket
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import trio

from ..errors import ConfigError
from .procnet import LISTEN, TIME_WAIT, find_owner, parse_table
from .sockdiag import NETLINK_SOCK_DIAG, encode_request, parse_reply

__all__ = ["ADMIT", "NEED_TOKEN", "REFUSE", "AccessPolicy", "access_options",
           "add_access_arguments", "check", "check_unix_path", "open_unix_listener", "peer_uid", "read_token_file", "refuse", "token_matches",
           "unlink_unix_listener", "warn_if_open"]

log = logging.getLogger(__name__)

ADMIT, NEED_TOKEN, REFUSE = "admit", "token", "refuse"
# The tables of one thread's network namespace ({tid}: the trio thread's, read from a worker).
PROC_TABLES = ("/proc/self/task/{tid}/net/tcp", "/proc/self/task/{tid}/net/tcp6")
MIN_TOKEN_LENGTH = 16
_UCRED = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class AccessPolicy:
    owner_uid: int  # the node's own (effective) uid
    open: bool = False  # --app-open: everyone is admitted
    token: bytes | None = None  # app port: another uid is admitted if its login carries this

    def verdict(self, uid: int | None, tokens: bool) -> str:
        """ADMIT, NEED_TOKEN (the login must carry the token) or REFUSE a connection whose
        other end belongs to ``uid`` (None: unknown). ``tokens``: the port has a login."""
        if self.open or uid == self.owner_uid:
            return ADMIT
        if tokens and self.token is not None:
            return NEED_TOKEN
        return REFUSE

    def refusal(self, uid: int | None) -> str:
        who = f"uid {uid}" if uid is not None else "a process whose uid could not be found"
        return (f"this port admits only processes of uid {self.owner_uid} (the node's user); "
                f"this connection comes from {who}")


def token_matches(expected: bytes, given: object) -> bool:
    """Constant time in the token's content."""
    if not isinstance(given, str):
        return False
    try:
        return hmac.compare_digest(given.encode("utf-8"), expected)
    except UnicodeEncodeError:  # a lone surrogate
        return False


def read_token_file(path: Path) -> bytes:
    """The token in ``path`` (surrounding whitespace dropped). Raises ConfigError."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the app token file {path}: {exc}") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ConfigError(f"the app token file {path} must hold one token of at least "
                          f"{MIN_TOKEN_LENGTH} characters, without spaces")
    return token.encode("utf-8")


# -- who is on the other end ---------------------------------------------------------------

def tcp_owner_uid(peer: tuple, ours: tuple, tables: tuple[str, ...] | None = None) -> int | None:
    """The uid owning the local socket at ``peer`` that is connected to ``ours``, from the
    kernel's socket tables (default: those of the calling thread's network namespace);
    None if it is not there (not a local process, or gone)."""
    if tables is None:
        tables = tuple(t.format(tid=threading.get_native_id()) for t in PROC_TABLES)
    for path in tables:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
        except OSError:
            continue  # no IPv6, or no /proc: then nobody is found, and nobody is admitted
        try:
            uid = find_owner(parse_table(text, ports=(peer[1], ours[1])), peer, ours)
        except ValueError as exc:
            log.warning("%s: %s", path, exc)
            continue
        if uid is not None:
            return uid
    return None


class DiagUnavailable(Exception):
    """sock_diag cannot answer here (no netlink, a kernel without inet_diag): use /proc."""


def diag_owner_uid(peer: tuple, ours: tuple) -> int | None:
    """As :func:`tcp_owner_uid`, by one sock_diag lookup in the calling thread's network
    namespace. Raises DiagUnavailable when netlink cannot answer."""
    address = ipaddress.ip_address(peer[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    mine = ipaddress.ip_address(ours[0])
    if isinstance(mine, ipaddress.IPv6Address) and mine.ipv4_mapped is not None:
        mine = mine.ipv4_mapped
    if address.version == 4:
        # The connecting socket is AF_INET, or a dual-stack AF_INET6 one that sees both
        # ends as IPv4-mapped addresses.
        asks = [(socket.AF_INET, str(address), str(mine)),
                (socket.AF_INET6, f"::ffff:{address}", f"::ffff:{mine}")]
    else:
        asks = [(socket.AF_INET6, str(address), str(mine))]
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                             NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise DiagUnavailable(str(exc)) from None
    with sock:
        for seq, (family, local, remote) in enumerate(asks, 1):
            try:
                sock.send(encode_request(family, (local, peer[1]), (remote, ours[1]), seq))
                # The kernel answers inside send(): the reply is already queued.
                entry = parse_reply(sock.recv(8192, socket.MSG_DONTWAIT), seq)
            except (OSError, ValueError) as exc:
                raise DiagUnavailable(str(exc)) from None
            # As in the /proc table: a socket no process holds (inode 0) shows uid 0.
            if entry is not None and entry.inode and entry.state not in (TIME_WAIT, LISTEN):
                return entry.uid
    return None


def unix_peer_uid(sock: socket.socket) -> int:
    """The uid of the process that connected to a Unix socket (SO_PEERCRED)."""
    _pid, uid, _gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid


async def peer_uid(stream: trio.SocketStream, attempts: int = 5, delay: float = 0.01,
                   tables: tuple[str, ...] | None = None) -> int | None:
    """The uid on the other end of an accepted connection, or None.

    The connecting socket is known to the kernel before its connection can be accepted;
    the retries are for a kernel that has not published it yet, bounded by ``attempts``.
    sock_diag answers on the loop; the /proc fallback reads the tables in a worker thread:
    the kernel walks its whole socket hash to print them (2-5 ms here, far more on a busy
    host), which must not stall the loop."""
    sock = stream.socket
    if sock.family == socket.AF_UNIX:
        return unix_peer_uid(sock)
    try:
        peer, ours = sock.getpeername()[:2], sock.getsockname()[:2]
    except OSError:  # already reset
        return None
    diag = tables is None  # given tables (the tests' own files): no netlink
    tables = tuple(t.format(tid=threading.get_native_id()) for t in tables or PROC_TABLES)
    for attempt in range(attempts):
        uid = None
        if diag:
            try:
                uid = diag_owner_uid(peer, ours)
            except DiagUnavailable as exc:
                log.debug("sock_diag unavailable (%s): reading the socket tables", exc)
                diag = False
        if not diag:
            uid = await trio.to_thread.run_sync(tcp_owner_uid, peer, ours, tables)
        if uid is not None:
            return uid
        if attempt + 1 < attempts:
            await trio.sleep(delay)
    return None


async def check(stream: trio.SocketStream, policy: AccessPolicy, tokens: bool
                ) -> tuple[str, int | None]:
    """(verdict, uid) for an accepted connection; the lookup is skipped when open."""
    if policy.open:
        return ADMIT, None
    uid = await peer_uid(stream)
    return policy.verdict(uid, tokens), uid


# -- a Unix-socket listener ----------------------------------------------------------------

async def open_unix_listener(path: Path, backlog: int = 128
                             ) -> tuple[trio.SocketListener, tuple[int, int]]:
    """Listen on a Unix socket at ``path``, mode 0600 before it accepts anything (a connect
    before ``listen()`` is refused). A stale socket file is replaced; a live one is an error.
    Returns the listener and the file's identity, for :func:`unlink_unix_listener`.

    Raises ConfigError.
    """
    check_unix_path(path, remove_stale=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(str(path))
        os.chmod(path, 0o600)
        st = path.lstat()
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on --app-socket {path}: {exc}") from None
    return trio.SocketListener(sock), (st.st_dev, st.st_ino)


def check_unix_path(path: Path, remove_stale: bool = False) -> None:
    """Can we listen at ``path``? A socket nobody listens on is stale (left by a node that
    died): removed if ``remove_stale``. Raises ConfigError."""
    if not path.parent.is_dir():
        raise ConfigError(f"--app-socket {path}: the directory {path.parent} does not exist")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--app-socket {path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except OSError:
            if remove_stale:
                path.unlink(missing_ok=True)
            return
    raise ConfigError(f"--app-socket {path} is in use by a running process")


def unlink_unix_listener(path: Path, identity: tuple[int, int]) -> None:
    """Remove the socket file if it is still ours (a successor may have replaced it)."""
    try:
        st = path.lstat()
        if (st.st_dev, st.st_ino) == identity:
            path.unlink()
    except OSError:
        pass


# -- the command line ----------------------------------------------------------------------

def add_access_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-socket", type=Path, metavar="PATH",
                        help="also serve the app protocol on a Unix socket (mode 0600)")
    parser.add_argument("--app-token-file", type=Path, metavar="FILE",
                        help="other accounts may use the app port if their login carries "
                             "the token in FILE (the bridge port stays same-user)")
    parser.add_argument("--app-open", action="store_true",
                        help="DANGEROUS: any local account may use the app and bridge ports")


def warn_if_open(args: argparse.Namespace) -> None:
    if args.app_open:
        log.warning("--app-open: any local account can use this node's app and bridge ports "
                    "(and log in as any user)")


def access_options(args: argparse.Namespace) -> dict:
    """BridgeConfig's access fields from the arguments. Raises ConfigError."""
    if args.app_socket is not None:
        check_unix_path(args.app_socket)  # before anything starts; again when listening
    token = read_token_file(args.app_token_file) if args.app_token_file else None
    return {"app_socket": args.app_socket, "app_token": token, "app_open": args.app_open}


async def refuse(stream: trio.abc.HalfCloseableStream, message: bytes, grace: float = 1.0,
                 limit: int = 256 * 1024) -> None:
    """Send one error message and close. What the client already sent is read and dropped
    first (bounded in time and bytes): closing on unread data sends a reset, which can make
    the client's kernel drop our message before the client reads it."""
    with trio.move_on_after(grace):
        try:
            await stream.send_all(message)
            await stream.send_eof()
            seen = 0
            while seen < limit and (data := await stream.receive_some(64 * 1024)):
                seen += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await stream.aclose()
