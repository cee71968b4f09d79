"""The file store on real files in tmp_path: layout, hostile names, resume after a crash,
corruption, limits, a full disk, cleanup — and the transfer machine driving it end to end."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
from pathlib import Path

import pytest

from bridge_local.transfer.chunkmap import ChunkMap, chunk_count
from bridge_local.filestore import (
    ChecksumMismatch,
    FileBusy,
    FileConflict,
    FileNotFound,
    FileStore,
    FileTooLarge,
    InvalidFileId,
    StoreError,
    StoreFull,
    display_name,
)
from bridge_local.transfer import (
    ChunkNeeded,
    ChunkReceived,
    ChunksDiscarded,
    FileState,
    Receiver,
    Sender,
    State,
    TransferCode,
    VerifyNeeded,
    choose_chunk_size,
    parse_offer,
)

CS = 1000


def blob(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def chunks_of(data: bytes, cs: int = CS) -> list[bytes]:
    return [data[i : i + cs] for i in range(0, len(data), cs)]


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def put(store: FileStore, fileid: str, data: bytes, order: list[int] | None = None) -> None:
    with store.open_partial(fileid, len(data), md5(data), chunk_size=CS) as p:
        parts = chunks_of(data)
        for i in order if order is not None else range(len(parts)):
            assert p.write_chunk(i, parts[i]) == ()
        p.finish()


# --------------------------------------------------------------------------- layout


def test_chunks_in_any_order_make_a_complete_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "data")
    data = blob(10_500)
    order = [3, 0, 10, 1, 2, 9, 4, 5, 6, 8, 7]
    put(store, "f1", data, order)
    stored = store.get("f1")
    assert stored is not None and stored.filesize == 10_500 and stored.md5 == md5(data)
    assert store.state("f1") is FileState.AVAILABLE
    with store.open_reader("f1") as reader:
        assert b"".join(reader.read(i, min(CS, 10_500 - i)) for i in range(0, 10_500, CS)) == data
        with pytest.raises(ValueError):
            reader.read(10_000, 501)
    assert stored.path.read_bytes() == data
    # Nothing partial or temporary is left; only the data and its record.
    files = [p.relative_to(tmp_path / "data").as_posix() for p in all_files(tmp_path / "data")]
    key = hashlib.sha256(b"f1").hexdigest()
    assert files == [f"files/{key}.data", f"files/{key}.json"]
    assert oct((tmp_path / "data").stat().st_mode & 0o777) == "0o700"
    assert store.used == 10_500


def test_empty_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    put(store, "empty", b"")
    assert store.get("empty").filesize == 0
    with store.open_reader("empty") as r:
        assert r.read(0, 0) == b""


@pytest.mark.parametrize(
    "fileid",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a\x00b",
        "..",
        ".",
        "x/../../y",
        "C:\\windows",
        "é" * 4000,
    ],
)
def test_hostile_file_ids_and_names_never_become_paths(tmp_path: Path, fileid: str) -> None:
    root = tmp_path / "store"
    store = FileStore(root)
    data = b"payload"
    with store.open_partial(fileid, len(data), md5(data), filename="../" * 3000 + "x\x00") as p:
        p.write_chunk(0, data)
        p.finish()
    assert store.get(fileid).filename == "x_"
    assert all_files(tmp_path) == all_files(root)  # nothing outside the store
    for path in all_files(root):
        relative = path.relative_to(root).as_posix()
        assert re.fullmatch(r"files/[0-9a-f]{64}\.(data|json)", relative)
    assert not Path("/etc/passwd.data").exists()


@pytest.mark.parametrize("fileid", ["", "x" * 10_000, None, b"bytes"])
def test_invalid_file_ids_are_a_clear_error(tmp_path: Path, fileid: object) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(InvalidFileId) as info:
        store.open_partial(fileid, 1, md5(b"x"))  # type: ignore[arg-type]
    assert info.value.code == TransferCode.BAD_MESSAGE
    assert store.state("ok") is FileState.MISSING


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ("/abs/path/", "file"),
        ("a\x00b\nc", "a_b_c"),
        ("..", "file"),
        (".bashrc", "bashrc"),
        ("CON", "file_CON"),
        ("nul.txt", "file_nul.txt"),
        ("", "file"),
        (None, "file"),
        ("x\ud800y", "x_y"),
        ('a:b*c?"<>|', "a_b_c_____"),
    ],
)
def test_display_names_are_harmless(name: object, shown: str) -> None:
    assert display_name(name) == shown


def test_long_display_names_keep_their_extension_within_255_bytes() -> None:
    name = display_name("é" * 10_000 + ".tar")
    assert name.endswith(".tar") and len(name.encode()) <= 255
    assert len(display_name("x" * 10_000).encode()) == 255


# --------------------------------------------------------------------------- resume


def test_partial_file_survives_a_crash_with_its_chunks_and_md5(tmp_path: Path) -> None:
    data = blob(9_999, 1)
    parts = chunks_of(data)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS, meta={"taskid": 7})
    for i in (0, 1, 2, 5, 6):
        p.write_chunk(i, parts[i])
    assert store.state("f") is FileState.PARTIAL
    del p, store  # killed: nothing closed, nothing synced

    store = FileStore(tmp_path)  # restart
    assert store.partials() == [("f", {"taskid": 7})]
    info = store.partial_info("f")
    assert info is not None and info[:3] == (len(data), md5(data), CS)
    assert list(info[3]) == [0, 1, 2, 5, 6]
    p = store.open_partial("f", len(data), md5(data), chunk_size=4096)  # chunk size kept
    assert p.chunk_size == CS and list(p.chunks) == [0, 1, 2, 5, 6]
    assert p.held_bytes == 5 * CS
    with pytest.raises(FileBusy):
        store.open_partial("f", len(data), md5(data))
    for i in (3, 4, 7, 8, 9):
        p.write_chunk(i, parts[i])
    assert p.held_bytes == len(data)
    stored = p.finish()
    assert stored.path.read_bytes() == data
    assert store.partials() == [] and store.used == len(data)


def test_torn_journal_tail_is_dropped(tmp_path: Path) -> None:
    data = blob(5_000, 2)
    parts = chunks_of(data)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    p.write_chunk(0, parts[0])
    p.write_chunk(1, parts[1])
    p.close()
    journal = next((tmp_path / "partial").glob("*.journal"))
    size = journal.stat().st_size
    with journal.open("ab") as f:
        f.write(b"\0" * 12 + b"\x01\x02\x03")  # a zero-filled record and a torn one
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data))
    assert list(p.chunks) == [0, 1]
    assert journal.stat().st_size == size
    for i in (2, 3, 4):
        p.write_chunk(i, parts[i])
    p.finish()


def test_damaged_journal_header_starts_the_file_again(tmp_path: Path) -> None:
    data = blob(3_000, 3)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    p.write_chunk(0, data[:CS])
    p.close()
    journal = next((tmp_path / "partial").glob("*.journal"))
    raw = bytearray(journal.read_bytes())
    raw[10] ^= 1
    journal.write_bytes(raw)
    store = FileStore(tmp_path)  # cleanup drops the pair
    assert store.state("f") is FileState.MISSING and store.used == 0
    assert all_files(tmp_path) == []


def test_chunk_corrupted_on_disk_while_down_is_found_on_reopening(tmp_path: Path) -> None:
    data = blob(6_000, 4)
    parts = chunks_of(data)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    for i in range(5):
        p.write_chunk(i, parts[i])
    p.close()
    part = next((tmp_path / "partial").glob("*.part"))
    with part.open("r+b") as f:
        f.seek(1 * CS + 17)
        f.write(b"X")
    p = FileStore(tmp_path).open_partial("f", len(data), md5(data))
    # The prefix is checked on reopening: chunk 1 is bad and dropped, 2..4 wait their turn.
    assert list(p.chunks) == [0, 2, 3, 4]
    assert p.write_chunk(1, parts[1]) == ()
    p.write_chunk(5, parts[5])
    assert p.finish().path.read_bytes() == data


def test_chunk_corrupted_while_running_is_returned_as_lost(tmp_path: Path) -> None:
    data = blob(4_000, 5)
    parts = chunks_of(data)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    p.write_chunk(2, parts[2])
    part = next((tmp_path / "partial").glob("*.part"))
    with part.open("r+b") as f:
        f.seek(2 * CS)
        f.write(b"rot")
    p.write_chunk(0, parts[0])
    assert p.write_chunk(1, parts[1]) == (2,)  # hashing forward met the rotten chunk
    assert list(p.chunks) == [0, 1]
    p.write_chunk(2, parts[2])
    p.write_chunk(3, parts[3])
    assert p.finish().md5 == md5(data)


def test_md5_mismatch_at_the_end_names_the_bad_chunks(tmp_path: Path) -> None:
    data = blob(3_000, 6)
    parts = chunks_of(data)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    for i in range(3):
        p.write_chunk(i, parts[i])
    part = next((tmp_path / "partial").glob("*.part"))
    with part.open("r+b") as f:  # rots after it was hashed: only the full check sees it
        f.seek(5)
        f.write(b"!")
    with pytest.raises(ChecksumMismatch) as info:
        p.finish()
    assert info.value.code == TransferCode.MD5_MISMATCH
    assert info.value.bad_chunks == (0,) and info.value.actual is None
    assert list(p.chunks) == [1, 2]
    p.write_chunk(0, parts[0])
    assert p.finish().path.read_bytes() == data


def test_md5_mismatch_with_intact_data_blames_no_chunk(tmp_path: Path) -> None:
    data = blob(2_500, 7)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(b"something else"), chunk_size=CS)
    for i, part in enumerate(chunks_of(data)):
        p.write_chunk(i, part)
    with pytest.raises(ChecksumMismatch) as info:
        p.finish()
    assert info.value.bad_chunks == () and info.value.actual == md5(data)
    p.discard()
    assert all_files(tmp_path) == [] and store.used == 0
    with pytest.raises(ValueError, match="missing"):
        store.open_partial("g", 10, md5(b"")).finish()


def test_crash_between_the_renames_leaves_a_resumable_partial(tmp_path: Path) -> None:
    data = blob(2_000, 8)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    p.write_chunk(0, data[:CS])
    p.write_chunk(1, data[CS:])
    p.sync()
    key = hashlib.sha256(b"f").hexdigest()
    (tmp_path / "files" / f"{key}.json").write_text('{"fileid":"f","filesize":2000,"md5":"x"}')
    (tmp_path / "tmp" / "junk").write_bytes(b"x")
    (tmp_path / "files" / "stray.txt").write_bytes(b"x")
    p.close()
    store = FileStore(tmp_path)  # the record without its data is dropped, temp files too
    assert store.state("f") is FileState.PARTIAL
    assert not (tmp_path / "tmp" / "junk").exists()
    assert not (tmp_path / "files" / "stray.txt").exists()
    assert store.open_partial("f", len(data), md5(data)).finish().path.read_bytes() == data


# --------------------------------------------------------------------------- limits


def test_file_over_the_size_limit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = FileStore(tmp_path, max_file_size=1000)
    with pytest.raises(FileTooLarge, match="1001 bytes, the limit is 1000") as info:
        store.open_partial("big", 1001, md5(b""))
    assert info.value.code == TransferCode.TOO_LARGE
    assert all_files(tmp_path) == []


def test_store_quota_counts_complete_and_reserved_partial_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path, max_total_size=5_000)
    put(store, "a", blob(2_000))
    p = store.open_partial("b", 2_500, md5(blob(2_500)), chunk_size=CS)  # reserved in full
    assert store.used == 4_500
    with pytest.raises(StoreFull, match="4500 of 5000") as info:
        store.open_partial("c", 501, md5(b""))
    assert info.value.code == TransferCode.NO_SPACE
    assert store.state("c") is FileState.MISSING
    p.discard()
    assert store.delete("a") and not store.delete("a")
    assert store.used == 0
    assert FileStore(tmp_path, max_total_size=5_000).used == 0
    store.open_partial("c", 5_000, md5(b"")).close()
    assert FileStore(tmp_path).used == 5_000


def test_disk_full_while_writing_a_chunk_corrupts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = blob(3_000, 9)
    parts = chunks_of(data)
    store = FileStore(tmp_path, fsync_interval=0)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    p.write_chunk(0, parts[0])
    real_pwrite = os.pwrite
    journal = next((tmp_path / "partial").glob("*.journal"))
    journal_size = journal.stat().st_size

    def full(fd: int, data: bytes, offset: int) -> int:
        written = real_pwrite(fd, bytes(data)[: len(data) // 2], offset)  # half, then full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if written >= 0 else None

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StoreFull, match="disk is full") as info:
        p.write_chunk(1, parts[1])
    assert info.value.code == TransferCode.NO_SPACE
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert list(p.chunks) == [0] and journal.stat().st_size == journal_size

    # The journal write fails after the data went in: the torn record is cut off.
    calls = []

    def journal_full(fd: int, data: bytes, offset: int) -> int:
        calls.append(len(data))
        if len(data) == 12:
            real_pwrite(fd, bytes(data)[:5], offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", journal_full)
    with pytest.raises(StoreFull):
        p.write_chunk(1, parts[1])
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert journal.stat().st_size == journal_size and list(p.chunks) == [0]
    p.close()
    p = FileStore(tmp_path).open_partial("f", len(data), md5(data))  # and after a restart
    assert list(p.chunks) == [0]
    p.write_chunk(1, parts[1])
    p.write_chunk(2, parts[2])
    assert p.finish().path.read_bytes() == data


def test_disk_too_small_for_the_whole_file_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room, raising=False)
    store = FileStore(tmp_path)
    with pytest.raises(StoreFull):
        store.open_partial("f", 10_000, md5(b""))
    assert all_files(tmp_path) == [] and store.used == 0


def test_conflicts_busy_and_missing(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    put(store, "done", b"abc")
    with pytest.raises(FileConflict):
        store.open_partial("done", 3, md5(b"abc"))
    p = store.open_partial("part", 3, md5(b"abc"))
    with pytest.raises(FileBusy):
        store.delete("part")
    p.close()
    with pytest.raises(FileConflict, match="another size or md5"):
        store.open_partial("part", 4, md5(b"abcd"))
    with pytest.raises(FileNotFound):
        store.open_reader("nope")
    assert issubclass(FileNotFound, StoreError)
    assert store.partial_info("nope") is None
    assert store.delete("part") and store.state("part") is FileState.MISSING
    with pytest.raises(ValueError):
        store.open_partial("x", 3, "not-an-md5")


def test_write_chunk_checks_index_and_length(tmp_path: Path) -> None:
    p = FileStore(tmp_path).open_partial("f", 2_500, md5(b""), chunk_size=CS)
    with pytest.raises(ValueError):
        p.write_chunk(3, b"x")
    with pytest.raises(ValueError):
        p.write_chunk(2, b"x" * CS)
    p.write_chunk(2, b"x" * 500)
    assert p.write_chunk(2, b"y" * 500) == ()  # a duplicate is not written again
    p.close()
    with pytest.raises(StoreError, match="closed"):
        p.write_chunk(0, b"x" * CS)


# --------------------------------------------------------------------------- end to end


class Bridge:
    """A receiving bridge: a Receiver writing into a FileStore, restartable."""

    def __init__(self, root: Path, fileid: str) -> None:
        self.root = root
        self.fileid = fileid
        self.store = FileStore(root, fsync_interval=None)
        self.partial = None
        self.receiver: Receiver | None = None

    def on_message(self, m: dict, now: float) -> None:
        if self.receiver is None:
            if m["command"] != 7000:
                return
            offer = parse_offer(m)
            stored = self.store.get(self.fileid)
            if stored is not None:  # complete already: accept with every chunk held
                size = choose_chunk_size(offer.filesize, CS)
                full = ChunkMap.full(chunk_count(offer.filesize, size))
                self.receiver = Receiver.accept(offer, now, chunk_size=size, have=full)
                self.partial = None
                return
            self.partial = self.store.open_partial(
                self.fileid, offer.filesize, offer.md5, filename=offer.filename, chunk_size=CS,
                meta={"taskid": offer.taskid},
            )
            self.receiver = Receiver.accept(
                offer, now, chunk_size=self.partial.chunk_size, have=self.partial.chunks
            )
        else:
            self.receiver.receive(m, now)

    def handle_events(self) -> None:
        if self.receiver is None:
            return
        for e in list(self.receiver.events()):
            if isinstance(e, ChunkReceived):
                lost = self.partial.write_chunk(e.index, e.data)
                self.receiver.chunk_stored(e.index)
                if lost:
                    self.receiver.discard_chunks(lost)
            elif isinstance(e, VerifyNeeded):
                if self.partial is None:
                    self.receiver.check_md5(self.store.get(self.fileid).md5)
                    continue
                try:
                    stored = self.partial.finish()
                    self.receiver.check_md5(stored.md5)
                except ChecksumMismatch as exc:
                    self.receiver.check_md5(exc.actual, untrusted=exc.bad_chunks)

    def restart(self) -> None:
        """kill -9: no close, no sync; then a new process restores from the journal."""
        self.store = FileStore(self.root, fsync_interval=None)
        self.receiver = None
        for fileid, meta in self.store.partials():
            info = self.store.partial_info(fileid)
            self.partial = self.store.open_partial(fileid, info[0], info[1])
            self.receiver = Receiver.restore(
                taskid=meta["taskid"], filesize=info[0], md5=info[1],
                chunk_size=self.partial.chunk_size, have=self.partial.chunks,
            )


def drive(sender: Sender, bridge: Bridge, data: bytes, kill_at: int | None = None,
          corrupt_at: int | None = None) -> int:
    """Run the transfer on an ordered link; returns the chunks sent."""
    now, sent = 0.0, 0
    to_r: list[dict] = []
    to_s: list[dict] = []
    for step in range(100_000):
        for e in list(sender.events()):
            if isinstance(e, ChunkNeeded):
                sender.send_chunk(e.index, data[e.offset : e.offset + e.length], now)
        for m in sender.data_to_send():
            sent += m["command"] == 7001
            to_r.append(m)
        bridge.handle_events()
        if bridge.receiver is not None:
            to_s.extend(bridge.receiver.data_to_send())
        if step == kill_at:
            to_r.clear()
            to_s.clear()
            bridge.restart()
            continue
        if step == corrupt_at:
            part = next((bridge.root / "partial").glob("*.part"))
            with part.open("r+b") as f:
                f.write(b"\xff\xfe")  # chunk 0 rots under the running bridge
        if to_r:
            bridge.on_message(to_r.pop(0), now)
        elif to_s:
            sender.receive(to_s.pop(0), now)
        elif sender.state is State.DONE:
            return sent
        else:
            now = sender.next_deadline() or now
            sender.handle_timeout(now)
    raise AssertionError("transfer did not finish")


@pytest.mark.parametrize("kill_at", [None, 3, 17, 40, 101])
def test_receiving_bridge_killed_mid_transfer_resends_at_most_one_window(
    tmp_path: Path, kill_at: int | None
) -> None:
    data = blob(50_500, 10)
    sender = Sender("t9", filename="big.bin", filesize=len(data), md5=md5(data), window=6)
    sender.start(0.0)
    bridge = Bridge(tmp_path, "F-1")
    sent = drive(sender, bridge, data, kill_at=kill_at)
    assert bridge.store.get("F-1").path.read_bytes() == data
    assert sent - chunk_count(len(data), CS) <= 6
    assert bridge.store.partials() == [] and not list((tmp_path / "tmp").iterdir())
    assert not list((tmp_path / "partial").iterdir())


def test_chunk_rotting_under_a_running_bridge_is_received_again(tmp_path: Path) -> None:
    data = blob(20_000, 11)
    sender = Sender("t9", filename="f", filesize=len(data), md5=md5(data), window=4)
    sender.start(0.0)
    bridge = Bridge(tmp_path, "F-2")
    sent = drive(sender, bridge, data, corrupt_at=30)
    assert bridge.store.get("F-2").path.read_bytes() == data
    assert sent == chunk_count(len(data), CS) + 1
    assert bridge.receiver.statistics().repairs == 1
    assert bridge.receiver.state is State.DONE


def test_full_store_fails_the_transfer_clearly(tmp_path: Path) -> None:
    data = blob(5_000, 12)
    store = FileStore(tmp_path, max_total_size=4_000)
    sender = Sender("t", filename="f", filesize=len(data), md5=md5(data))
    sender.start(0.0)
    offer = parse_offer(sender.data_to_send()[0])
    with pytest.raises(StoreFull) as info:
        store.open_partial("f", offer.filesize, offer.md5)
    from bridge_local.transfer import refuse_offer

    sender.receive(refuse_offer(offer, info.value.code, str(info.value)), 0.0)
    assert sender.state is State.FAILED and sender.error[0] == TransferCode.NO_SPACE
    assert all_files(tmp_path) == []


def test_store_hands_the_receiver_its_resumed_map(tmp_path: Path) -> None:
    data = blob(4_000, 13)
    store = FileStore(tmp_path)
    p = store.open_partial("f", len(data), md5(data), chunk_size=CS)
    p.write_chunk(1, data[CS : 2 * CS])
    have = p.chunks
    assert isinstance(have, ChunkMap) and list(have) == [1]
    sender = Sender("t", filename="f", filesize=len(data), md5=md5(data), session=3)
    sender.start(0.0)
    r = Receiver.accept(parse_offer(sender.data_to_send()[0]), 0.0, chunk_size=p.chunk_size,
                        have=have)
    sender.receive(r.data_to_send()[0], 0.0)
    assert [e.index for e in sender.events() if isinstance(e, ChunkNeeded)] == [0, 2, 3]
    assert not any(isinstance(e, ChunksDiscarded) for e in r.events())


# --------------------------------------------------------------------------- 5003 notices


def test_pending_notices_survive_a_reopen_and_are_bounded(tmp_path: Path) -> None:
    from bridge_local.filenotices import PendingNotices

    notices = PendingNotices(tmp_path / "available.json", limit=3)
    for i in range(4):
        notices.add(f"f{i}", "bob")
    notices.add("f3", "bob")  # twice: kept once
    notices.add("f3", "carol")
    again = PendingNotices(tmp_path / "available.json", limit=3)
    assert again.fileids("bob") == ["f2", "f3"] and again.tokens("f3") == ["bob", "carol"]
    again.remove("f3", "bob")
    again.remove("f3", "bob")  # gone already: no error
    assert PendingNotices(tmp_path / "available.json").fileids("bob") == ["f2"]
    (tmp_path / "available.json").write_text('{"not": "a list"} [[1, 2]]')
    assert len(PendingNotices(tmp_path / "available.json")) == 0


def test_a_file_announced_before_and_after_it_is_stored_is_owed_until_notified(
        tmp_path: Path) -> None:
    from bridge_local.fileservice import FileService

    service = FileService(tmp_path)
    service.announce("early", "bob")  # the file message came before the file
    assert service.take_available() == [] and service.available_for("bob") == []
    data = os.urandom(1000)
    md5 = hashlib.md5(data).hexdigest()
    for fileid in ("early", "late"):
        with service.store.open_partial(fileid, len(data), md5, chunk_size=1000) as partial:
            partial.write_chunk(0, data)
            partial.finish()
    service._arrived.append("early")  # what a completed peer transfer records
    service.announce("late", "bob")  # the file was here before its message
    got = service.take_available()
    assert [(t, e["fileid"], e["md5"]) for t, e in got] == \
        [("bob", "early", md5), ("bob", "late", md5)]
    service.notified("bob", "early")
    restarted = FileService(tmp_path)  # bob was offline: still owed "late"
    assert [e["fileid"] for e in restarted.available_for("bob")] == ["late"]
    assert restarted.available_for("carol") == []
