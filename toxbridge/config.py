"""The daemon's configuration: one frozen object, built by the CLI, passed down."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path

from .forward import LocalForward, Rules, StdioForward
from .link import DEFAULT_BACKLOG, DEFAULT_IN_FLIGHT, DEFAULT_WINDOW
from .network import NodeInfo

__all__ = ["Config", "NAME_RULE", "default_profile", "request_message", "request_allowed",
           "valid_name"]

REQUEST_PREFIX = b"toxbridge/1 "
NAME_RULE = "1-32 letters, digits, '-', '_' or '.', not all hex digits"


def valid_name(name: str) -> bool:
    """A peer's short name: it must never read as a key (nor as "peer" or "any")."""
    return (0 < len(name) <= 32 and name.isascii() and name not in ("peer", "any")
            and all(ch.isalnum() or ch in "-_." for ch in name)
            and not all(ch in "0123456789abcdefABCDEF" for ch in name))


def default_profile() -> Path:
    """The profile (the node's identity) when none is given: in the user's data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("toxbridge")) / "profile.tox"


@dataclass(frozen=True)
class Config:
    mode: str  # "listen" (it may dial --peer too) or "peer" (it only dials)
    profile: Path
    peers: tuple[bytes, ...] = ()  # --peer: the Tox IDs (38 bytes) we dial, in order
    names: tuple[tuple[bytes, str], ...] = ()  # (public key, short name): --peer ID=NAME, --peer-name
    max_peers: int = 32  # a listener accepts no more (dialed peers count too)
    via: str | None = None  # --via: the peer a -L/-W without @PEER reaches (None: the first)
    secret: bytes | None = None
    allow: frozenset[bytes] = frozenset()  # public keys allowed to befriend a listener
    accept_anyone: bool = False
    passphrase: str | None = None
    bootstrap: tuple[NodeInfo, ...] = ()
    tcp_relays: tuple[NodeInfo, ...] = ()
    udp: bool = True
    ipv6: bool = False  # off unless asked: tests and demos must never use it
    lan_discovery: bool = False  # off unless asked: it broadcasts on real interfaces
    bridge_host: str = "127.0.0.1"
    bridge_port: int = 0
    id_file: Path | None = None
    control_socket: Path | None = None  # the control socket (toxbridge.control.server); None: none
    app_open: bool = False  # --app-open: processes of any uid may use the bridge port
    forwards: tuple[LocalForward, ...] = ()  # -L (toxbridge.forwarding)
    stdio: StdioForward | None = None  # -W: stdin/stdout as one forwarded connection
    rules: Rules = Rules()  # --expose, --expose-file: what peers may reach (nothing)
    hold_open: int = 120  # s forwarded connections stay open while the link is down
    window: int = DEFAULT_WINDOW  # see toxbridge/link/wire.py for these three
    in_flight: int = DEFAULT_IN_FLIGHT
    backlog: int = DEFAULT_BACKLOG
    transport: bool = True  # offer the transport over lossy packets (toxbridge.linkpath)
    trace_path: Path | None = None  # --trace-path: a debug trace of the path (toxbridge.pathtrace)
    queue_frames: int = 64  # each of the two queues between the threads (short: latency)
    busy_period: float = 0.001  # loop period while there is traffic
    # Loop period when quiet and toxcore's UDP socket cannot be watched (UDP off, or the
    # peer over a TCP relay); watched, the loop waits as long as toxcore asks (50 ms).
    idle_period: float = 0.02
    udp_grace: float = 2.0  # hold data this long on a new TCP link while UDP may come up
    max_pending_requests: int = 64  # strangers remembered (for logging), then dropped
    bootstrap_retry: float = 5.0  # s to the first bootstrap retry without a DHT connection
    bootstrap_retry_max: float = 60.0  # the retry interval doubles up to this
    extra: dict = field(default_factory=dict, compare=False)


def request_message(secret: bytes | None) -> bytes:
    """What a --peer puts in its friend request."""
    return REQUEST_PREFIX + (secret or b"")


def request_allowed(config: Config, public_key: bytes, message: bytes) -> bool:
    """Does a listener accept this friend request? Secrets compare in constant time."""
    if config.accept_anyone:
        return True
    key_ok = public_key in config.allow if config.allow else None
    secret_ok = (hmac.compare_digest(message, request_message(config.secret))
                 if config.secret is not None else None)
    checks = [c for c in (key_ok, secret_ok) if c is not None]
    return bool(checks) and all(checks)
