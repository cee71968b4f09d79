"""Who is still to be told that a file is available here (``5003``), kept across restarts.

A file message from the peer bridge names a local user. Once the file is complete in this
bridge's store, that user gets a ``5003``: at once if online, otherwise at their next login —
also after the bridge restarted, which is why the pairs live on disk (``available.json`` in
the store root, replaced atomically on each change). A pair is forgotten once the notice
was handed to one of the user's connections.

Bounded: at most ``limit`` pairs; past it the oldest is dropped (that user can still ask
with ``4002``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["PendingNotices"]

DEFAULT_LIMIT = 4096


class PendingNotices:
    """``(fileid, token)`` pairs, oldest first, mirrored to ``path``."""

    def __init__(self, path: Path, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.path = Path(path)
        self.limit = limit
        self._pairs: dict[tuple[str, str], None] = dict.fromkeys(self._load())

    def _load(self) -> list[tuple[str, str]]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        pairs = [(f, t) for item in data if isinstance(item, list) and len(item) == 2
                 for f, t in [item] if isinstance(f, str) and isinstance(t, str)]
        return pairs[-self.limit:]

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([list(p) for p in self._pairs]), "utf-8")
        os.replace(tmp, self.path)

    def add(self, fileid: str, token: str) -> None:
        if (fileid, token) in self._pairs:
            return
        self._pairs[(fileid, token)] = None
        while len(self._pairs) > self.limit:
            del self._pairs[next(iter(self._pairs))]
        self._save()

    def remove(self, fileid: str, token: str) -> None:
        if self._pairs.pop((fileid, token), 0) is None:
            self._save()

    def tokens(self, fileid: str) -> list[str]:
        return [t for f, t in self._pairs if f == fileid]

    def fileids(self, token: str) -> list[str]:
        return [f for f, t in self._pairs if t == token]

    def __len__(self) -> int:
        return len(self._pairs)
