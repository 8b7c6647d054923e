"""`callbridge calls erase`: one call removed from everywhere callbridge keeps it, as a
caller's request under privacy law asks (GDPR art. 17).

Everywhere is: the database (the call's row with its summary, its turns, events and
webhook deliveries), its recording (the file the record names, and any copy not yet
recorded: a partial file, a finished one whose record is still in the spool), the spool
(its journal, its record waiting for the database or set aside in bad/), the webhook
outbox (its events still queued or given up: they carry the transcript), the summary
queue (its job, which carries the turns, and its summary waiting for an e-mail) and
CALL_RECORDS_DIR's file. SQLite overwrites the deleted rows and empties its write-ahead
log; a database server drops them from its files at its own vacuum or purge, and backups
are the operator's (docs/operations.md). The files go first: a record the drainer stores meanwhile would
otherwise come back after the database's delete. What was removed is returned, for the
audit log (the caller of this writes it) and the operator.

A call still running is not erased (its worker would write it again at its end): the
command line refuses an id `status` shows.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from callbridge.call_webhooks import EVENTS
from records import crashed, outbox, recordings, spool, summary_queue
from records.schema import calls, events, turns, webhook_deliveries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Places:
    """Where one instance keeps a call's files (the settings of the same names)."""

    spool_dir: Path  # RECORDS_SPOOL_DIR
    recordings_dir: Path  # RECORDINGS_DIR
    call_records_dir: str = ""  # CALL_RECORDS_DIR, "" when off


@dataclass
class Erasure:
    removed: list[str]  # what was removed, one line each ([]: callbridge kept nothing of it)
    incomplete: str = ""  # what could not be, said; "" when nothing is left


CHECKPOINT_SECONDS = 10.0  # how long the WAL's readers (the service's) may keep it from emptying


def erase_call(
    engine: Engine, places: Places, instance: str, call_id: str, roots: list[Path] | None = None
) -> Erasure:
    """Remove call `call_id` of `instance`. A recording path from the database is removed
    only inside `roots` (records/recordings.py::contained; default: `places`' directory)."""
    roots = roots or [places.recordings_dir]
    recorded = [
        path
        for path in (recordings.contained(p, roots) for p in _recorded(engine, instance, call_id))
        if path
    ]
    # The summarizer may be writing this call's summary, event or e-mail now: its queue's lock
    # keeps it from writing any of them once we looked (records/summary_queue.py::locked).
    with summary_queue.locked(places.spool_dir, instance, wait=summary_queue.LOCK_WAIT) as held:
        removed = [f"file {path}" for path in _remove_files(places, instance, call_id, recorded)]
    key = (calls.c.instance == instance) & (calls.c.call_id == call_id)
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite:  # deleted rows' bytes are overwritten, not left in free pages
            conn.exec_driver_sql("PRAGMA secure_delete = ON")
        counts = {}
        for name, table in (("turns", turns), ("events", events), ("webhook deliveries", webhook_deliveries)):
            counts[name] = conn.execute(
                delete(table).where((table.c.instance == instance) & (table.c.call_id == call_id))
            ).rowcount
        had_row = conn.execute(delete(calls).where(key)).rowcount
    incomplete = ""
    if not held:
        incomplete = (
            "the summarizer held its queue for longer than it should (an e-mail being sent?): "
            "run the erasure again, so that a summary it was writing is removed too"
        )
    if sqlite and not _empty_wal(engine):
        incomplete = incomplete or (
            "the SQLite write-ahead log is held by a reader (the service's?) and still holds the "
            "erased rows' old pages: run the erasure again, or with the service stopped"
        )
    if had_row:
        parts = ", ".join(f"{count} {name}" for name, count in counts.items() if count)
        removed.append("the database's record" + (f" ({parts})" if parts else ""))
    return Erasure(removed, incomplete)


def _empty_wal(engine: Engine) -> bool:
    """Checkpoint the write-ahead log, which held the pages from before the delete, and
    truncate it; True once done. A reader holding a snapshot stops it: retried a while."""
    deadline = time.monotonic() + CHECKPOINT_SECONDS
    while True:
        with engine.connect() as conn:
            busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").first()
        if not busy:
            return True
        if time.monotonic() > deadline:
            log.warning("the SQLite write-ahead log is in use: the erased call's old pages are still in it")
            return False
        time.sleep(0.2)


def _recorded(engine: Engine, instance: str, call_id: str) -> list[str]:
    query = select(calls.c.recording_path).where(
        (calls.c.instance == instance) & (calls.c.call_id == call_id)
    )
    with engine.connect() as conn:
        return [path for (path,) in conn.execute(query) if path]


def _remove_files(places: Places, instance: str, call_id: str, recorded: list[Path]) -> list[Path]:
    candidates: list[Path] = list(recorded)
    name = recordings.file_name(call_id)
    candidates.append(recordings.partial_path(places.recordings_dir, call_id))
    candidates += Path(places.recordings_dir).glob(f"*/{name}")
    candidates += Path(places.recordings_dir).glob(f"{recordings.PARTIAL}/{name}.*.claimed")
    directory = Path(places.spool_dir)
    key = spool.file_key(call_id)
    candidates.append(spool.journal_path(directory, call_id))
    candidates.append(spool.journal_path(directory, call_id).with_suffix(spool.JOURNAL + crashed.CLAIM))
    for folder in (directory, directory / "bad"):
        candidates += folder.glob(f"*_{key}{spool.RECORD}")
        candidates += folder.glob(f"*_+summary-{key}{spool.RECORD}")  # a summary for the drainer
    candidates += summary_queue.call_files(directory, key)  # its summary's job, its e-mail
    ids = {outbox.event_id(instance, call_id, kind) for kind in EVENTS}
    for event in outbox.outbox_dir(directory, instance).glob(f"*/*{outbox.EVENT}"):
        if any(event.name.endswith(f"_{event_id}{outbox.EVENT}") for event_id in ids):
            candidates.append(event)
    for event_id in ids:  # the deliveries' outcomes waiting for the drainer (spool.write_delivery)
        for folder in (directory, directory / "bad"):
            candidates += folder.glob(f"*_+webhook-{event_id}-*{spool.RECORD}")
    if (
        places.call_records_dir and Path(call_id).name == call_id
    ):  # an id that names a path names no file here
        candidates.append(Path(places.call_records_dir) / f"{call_id}.json")
    removed = []
    for path in dict.fromkeys(candidates):
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
        log.info("erased %s", path, extra={"call_id": call_id})
    return removed
