"""A dead worker's record: built from its journal (records/spool.py::CallSpool wrote it as
the call went) and the last counters the supervisor read from its header, marked
complete=false, by a crash helper (records/drainer.py::crash_record_work) or, for a journal
a run that died whole left, the drainer's orphan pass (records/drainer.py::complete_orphans).

Whichever comes first claims the journal (`claim_journal`), so it is completed once.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from records import recordings
from records.spool import (
    JOURNAL,
    RECORD,
    call_events,
    costs,
    figures,
    file_key,
    journal_path,
    pending_records,
    usage_by_kind,
    write_record,
)

log = logging.getLogger(__name__)


def read_journal(path: Path) -> tuple[dict | None, list[dict], dict]:
    """(header, turns, last usage) from a journal; a torn last line (the crash) is skipped.
    The set-up line, when the worker got that far, is in the header (`setup_ms`,
    `setup_bridge_retries`), as it is in a final record."""
    header, turns, usage = None, [], {}
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if not isinstance(item, dict):
                continue
            kind = item.pop("kind", "")
            if kind == "header":
                header = {**item, **(header or {})}
            elif kind == "setup":
                header = {**(header or {}), **item}
            elif kind == "turn":
                usage = item.pop("usage", usage) or usage
                turns.append(item)
            elif kind == "event":  # kept under the header until complete_crashed places them
                header = header or {}
                if isinstance(item.get("event"), dict):
                    header.setdefault("journaled_events", []).append(item["event"])
    return header, turns, usage


def complete_crashed(
    directory: Path,
    fallback: dict,
    counters: dict | None,
    worker_exit: str,
    end_reason: str = "worker_crashed",
    prices=None,
    recordings_dir: Path | None = None,
    journal_found: bool = False,
) -> str:
    """After the worker died: the record from its journal and the header's last counters.

    `fallback` holds what the supervisor knows (instance, call_id, caller, dialled,
    started_at) for a worker that died before it opened its journal. Runs in a helper
    process (or the drainer, for journals a dead run left: `journal_found`, so that a
    journal another completed meanwhile is not completed again from nothing); returns what
    it did."""
    call_id = fallback["call_id"]
    path = journal_path(directory, call_id)
    claim = claim_journal(path)
    if claim is None:
        return "being completed by another helper"
    try:
        if journal_found and not path.exists():
            return "completed by another helper"
        return _complete_claimed(
            directory, path, fallback, counters, worker_exit, end_reason, prices, recordings_dir
        )
    finally:
        release(claim)


CLAIM = ".claim"
CLAIM_PID_TRUSTED = 3600.0  # seconds: past this a claim's pid may have been reused; it is stale


def claim_journal(path: Path) -> Path | None:
    """The one right to complete a dead worker's journal: a crash helper and the drainer's
    orphan pass may both come to the same one (a helper slowed by a large recording's
    SHA-256, past ORPHAN_QUIET), and two completions would write two records, one without
    the recording. The claim is a file made exclusively beside the journal, holding the
    claimer's pid; None: a live process holds it. A claim whose process is gone is taken
    away by a rename, which one taker alone can win, and made anew."""
    claim = path.with_name(path.name + CLAIM)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            holder = _holder(claim)
            if holder is None or _held(claim, holder):
                return None
            taken = claim.with_name(f"{claim.name}.{os.getpid()}.stale")
            try:
                os.rename(claim, taken)  # only one taker wins; the other finds no file
            except FileNotFoundError:
                continue
            if _holder(taken) != holder:  # we took a claim made meanwhile by a live taker: give it back
                os.rename(taken, claim)
                return None
            taken.unlink(missing_ok=True)
            log.warning("taking over the claim %s of process %d, which is gone", claim.name, holder)
            continue
        with os.fdopen(fd, "w") as out:
            out.write(str(os.getpid()))
        return claim
    return None


def release(claim: Path) -> None:
    """Drop a claim, if it is still ours (a taker may have judged us gone)."""
    if _holder(claim) == os.getpid():
        claim.unlink(missing_ok=True)


def stale_claims(directory: Path) -> int:
    """Claims left beside no journal by a claimer that died after finishing it: removed
    (the drainer's orphan pass calls this)."""
    removed = 0
    for claim in Path(directory).glob(f"*{JOURNAL}{CLAIM}"):
        journal = claim.with_name(claim.name.removesuffix(CLAIM))
        holder = _holder(claim)
        if not journal.exists() and holder is not None and not _held(claim, holder):
            claim.unlink(missing_ok=True)
            removed += 1
    return removed


def _holder(claim: Path) -> int | None:
    """The pid a claim holds; 0 for one being written (empty, for an instant); None: gone."""
    try:
        text = claim.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else 0


def _held(claim: Path, pid: int) -> bool:
    """The claim's process still lives (or it is being written), and is young enough that
    its pid was not reused."""
    try:
        age = time.time() - claim.stat().st_mtime
    except OSError:
        return False
    if pid == 0:
        return age < 60
    return age <= CLAIM_PID_TRUSTED and alive(pid)


def alive(pid: int) -> bool:
    """A process of this pid exists (one of another user's counts too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _complete_claimed(
    directory, path, fallback, counters, worker_exit, end_reason, prices, recordings_dir
) -> str:
    call_id = fallback["call_id"]
    header, turns, usage = None, [], {}
    try:
        header, turns, usage = read_journal(path)
    except FileNotFoundError:
        pass
    if any(p.name.endswith(f"_{file_key(call_id)}{RECORD}") for p in pending_records(directory)):
        path.unlink(missing_ok=True)  # the worker wrote its record before it died
        return "recorded by the worker"
    header = {**fallback, **(header or {})}
    during = header.pop("journaled_events", [])
    counters = counters or {}
    ended_at = time.time()
    # The set-up timeline, when the worker journaled it (media was ready), else none.
    setup_ms = header.get("setup_ms") or {}
    retries = int(header.get("setup_bridge_retries") or 0)
    answered = setup_ms.get("answered")
    record = {
        **header,
        "answered_at": None if answered is None else float(header["started_at"]) + answered / 1000,
        "ended_at": ended_at,
        "duration_s": round(ended_at - float(header["started_at"]), 2),
        "end_reason": end_reason,
        "worker_exit": worker_exit,
        "complete": False,
        "setup_ms": setup_ms,
        "setup_bridge_retries": retries,
        "figures": figures(counters),
        "usage": usage,
        "turns": turns,
        "events": call_events(
            setup_ms,
            retries,
            {
                "offset_ms": max(0.0, (ended_at - float(header["started_at"])) * 1000),
                "detail": {"reason": end_reason, "worker_exit": worker_exit},
            },
            during,
        ),
    }
    if counters.get("input_tokens") or counters.get("output_tokens"):
        # The header's totals are newer than the journal's last turn; kinds are not known.
        known_in = sum(
            usage.get(k, 0) for k in ("input_audio_tokens", "input_text_tokens", "input_cached_tokens")
        )
        known_out = sum(usage.get(k, 0) for k in ("output_audio_tokens", "output_text_tokens"))
        record["usage"] = {
            **usage_by_kind({}),
            **usage,
            "input_text_tokens": usage.get("input_text_tokens", 0)
            + max(0, counters.get("input_tokens", 0) - known_in),
            "output_text_tokens": usage.get("output_text_tokens", 0)
            + max(0, counters.get("output_tokens", 0) - known_out),
        }
    if prices is not None:  # callbridge/prices.py::PriceTable
        model, transcription = str(record.get("model") or ""), str(record.get("transcription_model") or "")
        record.update(costs(prices, model, transcription, record["usage"]))
    if recordings_dir is not None:  # what its recording held when it died, kept and marked
        record["recording"] = recordings.finish_crashed(recordings_dir, call_id, float(header["started_at"]))
    write_record(directory, record)
    path.unlink(missing_ok=True)
    return f"rebuilt from the journal ({len(turns)} turns)"
