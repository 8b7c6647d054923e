"""The records store: an engine for DATABASE_URL, and writing one call's record exactly once.

One code path for SQLite, MariaDB/MySQL and PostgreSQL. SQLite gets WAL (readers such as
`callbridge calls` never block the drainer, nor it them) and a busy timeout, so a reader
holding the file for a moment is waited for instead of failing the write.

SQLite and the service's group: `callbridge calls` is for the same people as `callbridge
status`, members of the group `callbridge`, not the service's user. In WAL mode even a
reader writes: it maps the `-shm` file read-write and, when no connection has the database
open (the `-wal` and `-shm` files are removed with the last one), creates both beside the
database. `mode=ro` does not change that; `immutable=1` would, but it reads without locks
and ignores the WAL, so it would miss the newest calls or read pages mid-write while the
drainer works. So (docs/operations.md, "Call history"): the database's directory is
group-writable and setgid (the unit's StateDirectoryMode=2770, install_service.sh), so
files a member creates there belong to the group; and the database file is 0660, because
SQLite gives the `-wal` and `-shm` files it creates the database file's mode, whoever
creates them. A 0640 database would let a member's read leave a `-shm` the service can no
longer write. The CLI's reads still open the file with `mode=ro`: they never change it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from records.schema import alerts, calls, events, turns
from records.url import DatabaseUrl

log = logging.getLogger(__name__)

SQLITE_BUSY_MS = 5000
CONNECT_TIMEOUT = 10  # seconds; a server that does not answer is "down" for the drainer


SQLITE_MODE = 0o660  # the database file, and so its -wal and -shm (see the module's docstring)


def share_sqlite_file(path: Path) -> None:
    """Create the SQLite file 0660 if it is missing (an empty file is an empty database), and
    give an existing one, and its -wal and -shm, group read-write where we own them (a file
    made by an earlier callbridge under UMask=0027 is 0640). Never fails the caller: a file
    that stays 0640 costs the group's CLI, not the service."""
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
            info = name.stat()
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & SQLITE_MODE != SQLITE_MODE:
                os.chmod(name, stat.S_IMODE(info.st_mode) | SQLITE_MODE)
        except OSError:
            continue


def open_engine(url: DatabaseUrl, read_only: bool = False) -> Engine:
    """An engine for `url`; nothing connects until the first query. `read_only` (the CLI's
    questions): SQLite opens the file with mode=ro, which can never change it; a server
    database is read through the same engine as ever (its grants decide)."""
    if url.is_sqlite:
        path = url.url.database
        if read_only and path and path != ":memory:":
            target = f"file:{quote(str(Path(path).absolute()))}?mode=ro"
            engine = create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(
                    target, uri=True, timeout=SQLITE_BUSY_MS / 1000, check_same_thread=False
                ),
            )
        else:
            if path and path != ":memory:":
                share_sqlite_file(Path(path))
            engine = create_engine(url.url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

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
        connect_args.update(read_timeout=30, write_timeout=30, charset="utf8mb4")
    return create_engine(url.url, connect_args=connect_args, pool_pre_ping=True)


def utc(epoch: float | None) -> datetime | None:
    """A spool record's epoch seconds as the naive UTC the tables hold."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(float(epoch), UTC).replace(tzinfo=None)


def call_row(record: dict) -> dict:
    """The `calls` row for a spool record (records/spool.py's format)."""
    usage = record.get("usage") or {}
    figures = record.get("figures") or {}
    return {
        "instance": record["instance"],
        "call_id": record["call_id"],
        "caller": str(record.get("caller") or "")[:64],
        "caller_hash": str(record.get("caller_hash") or "")[:64],
        "caller_name": str(record.get("caller_name") or "")[:128],
        "dialled": str(record.get("dialled") or "")[:64],
        "started_at": utc(record["started_at"]),
        "answered_at": utc(record.get("answered_at")),
        "ended_at": utc(record.get("ended_at")),
        "duration_s": float(record.get("duration_s") or 0.0),
        "end_reason": str(record.get("end_reason") or "unknown")[:32],
        "worker_exit": str(record.get("worker_exit") or "")[:64],
        "agent": str(record.get("agent") or "")[:64],
        "model": str(record.get("model") or "")[:64],
        "failure": str(record.get("failure") or ""),
        "complete": bool(record.get("complete", True)),
        "setup_ms": json.dumps(record.get("setup_ms") or {}),
        "setup_bridge_retries": int(record.get("setup_bridge_retries") or 0),
        "frames_in": int(figures.get("frames_in") or 0),
        "frames_out": int(figures.get("frames_out") or 0),
        "underruns": int(figures.get("underruns") or 0),
        "barge_ins": int(figures.get("barge_ins") or 0),
        "rejected_packets": int(figures.get("rejected_packets") or 0),
        "reconnects": int(figures.get("reconnects") or 0),
        "input_audio_tokens": int(usage.get("input_audio_tokens") or 0),
        "input_text_tokens": int(usage.get("input_text_tokens") or 0),
        "input_cached_tokens": int(usage.get("input_cached_tokens") or 0),
        "output_audio_tokens": int(usage.get("output_audio_tokens") or 0),
        "output_text_tokens": int(usage.get("output_text_tokens") or 0),
        "transcription_seconds": float(usage.get("transcription_seconds") or 0.0),
        "transcription_model": str(record.get("transcription_model") or "")[:64],
        "transcription_cost": record.get("transcription_cost"),
        "cost_estimate": record.get("cost_estimate"),
        "currency": str(record.get("currency") or "")[:8],
    }


def turn_rows(record: dict) -> list[dict]:
    rows = []
    for seq, turn in enumerate(record.get("turns") or []):
        rows.append(
            {
                "instance": record["instance"],
                "call_id": record["call_id"],
                "seq": seq,
                "side": str(turn.get("side") or "")[:8],
                "offset_ms": int(turn.get("offset_ms") or 0),
                "text": str(turn.get("text") or ""),
                "interrupted": bool(turn.get("interrupted")),
                "heard": turn.get("heard"),
            }
        )
    return rows


def event_rows(record: dict) -> list[dict]:
    rows = []
    for seq, item in enumerate(record.get("events") or []):
        rows.append(
            {
                "instance": record["instance"],
                "call_id": record["call_id"],
                "seq": seq,
                "offset_ms": int(item.get("offset_ms") or 0),
                "kind": str(item.get("kind") or "")[:32],
                "detail": json.dumps(item.get("detail") or {}),
            }
        )
    return rows


def store_record(engine: Engine, record: dict) -> bool:
    """Write one call with its turns and events in one transaction. Idempotent on
    (instance, call_id): True when this call wrote it, False when it was there already
    (a drainer killed between the commit and removing the spool file sends it again).

    Raises ValueError for a record that cannot be a row (the drainer sets it aside), and
    SQLAlchemy's errors when the database cannot be written (the drainer retries)."""
    try:
        row = call_row(record)
        children = turn_rows(record), event_rows(record)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not a call record: {exc!r}") from None
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
        instance, batch_id = str(batch["instance"]), str(batch["batch_id"])
        rows = [
            {
                "instance": instance,
                "batch_id": batch_id,
                "seq": seq,
                "sent_at": utc(batch["sent_at"]),
                "alert_key": str(item["key"])[:64],
                "kind": str(item["kind"])[:16],
                "severity": str(item.get("severity") or "")[:16],
                "text": str(item.get("text") or ""),
                "channel": str(item["channel"])[:128],
                "delivered": bool(item["delivered"]),
                "outcome": str(item.get("how") or ""),
            }
            for seq, item in enumerate(batch["alerts"])
        ]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not an alerts batch: {exc!r}") from None
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
