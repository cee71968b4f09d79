"""The bridge's file transfers: the three hops of docs/files.md around one machine.

:class:`FileService` belongs to :class:`~bridge_local.core.BridgeCore` (which routes to it)
and owns the :class:`~bridge_local.filestore.FileStore` and every transfer machine:

* per client connection, a :class:`TransferTable` of uploads (the bridge receives) and
  downloads (the bridge sends);
* for each peer bridge (by its name: the peer daemon's key in hex, '' for the one-peer
  channel), two tables, one per direction (``out``: we send, ``in``: we receive); on that
  hop the taskid is the fileid. A file for a user behind a peer that is not where the file
  is yet (a hub relaying it) is sent once it is complete here.

Like the core it is driven with ``now`` and hands out what to send: messages for clients
(:meth:`take_client_output`), (peer, packed command) for the peer bridges (:meth:`take_peer_output`)
and the users to tell that a file arrived (:meth:`take_available`). It touches the disk
through the store; it never sleeps and owns no sockets.

Restarts: the (fileid, peer) still to send are kept in ``outgoing.json`` in the store
root (they are offered again when that peer bridge is next up); partial files received from
a peer carry ``{"peer": NAME}`` in their meta (1: the channel's) and are restored
(``Receiver.restore``) when that peer is next up; the
users still to be told that a file arrived are kept in ``available.json``
(:mod:`bridge_local.filenotices`).
"""

from __future__ import annotations

import json
import os
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import wire
from .transfer.chunkmap import ChunkMap
from .filenotices import PendingNotices
from .filestore import (
    drive,
    FileReader,
    FileStore,
    PartialFile,
    StoreError,
)
from .transfer import (
    DEFAULT_RTO,
    DEFAULT_WINDOW,
    Completed,
    Failed,
    Aborted,
    FileState,
    InitType,
    Receiver,
    Sender,
    TransferCode,
    TransferProtocolError,
    TransferStatistics,
    TransferTable,
    TransferUsageError,
    UnknownTask,
    file_info_reply,
    parse_offer,
    refuse_offer,
    task_of,
    to_json,
)

__all__ = ["FilesConfig", "FileService"]

_SENDER_COMMANDS = frozenset({7000, 7001, 7010})  # sent by a sender: for our receiver
_RECEIVER_COMMANDS = frozenset({8000, 8001, 8010})
_MAX_COUNTERS = 4096


@dataclass(frozen=True)
class FilesConfig:
    """The file store's limits and the transfers' tuning."""

    max_file_size: int = 4 * 1024**3
    max_total_size: int = 64 * 1024**3
    chunk_size: int = 128 * 1024  # what this bridge suggests and uses as a receiver
    window: int = DEFAULT_WINDOW
    rto: float = DEFAULT_RTO
    max_transfers: int = 64  # per client connection, and per direction with the peer


class FileService:
    def __init__(self, root: Path, config: FilesConfig = FilesConfig()) -> None:
        self.config = config
        self.store = FileStore(root, max_file_size=config.max_file_size,
                               max_total_size=config.max_total_size)
        self._outgoing_path = Path(root) / "outgoing.json"
        self.clients: dict[int, TransferTable] = {}
        self._inits: dict[int, dict[tuple[type, Any], str]] = {}  # cid -> task -> fileid
        self.peers: dict[str, tuple[TransferTable, TransferTable]] = {}  # name -> (out, in)
        self._res: dict[int, Any] = {}  # id(machine) -> its resource
        self._seen: dict[int, TransferStatistics] = {}  # id(machine) -> statistics counted
        self.outgoing: list[tuple[str, str]] = self._load_outgoing()  # (fileid, peer)
        self.legacy_peer: str | None = None  # who took over the one-peer era's files
        self.counters: OrderedDict[str, Counter[str]] = OrderedDict()
        self.up: set[str] = set()  # the peers whose session (and bulk lane) is up
        self._client_out: list[tuple[int, dict[str, Any]]] = []
        self._peer_out: list[tuple[str, bytes]] = []
        self._arrived: list[str] = []
        self._present: list[str] = []  # announced when already stored here
        self.pending = PendingNotices(Path(root) / "available.json")
        self.notices: list[str] = []

    # ------------------------------------------------------------------ outputs

    def take_client_output(self) -> list[tuple[int, dict[str, Any]]]:
        out, self._client_out = self._client_out, []
        return out

    def take_peer_output(self) -> list[tuple[str, bytes]]:
        out, self._peer_out = self._peer_out, []
        return out

    def tables(self, peer: str) -> tuple[TransferTable, TransferTable]:
        """(out, in) of a peer bridge."""
        t = self.peers.get(peer)
        if t is None:
            t = self.peers[peer] = (TransferTable(self.config.max_transfers),
                                    TransferTable(self.config.max_transfers))
        return t

    @property
    def peer_out(self) -> TransferTable:  # the channel's (one peer): tests and status
        return self.tables("")[0]

    @property
    def peer_in(self) -> TransferTable:
        return self.tables("")[1]

    # ------------------------------------------------------------------ 5003 notices

    def announce(self, fileid: str, token: str) -> None:
        """A file message from the peer bridge for the local user ``token``: that user is
        told (``5003``) once the file is complete here, even across restarts."""
        self.pending.add(fileid, token)
        if self.store.get(fileid) is not None:
            self._present.append(fileid)

    def take_available(self) -> list[tuple[str, dict[str, Any]]]:
        """``(token, 5003)`` for the users announced a file that is now complete here (since
        the last call). Call :meth:`notified` for each one handed to a connection; the
        others are given again by :meth:`available_for` at the user's next login."""
        fileids = list(dict.fromkeys(self._arrived + self._present))
        self._arrived, self._present = [], []
        out = []
        for fileid in fileids:
            event = self.available_event(fileid)
            if event is not None:
                out.extend((token, event) for token in self.pending.tokens(fileid))
        return out

    def available_for(self, token: str) -> list[dict[str, Any]]:
        """The ``5003`` notices still owed to ``token`` (a user logging in)."""
        events = (self.available_event(f) for f in self.pending.fileids(token))
        return [e for e in events if e is not None]

    def notified(self, token: str, fileid: str) -> None:
        self.pending.remove(fileid, token)

    def available_event(self, fileid: str) -> dict[str, Any] | None:
        stored = self.store.get(fileid)
        if stored is None:
            return None
        return {"command": 5003, "result": 1, "fileid": fileid, "filesize": stored.filesize,
                "md5": stored.md5, "filename": stored.filename}

    # ------------------------------------------------------------------ persistence

    def _load_outgoing(self) -> list[tuple[str, str]]:
        try:
            data = json.loads(self._outgoing_path.read_text("utf-8"))
        except (OSError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        out = []
        for item in data:  # a bare fileid: written before many peers, the channel's
            if isinstance(item, str):
                out.append((item, ""))
            elif (isinstance(item, list) and len(item) == 2
                  and all(isinstance(x, str) for x in item)):
                out.append((item[0], item[1]))
        return out

    def _save_outgoing(self) -> None:
        tmp = self._outgoing_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.outgoing), "utf-8")
        os.replace(tmp, self._outgoing_path)

    def _count(self, fileid: str, **counts: int) -> None:
        c = self.counters.get(fileid)
        if c is None:
            c = self.counters[fileid] = Counter()
            if len(self.counters) > _MAX_COUNTERS:
                self.counters.popitem(last=False)
        c.update(counts)

    # ------------------------------------------------------------------ clients

    def client_gone(self, cid: int) -> None:
        table = self.clients.pop(cid, None)
        self._inits.pop(cid, None)
        for t in table or ():
            self._release(t)

    def _release(self, t: Any) -> None:
        res = self._res.pop(id(t), None)
        self._seen.pop(id(t), None)
        if isinstance(res, (PartialFile, FileReader)):
            res.close()

    def client_command(self, cid: int, command: int, msg: dict[str, Any], now: float) -> None:
        """A file command from a logged-in client (``msg`` the request as received)."""
        table = self.clients.setdefault(cid, TransferTable(self.config.max_transfers))
        if command == 4001:
            self._init(cid, table, msg, now)
        elif command == 4002:
            self._client_out.append((cid, self.status(msg["fileid"])))
        elif command == 7000 and table.get(task_of(msg)) is None:
            self._upload_offer(cid, table, msg, now)
        else:
            try:
                t = table.route(msg)
            except TransferProtocolError as exc:
                if msg.get("command") not in (7070, 7080):
                    self._client_out.append((cid, to_json(exc.peer_error())))
                return
            self._receive(t, msg, now, ("client", cid, table))

    def status(self, fileid: str) -> dict[str, Any]:
        """``5002``: the file's state here and its transfer counters (docs/files.md §9)."""
        state = self.store.state(fileid)
        reply: dict[str, Any] = {"command": 5002, "fileid": fileid, "result": int(state)}
        stored = self.store.get(fileid)
        if stored is not None:
            reply.update(filesize=stored.filesize, md5=stored.md5, held=stored.filesize)
        else:
            info = self.store.partial_info(fileid)
            if info is not None:
                size, md5, chunk_size, chunks = info
                held = min(size, len(chunks) * chunk_size)
                reply.update(filesize=size, md5=md5, held=held)
        reply["counters"] = dict(self.counters.get(fileid, {}))
        reply["window_bytes"] = self.config.window * self.config.chunk_size
        return reply

    def _init(self, cid: int, table: TransferTable, msg: dict[str, Any], now: float) -> None:
        fileid, taskid, kind = msg["fileid"], msg["taskid"], msg["type"]
        state = self.store.state(fileid)
        stored = self.store.get(fileid)
        size, md5, chunk_size = 0, None, self.config.chunk_size
        if stored is not None:
            size, md5 = stored.filesize, stored.md5
        elif state == FileState.PARTIAL:
            info = self.store.partial_info(fileid)
            if info is not None:
                size, md5, chunk_size = info[0], info[1], info[2]
        if kind == InitType.UPLOAD:
            self._inits.setdefault(cid, {})[(type(taskid), taskid)] = fileid
            self._client_out.append((cid, file_info_reply(
                fileid=fileid, taskid=taskid, type=kind, state=state, filesize=size,
                suggest_chunksize=chunk_size, md5=md5)))
            return
        if kind != InitType.DOWNLOAD:
            self._client_out.append((cid, file_info_reply(
                fileid=fileid, taskid=taskid, type=kind, state=FileState.UNAVAILABLE)))
            return
        if stored is None:
            self._client_out.append((cid, file_info_reply(
                fileid=fileid, taskid=taskid, type=kind, state=state, filesize=size,
                suggest_chunksize=chunk_size, md5=md5)))
            return
        old = table.get(taskid)
        if old is not None:
            if not old.finished:
                old.abort("replaced by a new download")
            self._flush(old, ("client", cid, table))
        try:
            sender = Sender(taskid, filename=stored.filename or "file", filesize=stored.filesize,
                            md5=stored.md5, fileid=fileid, window=self.config.window,
                            rto=self.config.rto)
            reader = self.store.open_reader(fileid)
        except (TransferUsageError, StoreError) as exc:
            self._client_out.append((cid, file_info_reply(
                fileid=fileid, taskid=taskid, type=kind, state=FileState.UNAVAILABLE)))
            self.notices.append(f"download of {fileid!r}: {exc}")
            return
        try:
            table.add(sender)
        except TransferUsageError:
            reader.close()
            self._client_out.append((cid, file_info_reply(
                fileid=fileid, taskid=taskid, type=kind, state=FileState.UNAVAILABLE)))
            return
        self._res[id(sender)] = reader
        self._client_out.append((cid, file_info_reply(
            fileid=fileid, taskid=taskid, type=kind, state=FileState.AVAILABLE,
            filesize=stored.filesize, suggest_chunksize=self.config.chunk_size, md5=stored.md5,
            filename=stored.filename)))
        sender.start(now)
        self._flush(sender, ("client", cid, table), now)

    def _upload_offer(self, cid: int, table: TransferTable, msg: dict[str, Any],
                      now: float) -> None:
        try:
            offer = parse_offer(msg)
        except TransferProtocolError as exc:
            self._client_out.append((cid, to_json(exc.peer_error())))
            return
        fileid = self._inits.get(cid, {}).get((type(offer.taskid), offer.taskid)) or offer.fileid
        if fileid is None:
            self._client_out.append((cid, refuse_offer(
                offer, TransferCode.WRONG_STATE, "send 4001 (upload) with the fileid first")))
            return
        t = self._accept(offer, fileid, {"taskid": offer.taskid}, table, now)
        if isinstance(t, dict):
            self._client_out.append((cid, to_json(t)))
        else:
            self._flush(t, ("client", cid, table), now)

    def _accept(self, offer: Any, fileid: str, meta: dict[str, Any], table: TransferTable,
                now: float) -> Receiver | dict[str, Any]:
        """A receiver for ``offer`` (resuming a partial file), or the refusing ``8000``."""
        if len(table) >= table.max_transfers:
            return refuse_offer(offer, TransferCode.TOO_MANY_TRANSFERS, "too many transfers")
        stored = self.store.get(fileid)
        try:
            if stored is not None:
                if (stored.filesize, stored.md5) != (offer.filesize, offer.md5):
                    return refuse_offer(offer, TransferCode.FILE_MISMATCH,
                                        "another file is stored under this fileid")
                count = -(-offer.filesize // self.config.chunk_size)
                receiver = Receiver.accept(offer, now, chunk_size=self.config.chunk_size,
                                           have=ChunkMap.full(count))
                res: Any = stored
            else:
                partial = self.store.open_partial(
                    fileid, offer.filesize, offer.md5, filename=offer.filename,
                    chunk_size=self.config.chunk_size, meta=meta)
                try:
                    receiver = Receiver.accept(offer, now, chunk_size=partial.chunk_size,
                                               have=partial.chunks)
                except TransferUsageError:
                    partial.close()
                    raise
                res = partial
        except StoreError as exc:
            return refuse_offer(offer, exc.code, str(exc))
        except (TransferUsageError, ValueError) as exc:
            return refuse_offer(offer, TransferCode.BAD_MESSAGE, str(exc))
        receiver.fileid = fileid
        table.add(receiver)
        self._res[id(receiver)] = res
        return receiver

    # ------------------------------------------------------------------ machines

    def _receive(self, t: Any, msg: dict[str, Any], now: float, where: tuple) -> None:
        try:
            t.receive(msg, now)
        except TransferProtocolError as exc:
            self.notices.append(f"transfer {t.taskid!r}: {exc.message}")
        self._flush(t, where, now)

    def _flush(self, t: Any, where: tuple, now: float = 0.0) -> None:
        """Serve the machine's events, send its messages, forget it once finished."""
        res = self._res.get(id(t))
        events = drive(t, res, now)
        before = self._seen.get(id(t)) or TransferStatistics()
        after = self._seen[id(t)] = t.statistics()
        fileid = getattr(t, "fileid", None) or getattr(getattr(t, "offer", None), "fileid", None)
        hop = "upload" if where[0] == "client" and isinstance(t, Receiver) else \
            "download" if where[0] == "client" else "peer"
        if fileid is not None:
            role = "sent" if isinstance(t, Sender) else "received"
            self._count(fileid, **{
                f"{hop}_chunks_{role}": after.chunks_sent + after.chunks_received
                - before.chunks_sent - before.chunks_received,
                f"{hop}_bytes_{role}": after.bytes_sent - before.bytes_sent
                + (after.chunks_received - before.chunks_received) * t.chunk_size,
                f"{hop}_chunks_resent": after.chunks_resent - before.chunks_resent,
                f"{hop}_duplicates": after.duplicates - before.duplicates,
                f"{hop}_resyncs": after.resyncs - before.resyncs,
                f"{hop}_repairs": after.repairs - before.repairs,
            })
        for message in t.data_to_send():
            if where[0] == "client":
                self._client_out.append((where[1], to_json(message)))
            elif where[1] in self.up:
                self._peer_out.append((where[1], wire.encode_xfer(isinstance(t, Sender), message)))
        for event in events:
            if isinstance(event, Completed) and fileid is not None:
                if hop == "peer" and isinstance(t, Receiver):
                    self._arrived.append(fileid)
                    self._upload_done(fileid, now)  # a hub: on to the next hop
                if hop == "upload":
                    self._upload_done(fileid, now)
                if hop == "peer" and isinstance(t, Sender):
                    self._sent(fileid, where[1])
            elif isinstance(event, (Failed, Aborted)):
                self.notices.append(f"transfer {t.taskid!r} ({hop}): {event}")
                if hop == "peer" and isinstance(t, Sender):
                    self._sent(fileid, where[1])
        if t.finished:
            res = self._res.get(id(t))
            if isinstance(res, PartialFile) and t.state.value == "failed" \
                    and t.error and t.error[0] == TransferCode.MD5_MISMATCH:
                res.discard()
            self._release(t)
            where[2].remove(t.taskid)

    # ------------------------------------------------------------------ the peer bridge

    def _sent(self, fileid: str | None, peer: str) -> None:
        if (fileid, peer) in self.outgoing:
            self.outgoing.remove((fileid, peer))
            self._save_outgoing()

    def file_message(self, fileid: str, now: float, peer: str = "") -> None:
        """A file message went to a user behind the peer bridge ``peer``: send the file
        there (once it is complete here)."""
        if (fileid, peer) not in self.outgoing:
            self.outgoing.append((fileid, peer))
            self._save_outgoing()
        self._start_peer_sender(fileid, now, peer)

    def _upload_done(self, fileid: str, now: float) -> None:
        for f, peer in list(self.outgoing):
            if f == fileid:
                self._start_peer_sender(fileid, now, peer)

    def _start_peer_sender(self, fileid: str, now: float, peer: str = "") -> None:
        out_table = self.tables(peer)[0]
        if out_table.get(fileid) is not None:
            return
        stored = self.store.get(fileid)
        if stored is None or len(fileid) > 128:
            return  # not uploaded yet: sent when the upload completes
        try:
            sender = Sender(fileid, filename=stored.filename or "file", filesize=stored.filesize,
                            md5=stored.md5, fileid=fileid, window=self.config.window,
                            rto=self.config.rto)
            reader = self.store.open_reader(fileid)
        except (TransferUsageError, StoreError) as exc:
            self.notices.append(f"cannot send {fileid!r} to the peer bridge: {exc}")
            return
        try:
            out_table.add(sender)
        except TransferUsageError:
            reader.close()
            return  # full: retried at the next peer session
        self._res[id(sender)] = reader
        if peer in self.up:
            sender.start(now)
            self._flush(sender, ("peer", peer, out_table), now)

    def adopt_legacy(self, peer: str) -> None:
        """The one-peer channel era's peer is ``peer`` now (an upgrade to many peers): its
        files still to send (``outgoing.json`` entries with peer '') go to ``peer``, and its
        partial files (meta ``{"peer": 1}``) are resumed from ``peer``."""
        self.legacy_peer = peer
        if any(p == "" for _, p in self.outgoing):
            self.outgoing = list(dict.fromkeys((f, p or peer) for f, p in self.outgoing))
            self._save_outgoing()

    def _from(self, meta: dict[str, Any], peer: str) -> bool:
        """A partial file with ``meta`` was coming from the peer bridge ``peer``."""
        want = meta.get("peer")
        return want == (peer or 1) or (want == 1 and bool(peer) and peer == self.legacy_peer)

    def set_peer(self, up: bool, now: float, peer: str = "") -> None:
        """The session with the peer bridge ``peer`` came up (resync everything) or went
        down."""
        if not up:
            self.up.discard(peer)
            return
        self.up.add(peer)
        out_table, in_table = self.tables(peer)
        for fileid, p in list(self.outgoing):
            if p == peer:
                self._start_peer_sender(fileid, now, peer)
        for t in out_table:
            if t._started:  # noqa: SLF001 -- a sender made while the peer was down
                t.resync(now)
            else:
                t.start(now)
            self._flush(t, ("peer", peer, out_table), now)
        for fileid, meta in self.store.partials():
            if not self._from(meta, peer) or in_table.get(fileid) is not None:
                continue
            info = self.store.partial_info(fileid)
            if info is None:
                continue
            try:
                partial = self.store.open_partial(fileid, info[0], info[1])
            except StoreError as exc:
                self.notices.append(f"cannot resume {fileid!r}: {exc}")
                continue
            receiver = Receiver.restore(taskid=fileid, filesize=partial.filesize,
                                        md5=partial.md5, chunk_size=partial.chunk_size,
                                        have=partial.chunks)
            receiver.fileid = fileid
            in_table.add(receiver)
            self._res[id(receiver)] = partial
            self._flush(receiver, ("peer", peer, in_table), now)

    def peer_message(self, to_receiver: bool, msg: dict[str, Any], now: float,
                     peer: str = "") -> None:
        out_table, in_table = self.tables(peer)
        table = in_table if to_receiver else out_table
        try:
            taskid = task_of(msg)
        except TransferProtocolError as exc:
            self.notices.append(f"bad transfer message from the peer bridge: {exc.message}")
            return
        t = table.get(taskid)
        if t is None:
            if to_receiver and msg.get("command") == 7000:
                self._peer_offer(msg, now, peer)
            elif msg.get("command") not in (7070, 7080):
                err = UnknownTask(TransferCode.UNKNOWN_TASK, f"no transfer {taskid!r}", taskid)
                if peer in self.up:
                    self._peer_out.append((peer, wire.encode_xfer(not to_receiver,
                                                                  err.peer_error())))
            return
        self._receive(t, msg, now, ("peer", peer, table))

    def _peer_offer(self, msg: dict[str, Any], now: float, peer: str) -> None:
        in_table = self.tables(peer)[1]
        try:
            offer = parse_offer(msg)
        except TransferProtocolError as exc:
            self._peer_out.append((peer, wire.encode_xfer(False, exc.peer_error())))
            return
        t = self._accept(offer, str(offer.taskid), {"peer": peer or 1}, in_table, now)
        if isinstance(t, dict):
            self._peer_out.append((peer, wire.encode_xfer(False, t)))
        else:
            self._flush(t, ("peer", peer, in_table), now)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> None:
        peer_tables = [(("peer", p, tb), tb) for p, pair in self.peers.items() for tb in pair]
        for where, table in [*peer_tables,
                             *((("client", cid, tb), tb) for cid, tb in self.clients.items())]:
            for t in list(table):
                deadline = t.next_deadline()
                if deadline is not None and deadline <= now:
                    if where[0] == "peer" and where[1] not in self.up:
                        continue
                    t.handle_timeout(now)
                    self._flush(t, where, now)

    def close(self) -> None:
        for table in [*(tb for pair in self.peers.values() for tb in pair),
                      *self.clients.values()]:
            for t in table:
                self._release(t)

    def in_flight(self) -> list[dict[str, Any]]:
        """The transfers not finished, for ``toxbridge status``: ``hop`` is ``to_peer`` /
        ``from_peer`` (bridge to bridge), ``upload`` (a client to us) or ``download``."""
        tables = [*((hop, p, tb) for p, pair in self.peers.items()
                    for hop, tb in zip(("to_peer", "from_peer"), pair)),
                  *(("client", cid, table) for cid, table in self.clients.items())]
        out = []
        for where, cid, table in tables:
            for t in table:
                if t.finished:
                    continue
                offer = getattr(t, "offer", None)  # a Sender's; a Receiver has its own fields
                if where != "client":
                    hop, fileid = where, t.taskid  # on the peer hop the taskid is the fileid
                else:
                    hop = "download" if isinstance(t, Sender) else "upload"
                    fileid = self._inits.get(cid, {}).get((type(t.taskid), t.taskid))
                fileid = fileid or getattr(offer or t, "fileid", None)
                out.append({"hop": hop, "fileid": fileid,
                            **({"peer": cid} if where != "client" and cid else {}),
                            "filename": getattr(offer or t, "filename", None),
                            "filesize": t.filesize, "done_bytes": t.done_bytes,
                            "state": t.state.value, "paused": t.paused})
        return out

    def statistics(self) -> dict[str, Any]:
        return {"peer_out": sum(len(p[0]) for p in self.peers.values()),
                "peer_in": sum(len(p[1]) for p in self.peers.values()),
                "client_transfers": sum(len(t) for t in self.clients.values()),
                "outgoing": len(self.outgoing), "store_used": self.store.used}
