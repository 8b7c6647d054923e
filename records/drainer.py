"""The drainer: one long-lived helper process per instance that moves spooled records into
the database, in the order the calls ended, each exactly once.

Exactly once: `records/store.py::store_record` is idempotent on (instance, call_id), and a
spool file is removed only after the transaction that stored it has committed. Killed in
between, the next drainer stores the same file again, which changes nothing.

In order: the oldest record first; while it cannot be stored (database down, slow,
locked, read-only) nothing after it is tried, and the drainer retries with a doubling
delay (0.5 s up to 30 s). A record that can never be a row is moved to `bad/` with one
log line, so it does not block the others: one that is not a record at all (not JSON,
nested without end, fields of the wrong kind: records/store.py::RecordRefused), and one the
database refuses for any reason but an outage (records/store.py::is_outage) while it takes
a probe row at the same moment (records/store.py::probe): a database refusing every write
is an outage, and nothing is set aside for it. Each one set aside is counted
(`set_aside`, a metric) and alerted on by the supervisor.

It also finishes journals a dead run left (worker and supervisor died together): a
journal whose worker is no longer alive and that has not grown for a minute is completed
as after a crash (records/crashed.py::complete_crashed), without counters.

The supervisor keeps it running (supervisor/keeper.py, on its tick, with `drainer_work`); the drainer itself never
runs on the supervisor's loop, and the worker never talks to the database.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from records import outbox, recordings, spool, summary_queue
from records.crashed import alive, complete_crashed, read_journal, stale_claims
from records.drain_figures import DrainFigures, figures_path
from records.handover import CrashedCall
from records.migrate import upgrade
from records.queries import delete_before
from records.store import (
    RecordRefused,
    is_outage,
    open_engine,
    probe,
    store_alerts,
    store_delivery,
    store_record,
    store_summary,
)
from shm_ring import EndReason

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the spool when it is empty
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
ORPHAN_QUIET = 60.0  # seconds a dead worker's journal must be still before it is completed
RETENTION_EVERY = 3600.0  # seconds between RECORDS_RETENTION_DAYS sweeps
# What stores a spool file of each "kind" (records/spool.py); a call's record has none.
STORES = {spool.ALERTS: store_alerts, spool.DELIVERY: store_delivery, spool.SUMMARY: store_summary}


class Backoff:
    def __init__(self, low: float = BACKOFF_MIN, high: float = BACKOFF_MAX) -> None:
        self.low, self.high = low, high
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(self.high, max(self.low, self.delay * 2))
        return self.delay

    def reset(self) -> None:
        self.delay = 0.0


def drain_once(engine, directory: Path, figures: DrainFigures | None = None, on_change=None) -> int:
    """Store every pending record, oldest first; returns how many left the spool. Raises the
    database's error at the first record it cannot store (the ones after it wait).
    `figures` counts what the database did not have yet; `on_change()` follows each count."""
    moved = 0
    for path in spool.pending_records(directory):
        try:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested without end
                raise RecordRefused(f"not JSON: {type(exc).__name__}") from None
            if not isinstance(record, dict):
                raise RecordRefused("not a JSON object")
            kind = record.get("kind")  # none for a call; else an alert batch or a webhook delivery
            new = STORES.get(kind, store_record)(engine, record)
        except FileNotFoundError:
            continue  # another drainer took it
        except RecordRefused as exc:
            _set_aside(path, str(exc), figures, on_change)
            continue
        except Exception as exc:
            if is_outage(exc):
                raise
            probe(engine)  # raises when the database refuses a plain row too: an outage, wait
            _set_aside(path, f"the database refuses it: {_short(exc)}", figures, on_change)
            continue
        path.unlink(missing_ok=True)
        moved += 1
        if new and figures is not None:
            if kind == spool.ALERTS:
                figures.alert_batches += 1
            elif kind not in (spool.DELIVERY, spool.SUMMARY):  # their senders count them
                figures.stored += 1
            if on_change is not None:
                on_change()
        log.debug("stored %s%s", path.name, "" if new else " (it was there already)")
    return moved


def complete_orphans(directory: Path, now: float | None = None, recordings_dir: Path | None = None) -> int:
    """Journals of workers that are gone, quiet for ORPHAN_QUIET: completed as crashed."""
    now = time.time() if now is None else now
    done = 0
    stale_claims(directory)
    for path in spool.journals(directory):
        try:
            header, _, _ = read_journal(path)
            quiet = now - path.stat().st_mtime
        except OSError:
            continue
        if header is None or quiet < ORPHAN_QUIET or alive(int(header.get("worker_pid") or 0)):
            continue
        complete_crashed(
            directory,
            header,
            None,
            "unknown (found after a restart)",
            recordings_dir=recordings_dir,
            journal_found=True,
        )
        done += 1
    return done


def run(
    database,
    directory: Path,
    parent_pid: int,
    poll: float = POLL,
    backoff_max: float = BACKOFF_MAX,
    retention_days: int = 0,
    figures_file: Path | None = None,
    service: float = 0.0,
    call_records_dir: str = "",
    recordings_dir: Path | None = None,
    recordings_retention: int = 0,
) -> None:
    """The drainer's loop, until its supervisor is gone. `database` is a DatabaseUrl.
    `figures_file`: where its figures go for the metrics (records/drain_figures.py), for
    the service run that started at `service`. RECORDS_RETENTION_DAYS applies to the
    database, to the spool's bad/ and to `call_records_dir` (CALL_RECORDS_DIR) alike;
    `recordings_retention` (RECORDINGS_RETENTION_DAYS) to the files in `recordings_dir`."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start chatter is noise here
    figures = DrainFigures.resume(figures_file, service) if figures_file else DrainFigures(service)

    def save() -> None:
        # Only while our supervisor lives: a drainer left by an earlier run must not
        # overwrite the figures of the run that followed it.
        if figures_file is not None and os.getppid() == parent_pid:
            figures.save(figures_file)

    save()
    engine = open_engine(database)
    backoff = Backoff(high=backoff_max)
    migrated = not database.is_sqlite  # a server's schema is `callbridge db upgrade`'s job
    next_sweep = 0.0
    log.info("drainer started: spool %s, database %s", directory, database)
    while os.getppid() == parent_pid:
        try:
            if not migrated:
                upgrade(engine)
                migrated = True
            complete_orphans(directory, recordings_dir=recordings_dir)
            moved = drain_once(engine, directory, figures, save)
            if (retention_days or recordings_retention) and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + RETENTION_EVERY
                if recordings_retention and recordings_dir is not None:  # files only: before the database
                    recordings.sweep(recordings_dir, recordings_retention)
                if retention_days:
                    kept = [directory / "bad", *(directory / outbox.OUTBOX).glob(f"*/{outbox.BAD}")]
                    # summary jobs given up hold the turns' text: kept no longer than the records
                    kept += (directory / summary_queue.QUEUE).glob(f"*/{summary_queue.BAD}")
                    kept += [Path(call_records_dir)] if call_records_dir else []
                    sweep_files(kept, retention_days)  # before the database: an outage must not stop it
                    sweep_old(engine, retention_days)
        except (SQLAlchemyError, OSError) as exc:
            figures.store_failures += 1
            save()
            delay = backoff.failed()
            # The URL's password is registered with callbridge/secret.py: the log redacts it
            # even when a driver quotes it in its message.
            log.warning("cannot store call records yet (%s); retrying in %.1f s", _short(exc), delay)
            engine.dispose()  # a fresh connection next time: the old one may be half dead
            time.sleep(delay)
            continue
        if backoff.delay:
            log.info("call records are being stored again")
        backoff.reset()
        if not moved:
            time.sleep(poll)


def sweep_files(directories: list[Path], retention_days: int, now: float | None = None) -> int:
    """Delete record files (`*.json`) older than RECORDS_RETENTION_DAYS, by their time of
    writing: a privacy setting means every copy callbridge keeps, not only the database's."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    removed = 0
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                if (
                    entry.name.endswith(".json")
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff
                ):
                    os.unlink(entry.path)
                    removed += 1
            except OSError as exc:
                log.warning("cannot remove the old record file %s: %s", entry.path, exc)
    if removed:
        log.info(
            "deleted %d record files older than %d days (RECORDS_RETENTION_DAYS)", removed, retention_days
        )
    return removed


def sweep_old(engine, retention_days: int) -> int:
    """Delete calls older than RECORDS_RETENTION_DAYS (of every instance: with a shared
    database the instances should agree on it)."""
    cutoff = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=retention_days)
    removed = delete_before(engine, cutoff)
    if removed:
        log.info("deleted %d calls older than %d days (RECORDS_RETENTION_DAYS)", removed, retention_days)
    return removed


def drainer_work(settings, service: float = 0.0):
    """The drainer helper's function, as the supervisor's keeper starts it
    (supervisor/keeper.py). `service`: the supervisor's start time as the `metrics` reply
    gives it, which names this run in the drainer's figures (records/drain_figures.py)."""
    parent = os.getpid()
    figures_file = figures_path(settings.state_dir, settings.instance)
    return lambda: run(
        settings.database,
        settings.spool_dir,
        parent,
        retention_days=settings.records_retention_days,
        figures_file=figures_file,
        service=service,
        call_records_dir=settings.call_records_dir,
        recordings_dir=settings.recordings_path,
        recordings_retention=settings.recordings_retention,
    )


def crash_record_work(directory: Path, crashed: CrashedCall, counters: dict, worker_exit: str):
    """For the supervisor's "record" helper after a worker died: what it knows of the call
    (records/handover.py) and the header's last counters, copied now, before the segment is
    unlinked. `directory`: the spool."""
    counters = dict(counters)
    written = counters.get("end_reason", 0)  # the worker may have died while ending for a reason
    reason = EndReason(written).name.lower() if written in EndReason._value2member_map_ and written else None
    fallback = crashed.header(spool.VERSION)
    prices = crashed.pricing.prices
    recordings_dir = Path(crashed.recordings_dir) if crashed.recordings_dir else None
    return lambda: complete_crashed(
        directory, fallback, counters, worker_exit, reason or "worker_crashed", prices, recordings_dir
    )


def _set_aside(path: Path, why: str, figures: DrainFigures | None = None, on_change=None) -> None:
    bad = path.parent / "bad"
    try:
        bad.mkdir(exist_ok=True)
        os.replace(path, bad / path.name)
        spool.sync_directory(bad)
    except OSError as exc:
        log.error("cannot set aside the bad record %s: %s", path.name, exc)
        raise  # a record that can be neither stored nor moved: wait, as for an outage
    log.error("call record %s cannot be stored (%s); moved to %s", path.name, why, bad)
    if figures is not None:
        figures.set_aside += 1
        if on_change is not None:
            on_change()


def _short(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]
