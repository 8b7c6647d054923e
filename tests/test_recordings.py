"""Recordings (issue 29): the recording of one call as the media thread hands it over and
its writer thread files it (call_worker/recording.py, records/recordings.py), on a real
file system; a recorded call through a real worker against the simulators; a disk that
fills up during the call (a real tmpfs). Elsewhere: a recorded call's barge-in through a real
worker (tests/test_call_worker.py) and a real Asterisk (tests/asterisk/test_e2e.py, with the
pacing of recorded calls against unrecorded ones); a killed worker's recording, `calls
audio` and `calls erase` on a service (tests/test_records_cli.py); playback on the
dashboard in a browser (tests/test_web_browser.py)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from analysis import recording_channels

from call_worker import g711
from call_worker.recording import FRAME, Recording
from records import recordings
from shm_ring import CallHeader, RecordingState, Slot
from shm_ring.header import HEADER_BYTES

SILENT = 0xFF  # mu-law


def _header() -> CallHeader:
    return CallHeader(memoryview(bytearray(HEADER_BYTES)))


def _frame(value: int) -> bytes:
    """A frame whose every sample decodes to the same level: each frame is recognisable."""
    return bytes([value]) * FRAME


def _per_frame(samples: list[int]) -> list[int]:
    return [samples[i] for i in range(0, len(samples), FRAME)]


def test_both_channels_line_up_through_jitter_a_muted_phone_and_a_burst(tmp_path):
    header = _header()
    rec = Recording(tmp_path, "1733412345.42", 1_765_000_000.0, "ulaw", header)
    rec.start()
    assert header.get(Slot.RECORDING_STATE) == RecordingState.RECORDING
    assert rec.path.parent.name == recordings.PARTIAL
    codes = list(range(0x10, 0x7F))  # distinct loud mu-law codes, one per caller frame
    sent = []
    # 1. steady: a caller packet, then our frame, 20 times
    for i in range(20):
        rec.caller(_frame(codes[i]))
        rec.agent(_frame(0x90 + i % 8))
        sent.append(codes[i])
    # 2. jitter: a frame without a packet, then two packets before the next frame
    rec.agent(_frame(0x90))
    rec.caller(_frame(codes[20]))
    rec.caller(_frame(codes[21]))
    rec.agent(_frame(0x91))
    rec.agent(_frame(0x92))
    # 3. a muted phone: ten frames of ours, no packets
    for _ in range(10):
        rec.agent(_frame(0x93))
    # 4. a burst after a stall: ten packets at once, then one frame
    for i in range(22, 32):
        rec.caller(_frame(codes[i]))
    rec.agent(_frame(0x94))
    rec.caller(_frame(codes[32]))
    rec.agent(_frame(0x95))
    info = rec.finish()
    assert header.get(Slot.RECORDING_STATE) == RecordingState.DONE
    assert not rec.path.exists(), "the partial file was renamed"
    caller, agent = recording_channels(Path(info["path"]))
    assert Path(info["path"]).parent.name == "2025-12-06"  # the call's day, UTC
    frames = 20 + 3 + 10 + 2
    assert len(agent) == len(caller) == frames * FRAME
    assert info["seconds"] == round(frames * FRAME / 8000, 2)
    assert info["bytes"] == Path(info["path"]).stat().st_size == 44 + frames * FRAME * 4
    assert info["sha256"] == recordings.checksum(Path(info["path"])) and info["state"] == "complete"
    # The agent channel is exactly the frames sent, decoded.
    expected_agent = [0x90 + i % 8 for i in range(20)] + [0x90, 0x91, 0x92] + [0x93] * 10 + [0x94, 0x95]
    assert _per_frame(agent) == [g711.ulaw(code) for code in expected_agent]
    got = _per_frame(caller)
    # Steady: each packet in the frame it arrived in.
    assert got[:20] == [g711.ulaw(c) for c in sent]
    # Jitter: the late packet's frame is silent, the two that came together follow in order.
    assert got[20:23] == [g711.ulaw(SILENT), g711.ulaw(codes[20]), g711.ulaw(codes[21])]
    # Muted: silence, not a stretch of the last packet.
    assert got[23:33] == [g711.ulaw(SILENT)] * 10
    # The burst (more than MAX_LAG waiting): the newest packet is in this frame, the older
    # ones are dropped, and the next packet is in the next frame: the channels stay in step.
    assert got[33] == g711.ulaw(codes[31]) and got[34] == g711.ulaw(codes[32])


def test_a_disk_that_fills_up_stops_the_recording_and_keeps_what_was_written(tmp_path):
    """A real tmpfs of 64 KiB: about two seconds of recording fit."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        header = _header()
        rec = Recording(mount, "full-disk", 1_765_000_000.0, "ulaw", header)
        rec.start()
        for _second in range(4):  # four seconds: the writer is handed one at each
            for _ in range(50):
                rec.caller(_frame(0x20))
                rec.agent(_frame(0x30))
        deadline = time.monotonic() + 10
        while rec.on and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not rec.on, "the media thread stops handing frames over"
        assert header.get(Slot.RECORDING_STATE) == RecordingState.FAILED
        info = rec.finish()
        assert header.get(Slot.RECORDING_STATE) == RecordingState.FAILED
        assert info["state"] == "stopped" and "No space left" in info["stopped_because"]
        caller, agent = recording_channels(Path(info["path"]))
        assert 1.5 * 8000 < len(agent) == len(caller) <= 64 * 1024 // 4  # what fitted, whole samples
        assert info["seconds"] == round(len(agent) / 8000, 2)
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_crashed_workers_partial_file_is_finished_and_marked(tmp_path):
    header = _header()
    rec = Recording(tmp_path, "crashed", 1_765_000_000.0, "alaw", header)
    rec.start()
    for _ in range(75):  # a second handed to the writer, half a second not yet
        rec.caller(_frame(0xD5))
        rec.agent(_frame(0x55))
    deadline = time.monotonic() + 10
    while rec._written < 50 * FRAME * 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    rec._file.flush()  # what the page cache holds when a worker is killed
    with open(rec.path, "ab") as torn:  # and a write torn half-way through a sample
        torn.write(b"\x01")
    info = recordings.finish_crashed(tmp_path, "crashed", 1_765_000_000.0)
    assert info["state"] == "partial" and info["seconds"] == 1.0
    caller, agent = recording_channels(Path(info["path"]))
    assert len(caller) == 50 * FRAME and set(agent) == {g711.alaw(0x55)}
    assert recordings.finish_crashed(tmp_path, "crashed", 1_765_000_000.0) is None  # once


def test_call_ids_name_distinct_files_that_cannot_leave_the_directory(tmp_path):
    ids = ("../../etc/passwd", "/abs/path", "..", "a/b\x00c", "a/b", "a_b", "a%2Fb")
    names = {recordings.partial_path(tmp_path, call_id).name for call_id in ids}
    assert len(names) == len(ids)  # quoted, not squashed: no two calls share a file
    for call_id in ids:
        path = recordings.partial_path(tmp_path, call_id)
        assert path.parent == tmp_path / recordings.PARTIAL and "/" not in path.name and path.name != ".."


def test_recordings_are_the_services_alone_and_never_written_over(tmp_path):
    """Operators read the history (group access), not the recordings: those go through the
    audited `calls audio` and dashboard."""
    os.umask(0o002)  # a generous umask changes nothing
    header = _header()
    rec = Recording(tmp_path / "rec", "perm.1", 1_765_000_000.0, "ulaw", header)
    rec.start()
    for _ in range(50):
        rec.agent(_frame(0x30))
    info = rec.finish()
    os.umask(0o022)
    path = Path(info["path"])
    assert path.stat().st_mode & 0o777 == 0o600
    assert (path.parent.stat().st_mode & 0o777, (tmp_path / "rec" / "partial").stat().st_mode & 0o777) == (
        0o700,
        0o700,
    )
    again = Recording(tmp_path / "rec", "perm.1", 1_765_000_000.0, "ulaw", _header())
    again.start()
    for _ in range(50):
        again.agent(_frame(0x31))
    assert again.finish() is None  # the day's file of that id is there: not replaced
    assert recordings.checksum(path) == info["sha256"]


def test_old_recordings_are_swept_and_running_ones_kept(tmp_path):
    old = tmp_path / "2025-01-01" / "old.wav"
    new = tmp_path / "2025-01-02" / "new.wav"
    left = tmp_path / recordings.PARTIAL / "left-by-a-dead-worker.wav"
    running = tmp_path / recordings.PARTIAL / "running.wav"
    foreign = tmp_path / "monitor" / "asterisk-own.wav"  # not callbridge's: never touched
    for path in (old, new, left, running, foreign):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(recordings.wav_header(0))
    now = 1_800_000_000.0
    for path, age in ((old, 10), (left, 10), (foreign, 10), (new, 1), (running, 0)):
        os.utime(path, (now - age * 86400, now - age * 86400))
    assert recordings.sweep(tmp_path, 7, now) == 2
    assert not old.exists() and not old.parent.exists() and not left.exists()  # the empty day too
    assert new.exists() and running.exists() and foreign.exists()


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_the_decode_tables_are_g711s(law):
    low, high = g711.decode_tables(law)
    decode = g711.LAWS[law]
    for code in range(256):
        assert int.from_bytes(bytes([low[code], high[code]]), "little", signed=True) == decode(code)


def test_a_call_that_never_sent_a_frame_leaves_no_recording(tmp_path):
    header = _header()
    rec = Recording(tmp_path, "setup-failed", 1_765_000_000.0, "ulaw", header)
    rec.start()
    assert rec.finish() is None
    assert header.get(Slot.RECORDING_STATE) == RecordingState.OFF
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_an_erasure_says_when_a_reader_keeps_the_erased_pages_in_sqlites_wal(tmp_path, monkeypatch):
    """A reader holding a snapshot (a dashboard page being read) keeps the write-ahead log
    from being emptied: the erasure says it is incomplete rather than claim it is done."""
    import sqlite3

    from records_fixtures import a_record

    from callbridge.database_url import DatabaseUrl
    from records import erasure
    from records.migrate import upgrade
    from records.store import open_engine, store_record

    url = DatabaseUrl.sqlite_file(tmp_path / "callbridge.db")
    engine = open_engine(url)
    upgrade(engine)
    assert store_record(engine, a_record("wal.1", instance="clinic", caller="+34600555001"))
    reader = sqlite3.connect(tmp_path / "callbridge.db")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM calls").fetchone()  # a snapshot, held
    monkeypatch.setattr(erasure, "CHECKPOINT_SECONDS", 0.5)
    places = erasure.Places(spool_dir=tmp_path / "spool", recordings_dir=tmp_path / "recordings")
    done = erasure.erase_call(engine, places, "clinic", "wal.1")
    assert done.removed and "write-ahead log is held by a reader" in done.incomplete
    reader.rollback()
    reader.close()
    again = erasure.erase_call(engine, places, "clinic", "wal.1")
    assert again.removed == [] and again.incomplete == ""  # nothing left, the log emptied now
    held = [p.name for p in tmp_path.glob("callbridge.db*") if b"+34600555001" in p.read_bytes()]
    assert held == []
    engine.dispose()
