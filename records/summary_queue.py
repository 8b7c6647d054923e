"""The summary queue: calls waiting for their post-call summary, and summaries waiting to be
mailed, in the spool, so that a text model that is down or slow costs a call nothing and a
summary is never lost while it is retried.

Layout, under the instance's spool directory:

    summaries/<instance>/<created ns>_<call key>.json        one call's job
    summaries/<instance>/bad/<created ns>_<call key>.json    given up (SUMMARY_RETRY_HOURS)
    summaries/<instance>/mail/<batch>/<ns>_<call key>.json   a summary waiting for its e-mail

A job is written by whoever writes the call's final record (records/spool.py::write_record:
the worker's, or a crash helper's), from the record as stored: its turns are what the record
keeps (no text at all with RECORDS_TRANSCRIPTS=false, so no job; key presses of a secret
collection were never turns; the caller's number as masked), and the call's agent's
`[agents.NAME.summary]` as it was when the call was answered (the header's `summary`).
The summarizer (summaries/summarizer.py) takes the jobs oldest first; its result goes back to
the spool for the drainer (records/spool.py::write_summary), and the job goes.

A mail batch is named for its recipients and period (`batch_key`): every summary for the
same addresses every N minutes waits in one directory and leaves in one e-mail.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from callbridge import safe_files
from callbridge.safe_files import TEMP
from records.run_figures import RunFigures, read

log = logging.getLogger(__name__)

QUEUE, BAD, MAIL = "summaries", "bad", "mail"
JOB = ".json"
WORKING = ".working"  # a job being asked about now: `<job>.json.working` (summaries/summarizer.py)
HEADER = "summary"  # the call header's key for its agent's spec (callbridge/summary_spec.py)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_TURN_TEXT = 4000  # characters of one turn sent; a runaway turn must not cost a fortune


def queue_dir(spool_dir: Path, instance: str) -> Path:
    return Path(spool_dir) / QUEUE / (_UNSAFE.sub("_", instance) or "_")


def job_turns(turns) -> list[dict]:
    """The turns a summary reads: side and what was said (what the caller heard of a cut
    reply), those with text only."""
    found = []
    for turn in turns or ():
        if not isinstance(turn, dict):
            continue
        text = (
            turn.get("heard")
            if turn.get("interrupted") and turn.get("heard") is not None
            else turn.get("text")
        )
        text = str(text or "").strip()
        if text:
            found.append({"side": str(turn.get("side") or ""), "text": text[:MAX_TURN_TEXT]})
    return found


def queue(spool_dir: Path, record: dict, key: str, targets) -> Path | None:
    """Queue the summary of the call `record` (records/spool.py's final record), when its
    header asks for one and it has something to summarize. A spool that cannot be written
    loses the summary, never the record: one warning."""
    spec = record.get(HEADER)
    if not isinstance(spec, dict):
        return None
    turns = job_turns(record.get("turns"))
    if not turns:  # transcripts off, or nothing was said: nothing to send, nothing to pay for
        return None
    job = {
        "instance": str(record.get("instance", "")),
        "call_id": record["call_id"],
        "created_at": round(time.time(), 3),
        "agent": record.get("agent", ""),
        "caller": record.get("caller", ""),
        "caller_name": record.get("caller_name", ""),
        "dialled": record.get("dialled", ""),
        "started_at": record.get("started_at"),
        "duration_s": record.get("duration_s"),
        "end_reason": record.get("end_reason", ""),
        "complete": record.get("complete", True),
        "model": spec.get("model", ""),
        "currency": record.get("currency", ""),
        "spec": spec,
        "turns": turns,
        "webhooks": list(targets or ()),
        "attempts": 0,
    }
    directory = queue_dir(spool_dir, job["instance"])
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{time.time_ns():019d}_{key}{JOB}"
        safe_files.write_text(path, json.dumps(job, ensure_ascii=False), durable=True)
    except (OSError, TypeError, ValueError) as exc:
        log.warning("cannot queue the summary of call %s: %s", record["call_id"], exc)
        return None
    return path


def waiting(directory: Path) -> list[Path]:
    """Files of a queue or a mail batch, oldest first."""
    try:
        return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(JOB))
    except OSError:
        return []


def has_jobs(spool_dir: Path, instance: str) -> bool:
    """Jobs wait, or one was being asked about when its summarizer was killed."""
    try:
        return any(p.name.endswith((JOB, JOB + WORKING)) for p in queue_dir(spool_dir, instance).iterdir())
    except OSError:
        return False


def set_aside(path: Path) -> Path:
    """Move a job to bad/ (raises OSError when it cannot be moved)."""
    bad = path.parent / BAD
    bad.mkdir(exist_ok=True)
    target = bad / path.name
    os.replace(path, target)
    safe_files.sync_directory(bad)
    return target


def batch_key(addresses, minutes: int) -> str:
    text = "\x00".join(sorted(addresses)) + f"\x00{int(minutes)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mail_dir(spool_dir: Path, instance: str) -> Path:
    return queue_dir(spool_dir, instance) / MAIL


def call_files(spool_dir: Path, call_key: str) -> list[Path]:
    """Every file of the summary queue that belongs to one call (its job, set aside, waiting
    or being asked about now, and its summary waiting for an e-mail), whatever the
    instance: for `calls erase`."""
    suffixes = tuple(f"_{call_key}{JOB}{more}" for more in ("", WORKING, TEMP, WORKING + TEMP))
    root = Path(spool_dir) / QUEUE
    try:
        return sorted(
            p for p in root.rglob(f"*_{call_key}{JOB}*") if p.is_file() and p.name.endswith(suffixes)
        )
    except OSError:
        return []


LOCK = ".lock"
LOCK_WAIT = 90.0  # seconds `calls erase` waits for the summarizer (an e-mail being sent: 60 s at most)


@contextmanager
def locked(spool_dir: Path, instance: str, wait: float | None = None) -> Iterator[bool]:
    """The summary queue of `instance`, held: the summarizer holds it from the moment it
    knows a call's summary is still wanted until every file of it is written (and while
    it mails), `calls erase` while it removes the call's files, so that an erasure never
    falls between the summarizer's look and its writes. Yields False when `wait` seconds
    passed without it (the caller goes on, and says so)."""
    directory = queue_dir(spool_dir, instance)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        held = _take(fd, wait)
        try:
            yield held
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _take(fd: int, wait: float | None) -> bool:
    if wait is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    until = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > until:
                return False
            time.sleep(0.05)


def figures_path(state_dir: str | os.PathLike[str], instance: str) -> Path:
    return Path(state_dir) / "run" / f"{instance}.summaries.json"


@dataclass
class SummaryFigures(RunFigures):
    """The summarizer's counts since the service started (records/run_figures.py), and what
    its summaries cost by agent, which the supervisor adds to the agents' daily budgets."""

    summarized: int = 0  # calls summarized (the model answered in the schema)
    failures: int = 0  # attempts that failed: no answer, an error, an answer out of the schema
    given_up: int = 0  # jobs moved to bad/ after SUMMARY_RETRY_HOURS, or refused for good
    mails_sent: int = 0  # summary e-mails the SMTP server took
    mail_failures: int = 0  # attempts to send one that failed
    mails_given_up: int = 0  # summaries whose e-mail failed for SUMMARY_RETRY_HOURS
    spent: dict = field(default_factory=dict)  # agent -> estimated cost of its summaries, this run

    @classmethod
    def counters(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("service", "spent"))

    @classmethod
    def resume(cls, path: Path, service: float):
        found = read(path)
        if found is None or found.get("service") != service:
            return cls(service)
        spent = found.get("spent") if isinstance(found.get("spent"), dict) else {}
        figures = cls(service, *(int(found.get(name) or 0) for name in cls.counters()))
        figures.spent = {str(k): float(v) for k, v in spent.items() if isinstance(v, int | float)}
        return figures

    def as_dict(self) -> dict:
        return asdict(self)
