"""Recordings on disk: where a call's file lives, its WAV header, how it is finished, kept
after a crash, exported, erased and swept by age.

One file per call, 8 kHz 16-bit stereo WAV (left: the caller; right: the agent as the
caller heard it). While the call runs it grows in `RECORDINGS_DIR/partial/` (the worker's
writer thread, call_worker/recording.py, appends about once a second); when the call ends
it is fsynced and renamed into the directory of its day (UTC), so a file outside
`partial/` is always whole. The record keeps its path, size, duration and SHA-256
(`finish`). A worker that died leaves its partial file: the crashed call's record helper
repairs its header and finishes it marked `partial` (records/spool.py::complete_crashed).

Here, not in call_worker/, because records/ finishes a crashed worker's file and the
command line exports and erases them; the worker only writes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import time
from pathlib import Path

log = logging.getLogger(__name__)

RATE = 8000
CHANNELS = 2
SAMPLE_BYTES = 2
FRAME_BYTES = CHANNELS * SAMPLE_BYTES  # one sample of each channel
HEADER_BYTES = 44
PARTIAL = "partial"
# How a recording ended, as its record says (`recording_state`)
COMPLETE = "complete"  # the call ended and its file was finished
STOPPED = "stopped"  # recording stopped during the call (a full disk): the file holds the start
PARTIAL_STATE = "partial"  # the worker died: what it had written, its header repaired
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def wav_header(data_bytes: int) -> bytes:
    """The 44-byte RIFF header of a PCM WAV with `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        CHANNELS,
        RATE,
        RATE * FRAME_BYTES,
        FRAME_BYTES,
        SAMPLE_BYTES * 8,
        b"data",
        data_bytes,
    )


def file_name(call_id: str) -> str:
    """A call id as a file name: Asterisk's ids are safe, an id a dialplan set may not be."""
    name = _UNSAFE.sub("_", call_id)[:120].lstrip(".") or "call"
    return f"{name}.wav"


def partial_path(directory: Path, call_id: str) -> Path:
    return Path(directory) / PARTIAL / file_name(call_id)


def final_path(directory: Path, call_id: str, started_at: float) -> Path:
    day = time.strftime("%Y-%m-%d", time.gmtime(started_at))
    return Path(directory) / day / file_name(call_id)


def finish(partial: Path, directory: Path, call_id: str, started_at: float, state: str) -> dict:
    """Make the partial file whole (its header says what it holds), fsync it, rename it
    into its day's directory and describe it for the record. Raises OSError."""
    size = partial.stat().st_size
    data = max(0, size - HEADER_BYTES) // FRAME_BYTES * FRAME_BYTES
    with open(partial, "r+b") as file:
        if size != HEADER_BYTES + data:
            file.truncate(HEADER_BYTES + data)  # a torn last write, or no header at all
        file.seek(0)
        file.write(wav_header(data))
        file.flush()
        os.fsync(file.fileno())
    target = final_path(directory, call_id, started_at)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)
    _fsync_directory(target.parent)
    _fsync_directory(partial.parent)
    return {
        "path": str(target),
        "bytes": HEADER_BYTES + data,
        "seconds": round(data / (RATE * FRAME_BYTES), 2),
        "sha256": checksum(target),
        "state": state,
    }


def finish_crashed(directory: Path, call_id: str, started_at: float) -> dict | None:
    """A dead worker's partial recording, kept and marked; None when it left none."""
    partial = partial_path(directory, call_id)
    if not partial.exists():
        return None
    try:
        return finish(partial, directory, call_id, started_at, PARTIAL_STATE)
    except OSError as exc:
        log.warning(
            "cannot finish the crashed call's recording %s: %s", partial, exc, extra={"call_id": call_id}
        )
        return None


def checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def erase(path: str) -> bool:
    """Remove one recording (`calls erase`); True when a file was removed."""
    if not path:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def sweep(directory: Path, retention_days: int, now: float | None = None) -> int:
    """Delete finished recordings older than `retention_days` (by their time of writing),
    and the day directories left empty; partial files are the running calls'."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    removed = 0
    try:
        days = [entry for entry in os.scandir(directory) if entry.is_dir() and entry.name != PARTIAL]
    except FileNotFoundError:
        return 0
    for day in days:
        for entry in os.scandir(day.path):
            try:
                if entry.name.endswith(".wav") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        try:
            os.rmdir(day.path)  # only when empty
        except OSError:
            pass
    if removed:
        log.info(
            "deleted %d recordings older than %d days (RECORDINGS_RETENTION_DAYS)", removed, retention_days
        )
    return removed


def _fsync_directory(path: Path) -> None:
    """The rename is durable once the directory is (a power cut keeps the file's name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
