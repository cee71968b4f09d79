"""Who may use a node's local ports: the owner uid of a connecting socket (SO_PEERCRED on a
Unix socket; for loopback TCP a sock_diag query, encoded by the pure ``sockdiag``, or the
kernel's socket tables, parsed by the pure ``procnet``),
the policy (same uid, an app token, or open), and the 0600 Unix listener (``policy``).

Serves the daemon's bridge port and bridge_local's app port alike; it may import
``toxbridge.errors`` only.
"""

from .policy import (
    ADMIT,
    NEED_TOKEN,
    REFUSE,
    AccessPolicy,
    access_options,
    add_access_arguments,
    check,
    check_unix_path,
    open_unix_listener,
    peer_uid,
    read_token_file,
    refuse,
    token_matches,
    unlink_unix_listener,
    warn_if_open,
)

__all__ = [
    "ADMIT",
    "NEED_TOKEN",
    "REFUSE",
    "AccessPolicy",
    "access_options",
    "add_access_arguments",
    "check",
    "check_unix_path",
    "open_unix_listener",
    "peer_uid",
    "read_token_file",
    "refuse",
    "token_matches",
    "unlink_unix_listener",
    "warn_if_open",
]
