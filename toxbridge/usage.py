"""A user's mistake on a command line: one line on stderr and exit status 2.

At the bottom of the layers (it imports nothing of ours), so every command line can use it:
the node's, its commands' and bridge_local's clients.
"""

from __future__ import annotations

import argparse

__all__ = ["USER_ERROR", "OneLineParser", "port_arg"]

USER_ERROR = 2  # exit status of every user error, as argparse uses for bad flags


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def port_arg(value) -> int:
    """A port number, 0 to 65535 (0: a free one); from a flag's text or a config value."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} out of range (0-65535; 0: a free one)")
    return port
