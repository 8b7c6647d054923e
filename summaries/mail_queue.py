"""The summary e-mails' queue: each summarized call's entry waits in the spool
(records/summary_queue.py, `mail/<batch>/`) until its e-mail is sent (summaries/mail.py:
one per call, or one per batch every N minutes), so that an SMTP server that is down or
slow loses nothing and costs the summaries nothing. Run by the summarizer
(summaries/summarizer.py) first in each of its passes.

One server for every batch: a failure makes all the mail wait (5 s doubling to 10 min),
and no new e-mail is started after MAIL_SECONDS of a pass. An entry older than
SUMMARY_RETRY_HOURS is given up (`mails_given_up`, alerted with the summaries). The queue's
lock (records/summary_queue.py::locked) is held while a batch is read and sent, so that
`calls erase` never falls between the two.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

from callbridge import safe_files
from callbridge.deadline import DeadlineExceeded, deadline
from records import spool, summary_queue
from records.summary_queue import JOB, SummaryFigures
from summaries import mail

log = logging.getLogger(__name__)

RETRY_MIN, RETRY_MAX = 5.0, 600.0
MAIL_DEADLINE = 60.0  # seconds for one e-mail, STARTTLS and login included
MAIL_SECONDS = 30.0  # no e-mail is started after this many seconds of a pass


class Mailer:
    def __init__(
        self,
        instance: str,
        spool_dir: Path,
        mail_server,
        give_up_after: float,
        figures: SummaryFigures,
        save,
        zone=None,
    ) -> None:
        self.instance = instance
        self.spool_dir = Path(spool_dir)
        self.mail_server = mail_server  # callbridge/alert_settings.py::Email, or None
        self.give_up_after = give_up_after  # seconds (SUMMARY_RETRY_HOURS)
        self.figures = figures  # the summarizer's, which counts the mail too
        self.save = save
        self.zone = zone  # RECORDS_TIMEZONE, for the e-mails' times
        self.mail_paused_until = 0.0  # the server failed: no e-mail before this
        self.mail_delay = 0.0
        self.no_server_logged = False

    def queue(self, job: dict, result: dict) -> None:
        """A summarized call's entry, when its agent mails (`[agents.NAME.summary] email`).
        Named for the call, so that a summary asked for again replaces, not doubles, it."""
        spec = job["spec"]
        if not spec["email"]:
            return
        entry = {
            **{key: job.get(key) for key in ("call_id", "agent", "caller", "caller_name", "dialled")},
            **{key: job.get(key) for key in ("started_at", "duration_s", "end_reason")},
            "summary": result["summary"],
            "fields": result["fields"],
            "addresses": spec["email"],
            "minutes": spec["email_batch_minutes"],
            "queued_at": round(time.time(), 3),
        }
        batch = summary_queue.batch_key(spec["email"], spec["email_batch_minutes"])
        directory = summary_queue.mail_dir(self.spool_dir, self.instance) / batch
        try:
            directory.mkdir(parents=True, exist_ok=True)
            name = f"{int(job['created_at'] * 1e9):019d}_{spool.file_key(job['call_id'])}{JOB}"
            safe_files.write_text(directory / name, json.dumps(entry, ensure_ascii=False), durable=True)
        except OSError as exc:
            log.warning("summary of call %s: cannot queue its e-mail (%s)", job["call_id"], exc)

    def run(self, now: float) -> None:
        """Every batch that is due, for at most MAIL_SECONDS; none while the server failed
        lately (one server: a failure is every batch's)."""
        if now < self.mail_paused_until:
            return
        root = summary_queue.mail_dir(self.spool_dir, self.instance)
        try:
            batches = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:
            return
        until = time.monotonic() + MAIL_SECONDS
        for batch in batches:
            if time.monotonic() > until or now < self.mail_paused_until:
                return
            if not summary_queue.waiting(batch):
                continue
            try:  # held while it reads and sends: an erasure waits, so it never misses a mail
                with summary_queue.locked(self.spool_dir, self.instance):
                    self._mail_batch(summary_queue.waiting(batch), now)
            except Exception:  # as for a job: the mail waits, the rest goes on
                log.exception("summary e-mail batch %s: unexpected failure; the mail waits", batch.name)
                self.mail_paused_until = now + RETRY_MAX

    def _mail_batch(self, paths: list[Path], now: float) -> None:
        loaded = []
        for path in paths:
            try:
                entry = json.loads(path.read_bytes())
                addresses = entry["addresses"]
                if (
                    not isinstance(addresses, list)
                    or not addresses
                    or not all(isinstance(a, str) for a in addresses)
                ):
                    raise ValueError("no addresses")
                entry["queued_at"], entry["minutes"] = (
                    float(entry["queued_at"]),
                    int(entry.get("minutes") or 0),
                )
                if not math.isfinite(entry["queued_at"]):
                    raise ValueError("no time")
                loaded.append((path, entry))
                continue
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError, KeyError, RecursionError, OverflowError):
                pass
            log.error("summary e-mail: %s is not an entry; removed", path.name)
            path.unlink(missing_ok=True)
        if not loaded:
            return
        first = loaded[0][1]
        minutes = first["minutes"]
        if minutes and now - first["queued_at"] < minutes * 60:
            return  # the batch's period is not over: later calls join it
        stale = [(p, e) for p, e in loaded if now - e["queued_at"] > self.give_up_after]
        for path, entry in stale:  # the server has refused them for SUMMARY_RETRY_HOURS
            log.error("summary e-mail of call %s given up after retrying", entry.get("call_id"))
            path.unlink(missing_ok=True)
            self.figures.mails_given_up += 1
            self.save()
        loaded = [item for item in loaded if item not in stale]
        if not loaded:
            return
        if self.mail_server is None:
            if not self.no_server_logged:
                log.error("summary e-mails wait, but ALERT_SMTP_URL is not set: nothing can send them")
                self.no_server_logged = True
            return
        group = loaded if minutes else loaded[:1]  # per call: one at a time, in order
        addresses = group[0][1]["addresses"]
        try:
            with deadline(MAIL_DEADLINE):
                sent, how = mail.send(
                    self.mail_server, addresses, [e for _p, e in group], self.instance, self.zone
                )
        except DeadlineExceeded as exc:
            sent, how = False, f"timed out: {exc}"
        calls = ", ".join(str(e.get("call_id")) for _p, e in group)
        if not sent:
            self.figures.mail_failures += 1
            self.save()
            self.mail_delay = min(RETRY_MAX, max(RETRY_MIN, self.mail_delay * 2))
            self.mail_paused_until = max(now, time.time()) + self.mail_delay
            log.warning(
                "summary e-mail of call %s not sent (%s); retrying in %.0f s", calls, how, self.mail_delay
            )
            return
        for path, _entry in group:
            path.unlink(missing_ok=True)
        self.mail_delay = 0.0
        self.figures.mails_sent += 1
        self.save()
        log.info("summary e-mail of call %s: %s", calls, how)
