"""Recordings on disk: where a call's file lives, its WAV header, how it is finished, kept
after a crash, exported, erased and swept by age.

One file per call, 8 kHz 16-bit stereo WAV (left: the caller; right: the agent as the
caller heard it). While the call runs it grows in `RECORDINGS_DIR/partial/` (the worker's
writer thread, call_worker/recording.py, appends about once a second); when the call ends
it is fsynced and renamed into the directory of its day (UTC), so a file outside
`partial/` is always whole. The record keeps its path, size, duration and SHA-256
(`finish`). A worker that died leaves its partial file: the crashed call's record helper
repairs its header and finishes it marked `partial` (records/crashed.py::complete_crashed).

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

from records.spool import file_key

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
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")  # a day's directory: the only ones the sweep touches
# Recordings are the service's alone: operators (the group that may read the history) get
# no way around the audited `calls audio` and dashboard playback.
DIRECTORY_MODE, FILE_MODE = 0o700, 0o600


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
    """A call id as a file name: quoted as the spool quotes it (records/spool.py::file_key),
    so two ids never share a file and none can name a path."""
    return f"{file_key(call_id)}.wav"


def make_directory(path: Path) -> None:
    path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIRECTORY_MODE)  # the umask may have taken bits; a group may have been given


def create(path: Path):
    """The partial file, new (never another call's), the service's alone; a binary writer."""
    make_directory(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "wb")


def contained(path: str, roots: list[Path]) -> Path | None:
    """A recording's path from a record, if it is a .wav inside one of `roots` (a row of a
    shared database is not trusted to name any file) and there; else None."""
    if not path or not path.endswith(".wav"):
        return None
    file = Path(path).resolve()
    if not any(file.is_relative_to(root.resolve()) for root in roots) or not file.is_file():
        return None
    return file


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
    make_directory(target.parent)
    if target.exists():  # never over another file: the partial stays for the sweep
        raise FileExistsError(f"{target} exists already")
    os.replace(partial, target)
    try:  # the file is whole and in place: what follows only describes it
        _fsync_directory(target.parent)
        _fsync_directory(partial.parent)
        digest = checksum(target)
    except OSError as exc:
        log.warning("the recording %s is kept, but could not be checked: %s", target, exc)
        digest = ""
    return {
        "path": str(target),
        "bytes": HEADER_BYTES + data,
        "seconds": round(data / (RATE * FRAME_BYTES), 2),
        "sha256": digest,
        "state": state,
    }


def finish_crashed(directory: Path, call_id: str, started_at: float) -> dict | None:
    """A dead worker's partial recording, kept and marked; None when it left none. The
    file is claimed first (renamed), so that of two finishers (the crash helper, the
    drainer's orphan pass) one does the work and the other finds nothing."""
    partial = partial_path(directory, call_id)
    claimed = partial.with_name(f"{partial.name}.{os.getpid()}.claimed")
    try:
        os.rename(partial, claimed)
    except FileNotFoundError:
        return None
    try:
        if claimed.stat().st_size <= HEADER_BYTES:  # it died before a second was written
            os.unlink(claimed)
            return None
        return finish(claimed, directory, call_id, started_at, PARTIAL_STATE)
    except OSError as exc:
        log.warning(
            "cannot finish the crashed call's recording %s: %s", claimed, exc, extra={"call_id": call_id}
        )
        return None


def checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sweep(directory: Path, retention_days: int, now: float | None = None) -> int:
    """Delete recordings older than `retention_days` (by their time of writing): the days'
    files, and in `partial/` those left by a worker that is gone (a running call's file is
    written every second, so it is never that old); then the day directories left empty.
    Only callbridge's own names are touched; an entry that cannot be removed is said and
    skipped."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    removed = 0
    try:
        folders = [
            e.path
            for e in os.scandir(directory)
            if e.is_dir() and (DAY.fullmatch(e.name) or e.name == PARTIAL)
        ]
    except OSError:
        return 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if ".wav" not in entry.name:
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot remove the old recording %s: %s", entry.path, exc)
        if os.path.basename(folder) != PARTIAL:
            try:
                os.rmdir(folder)  # only when empty
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
