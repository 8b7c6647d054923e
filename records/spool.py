"""The spool: where a call's record waits for the database, so that nothing is lost and
nothing waits on it.

Per call, in the instance's spool directory:

- `<key>.journal`, JSON lines, append-only, written by the worker's main thread as the
  call goes: a header line (who, when, agent, model, worker pid), a set-up line once media
  is ready (the set-up timeline), then one line per finished turn, each carrying the usage
  so far. A worker that dies keeps every turn that had finished (the media loop wakes the
  main thread for each).
- `<ended ms>_<key>.json`, the final record, written once (temp file, fsync, rename: the
  drainer never sees half a record), after which the journal is removed. Names sort by
  the end of the call, which is the order the drainer stores them in.

After a crash a helper builds the record from the journal and the last counters the
supervisor read from the call's header (records/crashed.py); the record says complete=false.
The worker's side is `CallSpool`: `call_worker/call.py` opens it and journals on its control
tick, and `call_worker/ending.py` finishes it. A spool that cannot be written costs the
record, never the call: one warning, then the spool is off for that call.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

from callbridge import safe_files
from records import outbox, summary_queue
from records.handover import WorkerEnding

log = logging.getLogger(__name__)

VERSION = 1
WEBHOOKS = "webhooks"  # the header's list of the call's webhook target keys (records/outbox.py)
ALERTS = "alerts"  # the "kind" of a spool file that holds alert outcomes, not a call
DELIVERY = "webhook_delivery"  # ... and of one that holds a webhook delivery's outcome
SUMMARY = "summary"  # ... and of one that holds a call's post-call summary (summaries/)
JOURNAL, RECORD, TEMP = ".journal", ".json", safe_files.TEMP
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_key(call_id: str) -> str:
    """The call id as a file name part (Asterisk's ids are safe already; others are quoted)."""
    return _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", call_id)[:200] or "_"


def record_name(ended_at: float, call_id: str) -> str:
    return f"{int(ended_at * 1000):013d}_{file_key(call_id)}{RECORD}"


def write_alerts(directory: Path, instance: str, outcomes: list[dict], sent_at: float) -> Path:
    """An alert helper's outcomes, for the drainer to store (records/store.py::store_alerts).
    Named like a call record ("+" never occurs in a call's file key), so that the drainer
    takes it in the same time order."""
    batch_id = uuid.uuid4().hex
    batch = {
        "kind": ALERTS,
        "instance": instance,
        "batch_id": batch_id,
        "sent_at": sent_at,
        "alerts": outcomes,
    }
    return write_json_atomically(directory, f"{int(sent_at * 1000):013d}_+alerts-{batch_id}{RECORD}", batch)


def write_delivery(directory: Path, outcome: dict) -> Path:
    """A webhook delivery's outcome (webhooks/sender.py), for the drainer to store
    (records/store.py::store_delivery); named like the alerts' batches."""
    name = f"{int(outcome['finished_at'] * 1000):013d}_+webhook-{outcome['event_id']}-{outcome['target']}{RECORD}"
    return write_json_atomically(directory, name, {"kind": DELIVERY, **outcome})


def write_summary(directory: Path, result: dict) -> Path:
    """A call's post-call summary (summaries/summarizer.py), for the drainer to put on its
    row (records/store.py::store_summary); named like the alerts' batches, after the call's
    record (it is written later), which the drainer therefore stores first."""
    name = f"{int(result['summarized_at'] * 1000):013d}_+summary-{file_key(result['call_id'])}{RECORD}"
    return write_json_atomically(directory, name, {"kind": SUMMARY, **result})


def journal_path(directory: Path, call_id: str) -> Path:
    return directory / f"{file_key(call_id)}{JOURNAL}"


def pending_records(directory: Path) -> list[Path]:
    """Final records waiting for the database, oldest call end first."""
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(RECORD))
    except FileNotFoundError:
        return []


def journals(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.name.endswith(JOURNAL))
    except FileNotFoundError:
        return []


def write_record(directory: Path, record: dict) -> Path:
    """Atomically: a reader sees no file or the whole record. Then, when the call has webhook
    targets (the header's `webhooks`, their keys), its `call.ended` event is queued for them
    (records/outbox.py): after the record, so that a receiver is never told of a call whose
    record could be lost; and when its header asks for a summary (`summary`), the summary's
    job (records/summary_queue.py), from the record as written."""
    record = dict(record)
    targets = record.pop(WEBHOOKS, None) or ()
    summary = record.pop(summary_queue.HEADER, None)  # the agent's summary spec: not the record's
    path = write_json_atomically(directory, record_name(record["ended_at"], record["call_id"]), record)
    data = record
    if isinstance(record.get("recording"), dict):  # a receiver learns that there is one, not where
        data = {**record, "recording": {k: record["recording"].get(k) for k in ("state", "seconds")}}
    outbox.post(directory, "call.ended", str(record.get("instance", "")), record["call_id"], data, targets)
    if summary is not None:  # after the record: a summary is never of a call that could be lost
        summary_queue.queue(
            directory, {**record, summary_queue.HEADER: summary}, file_key(record["call_id"]), targets
        )
    return path


def write_json_atomically(directory: Path, name: str, content: dict, indent: int | None = None) -> Path:
    """`content` as `directory/name`, whole or not at all, and still there after a power loss
    (callbridge/safe_files.py: a temp file fsynced and renamed, the directory fsynced, no
    link followed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    safe_files.write_text(path, json.dumps(content, ensure_ascii=False, indent=indent), durable=True)
    return path


sync_directory = safe_files.sync_directory


def webhook_keys(settings, agent) -> list[str]:
    """The keys of a call's webhook targets: CALL_WEBHOOKS, then its agent's own."""
    targets = (*settings.call_webhooks, *(getattr(agent, "webhooks", None) or ()))
    return list(dict.fromkeys(target.key for target in targets))


def summary_spec(settings, agent) -> dict | None:
    """What the call's summary is to be made with (SUMMARY_MODEL and the agent's
    `[agents.NAME.summary]`, callbridge/summary_spec.py), or None: no summary for it."""
    if not getattr(settings, "summary_model", ""):
        return None
    spec = getattr(agent, "summary", None)
    if spec is not None and not spec.enabled:
        return None
    given = spec.as_header() if spec is not None else {"fields": {}, "email": [], "email_batch_minutes": 0}
    return {**given, "model": settings.summary_model}


def turn_entry(turn: dict, started_at: float, transcripts: bool = True) -> dict:
    """A conversation's transcript item (call_worker/conversation.py) as a spooled turn;
    without its text when transcripts are off (RECORDS_TRANSCRIPTS=false)."""
    entry = {
        "side": turn.get("role", ""),
        "offset_ms": max(0, int((float(turn.get("t") or started_at) - started_at) * 1000)),
        "text": turn.get("text", "") if transcripts else "",
        "interrupted": bool(turn.get("interrupted")),
    }
    # what the caller heard of an interrupted reply (call_worker/heard.py): kept only where
    # it differs in meaning from the text, i.e. for a turn that was cut
    if transcripts and entry["interrupted"] and turn.get("heard") is not None:
        entry["heard"] = turn["heard"]
    if turn.get("phase"):  # gpt-realtime-2.x: "preamble" or "answer" (call_worker/transcript.py)
        entry["phase"] = turn["phase"]
    return entry


def usage_by_kind(usage: dict) -> dict:
    """call_worker/conversation.py's usage totals split by kind: text is total less audio."""
    input_audio = int(usage.get("input_audio_tokens") or 0)
    output_audio = int(usage.get("output_audio_tokens") or 0)
    cached = int(usage.get("input_cached_tokens") or 0)
    return {
        "input_audio_tokens": input_audio,
        "input_text_tokens": max(0, int(usage.get("input_tokens") or 0) - input_audio - cached),
        "input_cached_tokens": cached,
        "output_audio_tokens": output_audio,
        "output_text_tokens": max(0, int(usage.get("output_tokens") or 0) - output_audio),
        "transcription_seconds": float(usage.get("transcription_seconds") or 0.0),
        "session_seconds": float(usage.get("session_seconds") or 0.0),  # GPT-Live's billed time
    }


def figures(counters: dict) -> dict:
    """The worker's audio figures from a header snapshot (shm_ring/header.py)."""
    rejected = sum(int(counters.get(name, 0)) for name in counters if name.startswith("rejected_"))
    return {
        "frames_in": int(counters.get("frames_in", 0)),
        "frames_out": int(counters.get("frames_out", 0)),
        "underruns": int(counters.get("underruns", 0)),
        "barge_ins": int(counters.get("barge_ins", 0)),
        "rejected_packets": rejected,
        "reconnects": int(counters.get("reconnects", 0)),
    }


def costs(prices, model: str, transcription_model: str, usage: dict) -> dict:
    """The record's estimates under callbridge/prices.py's PriceTable: the whole call's (tokens
    and transcription minutes) and the transcription's part."""
    return {
        "cost_estimate": prices.estimate(model, usage, transcription_model),
        "transcription_cost": prices.transcription(transcription_model, usage),
    }


def call_events(setup_ms: dict, bridge_retries: int, end: dict, during: list[dict] = ()) -> list[dict]:
    """The call's events: each set-up mark (call_worker/setup_timeline.py, ms since
    admission, the same origin as the turns' offsets) in time order, then what happened
    during the call (tool calls, transfers: `during`), then its end.

    The columns hold the same figures for queries; as events they make one timeline."""
    events = [
        {"offset_ms": int(ms), "kind": f"setup_{name}"[:32], "detail": {}}
        for name, ms in sorted(setup_ms.items(), key=lambda item: item[1])
    ]
    if bridge_retries:
        for item in events:
            if item["kind"] == "setup_bridged":
                item["detail"] = {"bridge_retries": bridge_retries}
    events += [
        {"offset_ms": int(e["offset_ms"]), "kind": str(e["kind"])[:32], "detail": e.get("detail") or {}}
        for e in during
    ]
    events.append({"offset_ms": int(end["offset_ms"]), "kind": "ended", "detail": end["detail"]})
    return events


class CallSpool:
    """The worker's journal and final record for one call. Main thread only."""

    def __init__(self, directory: Path, header: dict, transcripts: bool = True) -> None:
        self.directory = directory
        self.header = header
        self.transcripts = transcripts  # RECORDS_TRANSCRIPTS: false keeps no text, not even here
        self.started_at = header["started_at"]
        self.turns_written = 0
        self.usage_written: dict = {}
        self._journal = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._journal = open(journal_path(directory, header["call_id"]), "a", encoding="utf-8")  # noqa: SIM115 -- open for the whole call
            self._write({"kind": "header", **header})
        except OSError as exc:
            self._off(exc)

    @classmethod
    def for_call(cls, settings, info, started_monotonic: float) -> CallSpool:
        """The spool of one call (`call_worker/call.py::CallInfo`), started at admission."""
        now_wall, now_mono = time.time(), time.monotonic()
        admitted = info.admitted_ns / 1e9 if info.admitted_ns else started_monotonic
        header = {
            "version": VERSION,
            "instance": settings.instance,
            "call_id": info.call_id,
            "caller": info.caller,  # masked by the supervisor when RECORDS_MASK_CALLERS
            "caller_hash": getattr(info, "caller_hash", ""),
            "caller_name": getattr(info, "caller_name", ""),
            "dialled": info.dialled,
            "started_at": round(now_wall - (now_mono - admitted), 3),
            "agent": getattr(getattr(info, "agent", None), "name", ""),
            "model": settings.openai_realtime_model,
            # GPT-Live transcribes as part of the session (no model, no minutes of its own).
            "transcription_model": ""
            if settings.openai_api == "live"
            else settings.openai_transcription_model,
            "currency": settings.records_currency,
            "worker_pid": os.getpid(),
            WEBHOOKS: webhook_keys(settings, getattr(info, "agent", None)),
        }
        summary = summary_spec(settings, getattr(info, "agent", None))
        if summary is not None:
            header[summary_queue.HEADER] = summary
        return cls(settings.spool_dir, header, settings.records_transcripts)

    def announce(self, answered_ms: float | None) -> None:
        """Queue the `call.started` event for the call's webhooks (none: nothing to do).
        `answered_ms`: the set-up timeline's answer, ms since admission (the start)."""
        header = self.header
        answered_at = None if answered_ms is None else round(self.started_at + answered_ms / 1000, 3)
        data = {
            "call_id": header["call_id"],
            "caller": header["caller"],
            "caller_name": header["caller_name"],
            "dialled": header["dialled"],
            "agent": header["agent"],
            "started_at": header["started_at"],
            "answered_at": answered_at,
        }
        outbox.post(
            self.directory, "call.started", header["instance"], header["call_id"], data, header[WEBHOOKS]
        )

    def setup(self, timeline) -> None:
        """Journal the set-up timeline (call_worker/setup_timeline.py's SetupTimeline), once,
        when media is ready: a record rebuilt after a crash keeps it, as its `setup_*` events."""
        if self._journal is None:
            return
        try:
            self._write(
                {
                    "kind": "setup",
                    "setup_ms": timeline.as_ms(),
                    "setup_bridge_retries": timeline.bridge_retries,
                }
            )
        except OSError as exc:
            self._off(exc)

    def journal(self, transcript, usage: dict) -> None:
        """Append the turns finished since the last call (the transcript only grows).

        `transcript` is call_worker/transcript.py's Transcript (or its list of entries).
        A cut that reaches an agent turn after it was journaled is in the final record but
        not in the journal: after a crash such a turn may show its whole text as heard."""
        transcript = getattr(transcript, "entries", transcript)
        if self._journal is None or len(transcript) <= self.turns_written:
            return
        try:
            for turn in transcript[self.turns_written : len(transcript)]:
                self._write(
                    {
                        "kind": "turn",
                        **turn_entry(turn, self.started_at, self.transcripts),
                        "usage": usage_by_kind(usage),
                    }
                )
                self.turns_written += 1
        except OSError as exc:
            self._off(exc)

    def events(self, events: list[dict]) -> None:
        """Journal events of the call as they happen (tool calls, transfers): a record
        rebuilt after a crash keeps them."""
        if self._journal is None:
            return
        try:
            for event in events:
                self._write({"kind": "event", "event": event})  # its own "kind" stays inside
        except OSError as exc:
            self._off(exc)

    def finish(self, record: dict) -> Path | None:
        """Write the final record, then drop the journal it supersedes."""
        try:
            path = write_record(self.directory, {**self.header, **record})
        except OSError as exc:
            log.warning("cannot write the call's record to the spool %s: %s", self.directory, exc)
            return None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        try:
            journal_path(self.directory, self.header["call_id"]).unlink()
        except OSError:
            pass
        return path

    def _write(self, line: dict) -> None:
        self._journal.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._journal.flush()  # in the kernel: a crash of this process loses nothing written

    def _off(self, exc: OSError) -> None:
        log.warning(
            "cannot journal the call to the spool %s (%s); its record may be lost", self.directory, exc
        )
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError:
                pass
        self._journal = None


def final_record(ending: WorkerEnding) -> dict:
    """The record's body, from what the worker knew at its call's end (records/handover.py)."""
    counters = ending.counters
    started_at = ending.started_at
    answered_ns = counters.get("answered_ns", 0)
    admitted = ending.admitted_ns or counters.get("started_ns", 0)
    answered_at = started_at + (answered_ns - admitted) / 1e9 if answered_ns and admitted else None
    exit_how = ending.worker_exit.token
    ended_at = time.time()
    usage = usage_by_kind(ending.usage)
    reason = ending.end_reason.name.lower()
    end = {"reason": reason, "worker_exit": exit_how}
    if ending.failure:
        end["failure"] = ending.failure
    pricing = ending.pricing
    return {
        **costs(pricing.prices, pricing.model, pricing.transcription_model, usage),
        "answered_at": answered_at,
        "ended_at": ended_at,
        "duration_s": round(ended_at - started_at, 2),
        "end_reason": reason,
        "worker_exit": exit_how,
        "failure": ending.failure,
        "complete": True,
        "setup_ms": ending.setup_ms,
        "setup_bridge_retries": ending.bridge_retries,
        "figures": figures(counters),
        "usage": usage,
        "turns": [turn_entry(turn, started_at, ending.transcripts) for turn in ending.turns],
        "events": call_events(
            ending.setup_ms,
            ending.bridge_retries,
            {"offset_ms": (ended_at - started_at) * 1000, "detail": end},
            list(ending.events),
        ),
        "recording": ending.recording,
    }
