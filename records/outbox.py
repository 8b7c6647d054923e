"""The webhook outbox: a call's events waiting for their receivers, in the spool, so that a
receiver that is down or slow costs a call nothing and loses nothing.

Layout, under the instance's spool directory:

    webhooks/<instance>/<target key>/<created ns>_<event id>.json    one event for one receiver
    webhooks/<instance>/bad/<target key>_<created ns>_<event id>.json    given up

Per instance, because instances may share a spool directory (RECORDS_SPOOL_DIR): each
instance's sender takes its own events only, and records their outcomes as its own.

A target key names a receiver without its URL (callbridge/call_webhooks.py::target_key). An
event is written once per receiver (temp file, fsync, rename: whole or not at all), by
whoever knows of it: the worker for `call.started` once media is up
(call_worker/call.py), and whoever writes a call's final record for `call.ended`
(records/spool.py::write_record, the worker's or a crash helper's). One sender per instance
(webhooks/sender.py) takes each receiver's queue oldest first; what it does is counted in
its figures file, read by the metrics and the supervisor's alerts like the drainer's.

An event file holds `{"id", "type", "created_at", "instance", "call_id", "data"}`; `data` is
the body's `data`: for `call.ended` the call's record as stored (numbers masked when
RECORDS_MASK_CALLERS, transcripts off when RECORDS_TRANSCRIPTS=false, secret key presses
only counted), for `call.started` who called whom and which agent answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from callbridge import safe_files
from records.run_figures import RunFigures

log = logging.getLogger(__name__)

OUTBOX, BAD = "webhooks", "bad"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
EVENT = ".json"


def outbox_dir(spool_dir: Path, instance: str) -> Path:
    return Path(spool_dir) / OUTBOX / (_UNSAFE.sub("_", instance) or "_")


def event_id(instance: str, call_id: str, kind: str) -> str:
    """The same for every copy of one call's event: a record rebuilt after a crash whose
    worker had already queued `call.ended` queues it again under the same id, which a
    receiver can drop (X-Callbridge-Event-Id)."""
    return hashlib.sha256(f"{instance}\x00{call_id}\x00{kind}".encode()).hexdigest()[:32]


def post(spool_dir: Path, kind: str, instance: str, call_id: str, data: dict, targets) -> int:
    """Queue event `kind` for each target key; returns how many were queued. A spool that
    cannot be written loses the event, never the call: one warning."""
    if not targets:
        return 0
    created_at = time.time()
    event = {
        "id": event_id(instance, call_id, kind),
        "type": kind,
        "created_at": round(created_at, 3),
        "instance": instance,
        "call_id": call_id,
        "data": data,
    }
    name = f"{_stamp():019d}_{event['id']}{EVENT}"
    queued = 0
    for key in dict.fromkeys(targets):
        if not key.isalnum():  # a key is hex: anything else is not ours to make a directory of
            continue
        directory = outbox_dir(spool_dir, instance) / key
        try:
            directory.mkdir(parents=True, exist_ok=True)
            safe_files.write_text(directory / name, json.dumps(event, ensure_ascii=False), durable=True)
            queued += 1
        except (OSError, TypeError, ValueError) as exc:
            log.warning("cannot queue the %s webhook of call %s: %s", kind, call_id, exc)
    return queued


_last_stamp = 0


def _stamp() -> int:
    """Nanoseconds since the epoch, rising within this process: a queue is sorted by name,
    and two events of one call in the same millisecond must keep their order. The first 13
    digits are the milliseconds (`backlog` reads them)."""
    global _last_stamp
    _last_stamp = max(time.time_ns(), _last_stamp + 1)
    return _last_stamp


def queues(spool_dir: Path, instance: str) -> list[Path]:
    """Each receiver's queue directory of this instance (not bad/)."""
    try:
        return sorted(p for p in outbox_dir(spool_dir, instance).iterdir() if p.is_dir() and p.name != BAD)
    except OSError:
        return []


def waiting(queue: Path) -> list[Path]:
    """A queue's events, oldest first."""
    try:
        return sorted(p for p in queue.iterdir() if p.name.endswith(EVENT))
    except OSError:
        return []


def backlog(spool_dir: Path, instance: str) -> tuple[int, float | None]:
    """(events waiting for any receiver, the oldest one's time in unix seconds or None): from
    the names alone, as records/drain_figures.py::backlog does for records."""
    count, oldest = 0, None
    for queue in queues(spool_dir, instance):
        try:
            names = os.listdir(queue)
        except OSError:
            continue
        for name in names:
            if not name.endswith(EVENT):
                continue
            count += 1
            stamp = name[:13]
            if stamp.isdigit() and (oldest is None or int(stamp) < oldest):
                oldest = int(stamp)
    return count, None if oldest is None else oldest / 1000


def set_aside(path: Path) -> Path:
    """Move a queued event to bad/ (raises OSError when it cannot be moved)."""
    bad = path.parent.parent / BAD  # webhooks/<instance>/<key>/<event> -> webhooks/<instance>/bad/
    bad.mkdir(exist_ok=True)
    target = bad / f"{path.parent.name}_{path.name}"
    os.replace(path, target)
    safe_files.sync_directory(bad)
    return target


def figures_path(state_dir: str | os.PathLike[str], instance: str) -> Path:
    return Path(state_dir) / "run" / f"{instance}.webhooks.json"


@dataclass
class WebhookFigures(RunFigures):
    """The sender's counts since the service started (records/run_figures.py)."""

    delivered: int = 0  # events a receiver took (2xx)
    failures: int = 0  # attempts that failed: no answer, a timeout, or not 2xx
    given_up: int = 0  # events moved to bad/ after CALL_WEBHOOK_RETRY_HOURS
