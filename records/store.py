"""The records store: an engine for DATABASE_URL, and writing one call's record exactly once.

One code path for SQLite, MariaDB/MySQL and PostgreSQL. SQLite gets WAL (readers such as
`callbridge calls` never block the drainer, nor it them) and a busy timeout, so a reader
holding the file for a moment is waited for instead of failing the write.

SQLite and the operators: `callbridge calls` is for the same people as `callbridge status`,
the operators (group `callbridge-operators`, the service's primary group: docs/operations.md),
who may read the history and never change it. The state directory is 2750 and the database
file 0640, the service's user's and the operators' group's: SQLite gives the -wal and -shm
files it creates the database file's mode, so those are 0640 too. An operator's read opens
the file with `mode=ro`: while the service has it open, SQLite reads the -wal and -shm it
cannot write; when no connection has it open (the last one removed them) a read-only
opener cannot create them, and the read falls back to `immutable=1`, which is exact then:
with no -wal there is nothing but the database file to read. (Immutable takes no locks: a
read racing the service's first write after a start may fail; run it again.)
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from callbridge.database_url import DatabaseUrl
from records.schema import ID, alerts, calls, events, turns, webhook_deliveries

log = logging.getLogger(__name__)

SQLITE_BUSY_MS = 5000
CONNECT_TIMEOUT = 10  # seconds; a server that does not answer is "down" for the drainer
# A server that takes the connection and then never answers must read as "down" too, not
# hold the drainer: MySQL's driver has read and write timeouts; PostgreSQL gets the server's
# own statement and lock timeouts and TCP keepalives with a user timeout for a dead peer.
MYSQL_IO_TIMEOUT = 30
PG_STATEMENT_TIMEOUT_MS = 30_000
PG_LOCK_TIMEOUT_MS = 10_000
PG_TCP_USER_TIMEOUT_MS = 30_000
BIGINT = 2**63 - 1  # counters beyond this cannot be a row on any of the three


class RecordRefused(ValueError):
    """This record can never be a row (the drainer sets it aside); the database is fine."""


SQLITE_MODE = 0o640  # the database file, and so its -wal and -shm (see the module's docstring)


def share_sqlite_file(path: Path) -> None:
    """Create the SQLite file 0640 if it is missing (an empty file is an empty database), and
    give an existing one, and its -wal and -shm, exactly that mode where we own them (a file
    made by an earlier callbridge was 0660: its group could write the history). Never fails
    the caller."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, SQLITE_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        log.debug("cannot create %s: %s", path, exc)
        return
    else:
        try:
            os.fchmod(fd, SQLITE_MODE)  # the umask took bits away
        finally:
            os.close(fd)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            info = name.lstat()  # a link is never followed, nor changed
            mine = stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
            if mine and stat.S_IMODE(info.st_mode) != SQLITE_MODE:
                os.chmod(name, SQLITE_MODE)
        except OSError:
            continue


def _read_only(file: Path) -> sqlite3.Connection:
    """A connection that can never change `file` (the module's docstring says why two ways)."""
    target = f"file:{quote(str(file))}?mode=ro"
    conn = sqlite3.connect(target, uri=True, timeout=SQLITE_BUSY_MS / 1000, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.path.exists(f"{file}-wal"):
            raise  # a WAL to read that we cannot: immutable would miss it
    return sqlite3.connect(f"{target}&immutable=1", uri=True, check_same_thread=False)


def open_engine(url: DatabaseUrl, read_only: bool = False) -> Engine:
    """An engine for `url`; nothing connects until the first query. `read_only` (the CLI's
    questions): SQLite opens the file with mode=ro, which can never change it; a server
    database is read through the same engine as ever (its grants decide). Its errors never
    quote a statement's values (hide_parameters): they hold transcripts, numbers and hashes."""
    if url.is_sqlite:
        path = url.url.database
        if read_only and path and path != ":memory:":
            file = Path(path).absolute()
            engine = create_engine("sqlite://", creator=lambda: _read_only(file), hide_parameters=True)
        else:
            if path and path != ":memory:":
                share_sqlite_file(Path(path))
            engine = create_engine(
                url.url, connect_args={"timeout": SQLITE_BUSY_MS / 1000}, hide_parameters=True
            )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            if not read_only:  # a reader finds WAL set: it is kept in the database file
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT}
    if url.backend == "mysql":
        connect_args.update(read_timeout=MYSQL_IO_TIMEOUT, write_timeout=MYSQL_IO_TIMEOUT, charset="utf8mb4")
    elif url.backend == "postgresql":
        connect_args.update(
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=PG_TCP_USER_TIMEOUT_MS,
        )
    engine = create_engine(url.url, connect_args=connect_args, pool_pre_ping=True, hide_parameters=True)
    if url.backend == "postgresql":

        @event.listens_for(engine, "connect")
        def _pg_timeouts(dbapi_connection, _record) -> None:
            # SET, not the `options` connection parameter: poolers in session mode may refuse that.
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {PG_STATEMENT_TIMEOUT_MS}")
                cursor.execute(f"SET lock_timeout = {PG_LOCK_TIMEOUT_MS}")
            dbapi_connection.commit()

    return engine


def is_outage(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached or worked with now (retried, in
    order), not that a record is wrong. Lock waits, timeouts, lost and refused connections,
    a read-only or full server all arrive as these."""
    if isinstance(exc, (OSError, DisconnectionError, PoolTimeout, OperationalError, InterfaceError)):
        return True
    return bool(getattr(exc, "connection_invalidated", False))


def probe(engine: Engine) -> None:
    """Prove that the database takes a call's row right now: a minimal one in a transaction
    that is rolled back. Raises what the database says when it does not; a record refused
    while this passes is the record's fault, not the database's."""
    now = datetime.now(UTC).replace(tzinfo=None)
    row = {"instance": "~probe", "call_id": uuid.uuid4().hex, "started_at": now, "end_reason": "probe"}
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            conn.execute(insert(calls), [row])
        finally:
            transaction.rollback()


def utc(epoch: float | None) -> datetime | None:
    """A spool record's epoch seconds as the naive UTC the tables hold."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(float(epoch), UTC).replace(tzinfo=None)


# What a spool record holds was written by our own worker, but a file can be damaged, hand
# edited or written by an older version: every field is made what its column holds, or the
# record is refused (RecordRefused) before the database sees it. NUL characters are removed
# from all text (PostgreSQL refuses them in text columns; the others keep them silently).


def _text(value, limit: int | None = None) -> str:
    text = str(value or "").replace("\x00", "")
    return text[:limit] if limit else text


def _count(value) -> int:
    number = int(value or 0)
    if not -BIGINT <= number <= BIGINT:
        raise RecordRefused(f"a count out of range ({str(number)[:20]}...)")
    return number


def _seconds(value) -> float:
    number = float(value or 0.0)
    if not math.isfinite(number):
        raise RecordRefused(f"a duration that is not a finite number ({number})")
    return number


def _money(value) -> float | None:
    """A cost: None (no estimate) when missing or not finite (NaN and Infinity would make
    every sum and budget meaningless)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _key(record: dict) -> tuple[str, str]:
    instance, call_id = _text(record["instance"]), _text(record["call_id"])
    if not instance or not call_id or len(instance) > 64 or len(call_id) > ID:
        raise RecordRefused("its instance or call id is empty or too long")
    return instance, call_id


def call_row(record: dict) -> dict:
    """The `calls` row for a spool record (records/spool.py's format)."""
    usage = record.get("usage") or {}
    figures = record.get("figures") or {}
    instance, call_id = _key(record)
    return {
        "instance": instance,
        "call_id": call_id,
        "caller": _text(record.get("caller"), 64),
        "caller_hash": _text(record.get("caller_hash"), 64),
        "caller_name": _text(record.get("caller_name"), 128),
        "dialled": _text(record.get("dialled"), 64),
        "started_at": utc(_seconds(record["started_at"])),
        "answered_at": utc(record.get("answered_at") and _seconds(record["answered_at"])),
        "ended_at": utc(record.get("ended_at") and _seconds(record["ended_at"])),
        "duration_s": _seconds(record.get("duration_s")),
        "end_reason": _text(record.get("end_reason") or "unknown", 32),
        "worker_exit": _text(record.get("worker_exit"), 64),
        "agent": _text(record.get("agent"), 64),
        "model": _text(record.get("model"), 64),
        "failure": _text(record.get("failure")),
        "complete": bool(record.get("complete", True)),
        "setup_ms": _text(json.dumps(record.get("setup_ms") or {})),
        "setup_bridge_retries": _count(record.get("setup_bridge_retries")),
        **{
            name: _count(figures.get(name))
            for name in (
                "frames_in",
                "frames_out",
                "underruns",
                "barge_ins",
                "rejected_packets",
                "reconnects",
            )
        },
        **{
            name: _count(usage.get(name))
            for name in (
                "input_audio_tokens",
                "input_text_tokens",
                "input_cached_tokens",
                "output_audio_tokens",
                "output_text_tokens",
            )
        },
        "transcription_seconds": _seconds(usage.get("transcription_seconds")),
        "session_seconds": _seconds(usage.get("session_seconds")),
        "transcription_model": _text(record.get("transcription_model"), 64),
        "transcription_cost": _money(record.get("transcription_cost")),
        "cost_estimate": _money(record.get("cost_estimate")),
        "currency": _text(record.get("currency"), 8),
        **_recording(record.get("recording")),
    }


def _recording(recording: object) -> dict:
    """The recording's columns (records/recordings.py::finish), empty when there is none."""
    recording = recording if isinstance(recording, dict) else {}
    return {
        "recording_path": _text(recording.get("path"), 1024),
        "recording_bytes": _count(recording.get("bytes")),
        "recording_seconds": _seconds(recording.get("seconds")),
        "recording_sha256": _text(recording.get("sha256"), 64),
        "recording_state": _text(recording.get("state"), 16),
    }


def turn_rows(record: dict) -> list[dict]:
    instance, call_id = _key(record)
    rows = []
    for seq, turn in enumerate(record.get("turns") or []):
        heard = turn.get("heard")
        rows.append(
            {
                "instance": instance,
                "call_id": call_id,
                "seq": seq,
                "side": _text(turn.get("side"), 8),
                "offset_ms": _count(turn.get("offset_ms")),
                "text": _text(turn.get("text")),
                "interrupted": bool(turn.get("interrupted")),
                "heard": None if heard is None else _text(heard),
                "phase": _text(turn.get("phase"), 16) or None,
            }
        )
    return rows


def event_rows(record: dict) -> list[dict]:
    instance, call_id = _key(record)
    rows = []
    for seq, item in enumerate(record.get("events") or []):
        rows.append(
            {
                "instance": instance,
                "call_id": call_id,
                "seq": seq,
                "offset_ms": _count(item.get("offset_ms")),
                "kind": _text(item.get("kind"), 32),
                "detail": _text(json.dumps(item.get("detail") or {})),
            }
        )
    return rows


def store_record(engine: Engine, record: dict) -> bool:
    """Write one call with its turns and events in one transaction. Idempotent on
    (instance, call_id): True when this call wrote it, False when it was there already
    (a drainer killed between the commit and removing the spool file sends it again).

    Raises RecordRefused for a record that cannot be a row (the drainer sets it aside), and
    SQLAlchemy's errors when the database cannot be written (the drainer decides which)."""
    try:
        row = call_row(record)
        children = turn_rows(record), event_rows(record)
    except RecordRefused:
        raise
    except Exception as exc:  # pure dict work on the file's content: any failure is the record's
        raise RecordRefused(f"not a call record: {exc!r}"[:300]) from None
    key = (calls.c.instance == row["instance"]) & (calls.c.call_id == row["call_id"])
    try:
        with engine.begin() as conn:
            if conn.execute(select(calls.c.call_id).where(key)).first() is not None:
                return False
            conn.execute(insert(calls), [row])
            for table, rows in zip((turns, events), children, strict=True):
                if rows:
                    conn.execute(insert(table), rows)
    except IntegrityError:
        # Another writer (a second drainer, an import) stored the same call between our
        # check and our insert: the call is there, which is all we promised.
        with engine.connect() as conn:
            if conn.execute(select(calls.c.call_id).where(key)).first() is not None:
                return False
        raise
    return True


def store_alerts(engine: Engine, batch: dict) -> bool:
    """Write one alert helper's batch (records/spool.py::write_alerts) in one transaction.
    Idempotent on (instance, batch_id): False when it was there already."""
    try:
        instance, batch_id = _text(batch["instance"], 64), _text(batch["batch_id"], 32)
        rows = [
            {
                "instance": instance,
                "batch_id": batch_id,
                "seq": seq,
                "sent_at": utc(_seconds(batch["sent_at"])),
                "alert_key": _text(item["key"], 64),
                "kind": _text(item["kind"], 16),
                "severity": _text(item.get("severity"), 16),
                "text": _text(item.get("text")),
                "channel": _text(item["channel"], 128),
                "delivered": bool(item["delivered"]),
                "outcome": _text(item.get("how")),
            }
            for seq, item in enumerate(batch["alerts"])
        ]
    except Exception as exc:  # as for a call record: the content's fault
        raise RecordRefused(f"not an alerts batch: {exc!r}"[:300]) from None
    key = (alerts.c.instance == instance) & (alerts.c.batch_id == batch_id)
    try:
        with engine.begin() as conn:
            if conn.execute(select(alerts.c.seq).where(key)).first() is not None:
                return False
            if rows:
                conn.execute(insert(alerts), rows)
    except IntegrityError:
        with engine.connect() as conn:
            if conn.execute(select(alerts.c.seq).where(key)).first() is not None:
                return False
        raise
    return True


def store_delivery(engine: Engine, outcome: dict) -> bool:
    """One webhook delivery's outcome (records/spool.py::write_delivery). Idempotent on
    (instance, event id, target): False when it was there already."""
    try:
        row = {
            "instance": _text(outcome["instance"], 64),
            "event_id": _text(outcome["event_id"], 32),
            "target": _text(outcome["target"], 16),
            "call_id": _text(outcome.get("call_id"), ID),
            "event_type": _text(outcome.get("type"), 32),
            "created_at": utc(_seconds(outcome.get("created_at") or outcome["finished_at"])),
            "finished_at": utc(_seconds(outcome["finished_at"])),
            "delivered": bool(outcome["delivered"]),
            "attempts": _count(outcome.get("attempts")),
            "outcome": _text(outcome.get("outcome")),
        }
    except Exception as exc:  # as for a call record: the content's fault
        raise RecordRefused(f"not a webhook delivery: {exc!r}"[:300]) from None
    t = webhook_deliveries.c
    key = (t.instance == row["instance"]) & (t.event_id == row["event_id"]) & (t.target == row["target"])
    try:
        with engine.begin() as conn:
            if conn.execute(select(t.attempts).where(key)).first() is not None:
                return False
            conn.execute(insert(webhook_deliveries), [row])
    except IntegrityError:
        with engine.connect() as conn:
            if conn.execute(select(t.attempts).where(key)).first() is not None:
                return False
        raise
    return True


def store_summary(engine: Engine, result: dict) -> bool:
    """A call's post-call summary (records/spool.py::write_summary) onto its row, its cost
    added to the call's estimate. Idempotent: False when the row has its summary already (a
    drainer killed between the commit and removing the file sends it again).

    The call's record is stored before it (it was spooled first); a call that has no row
    (its record was set aside) cannot take it: RecordRefused, and it is set aside too."""
    try:
        instance, call_id = _key(result)
        fields = result.get("fields")
        row = {
            "summary": _text(result.get("summary")),
            "summary_fields": _text(
                json.dumps(fields if isinstance(fields, dict) else {}, ensure_ascii=False)
            ),
            "summary_model": _text(result.get("model"), 64),
            "summary_input_tokens": _count(result.get("input_tokens")),
            "summary_output_tokens": _count(result.get("output_tokens")),
            "summary_cost": _money(result.get("cost")),
            "summarized_at": utc(_seconds(result["summarized_at"])),
        }
    except RecordRefused:
        raise
    except Exception as exc:  # as for a call record: the content's fault
        raise RecordRefused(f"not a call summary: {exc!r}"[:300]) from None
    key = (calls.c.instance == instance) & (calls.c.call_id == call_id)
    with engine.begin() as conn:
        found = conn.execute(select(calls.c.summarized_at, calls.c.cost_estimate).where(key)).first()
        if found is None:
            raise RecordRefused("its call is not in the database (was its record set aside?)")
        if found.summarized_at is not None:
            return False
        if row["summary_cost"] is not None and found.cost_estimate is not None:
            row["cost_estimate"] = round(found.cost_estimate + row["summary_cost"], 6)
        conn.execute(update(calls).where(key).values(**row))
    return True
