"""The summarizer: one long-lived helper per instance (`cb-summaries`) that turns each ended
call's job (records/summary_queue.py) into a summary and the agent's fields, through a text
model (summaries/responses.py), and sends them on: to the call's row (through the spool and
the drainer), to the call's webhooks (`call.summary`) and to its agent's e-mail addresses.

Never the worker, never the supervisor's loop: a model that is slow, down or refusing costs
this process time and nothing else, and loses nothing. A job stays in the queue until its
summary is spooled; a failed attempt waits a doubling delay of its own (5 s up to 10 min,
kept in the job, so a restart keeps it), so one call the model chokes on does not hold up
the others. A job older than SUMMARY_RETRY_HOURS, or refused for its content three times,
is moved to the queue's `bad/`, logged and counted (`given_up`). Its call's record was
stored long before and is untouched.

One job at a time, in this process's main thread: a call's summary takes a second or two of
the model's time, calls end at most a few a second, and the whole request is bounded by a
deadline (callbridge/deadline.py: a server that trickles its answer a byte at a time).

What is logged is the call, the outcome and the tokens: never the transcript, the summary,
the key or the URL.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import requests

from callbridge import safe_files
from callbridge.deadline import DeadlineExceeded, deadline
from records import outbox, spool, summary_queue
from records.summary_queue import SummaryFigures
from summaries import mail
from summaries.responses import Failure, ask

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at an empty queue
RETRY_MIN, RETRY_MAX = 5.0, 600.0
REQUEST_DEADLINE = 120.0  # seconds for one request, whole
MAIL_DEADLINE = 60.0  # seconds for one e-mail, STARTTLS and login included
REFUSED_ATTEMPTS = 3


class Summarizer:
    def __init__(
        self,
        instance: str,
        spool_dir: Path,
        url: str,
        api_key: str,
        prices,
        retry_hours: float,
        mail_server=None,
        figures: SummaryFigures | None = None,
        save=lambda: None,
    ) -> None:
        self.instance = instance
        self.spool_dir = Path(spool_dir)
        self.queue = summary_queue.queue_dir(spool_dir, instance)
        self.url = url
        self.api_key = api_key
        self.prices = prices  # callbridge/prices.py::PriceTable, the records' own
        self.give_up_after = retry_hours * 3600
        self.mail_server = mail_server  # callbridge/alert_settings.py::Email, or None
        self.figures = figures or SummaryFigures(0.0)
        self.save = save
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or .netrc from the machine's environment
        self.mail_next: dict[str, float] = {}  # a batch's next attempt after a failure
        self.mail_delay: dict[str, float] = {}
        self.no_server_logged = False

    # --- the jobs

    def pass_once(self, now: float | None = None) -> int:
        """Every job that is due, oldest first, then the mail; how many jobs were done."""
        done = 0
        for path in summary_queue.waiting(self.queue):
            if self.one(path, time.time() if now is None else now):
                done += 1
        self.mail(time.time() if now is None else now)
        return done

    def one(self, path: Path, now: float) -> bool:
        try:
            job = json.loads(path.read_bytes())
            if not isinstance(job, dict) or not job.get("call_id"):
                raise ValueError("not a job")
        except FileNotFoundError:
            return False
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            self._give_up(path, {}, f"not a summary job ({type(exc).__name__})")
            return False
        if float(job.get("next_at") or 0) > now:
            return False
        if now - float(job.get("created_at") or 0) > self.give_up_after:
            self._give_up(path, job, "retried for too long")
            return False
        attempts = int(job.get("attempts") or 0) + 1
        try:
            with deadline(REQUEST_DEADLINE):
                summary = ask(self.session, self.url, self.api_key, job)
        except Failure as failure:
            return self._failed(path, job, attempts, failure, now)
        except DeadlineExceeded as exc:
            return self._failed(path, job, attempts, Failure(f"timed out: {exc}"), now)
        cost = self.prices.estimate(summary.model, summary.usage)
        result = {
            "instance": job.get("instance") or self.instance,
            "call_id": job["call_id"],
            "summary": summary.summary,
            "fields": summary.fields,
            "model": summary.model,
            "input_tokens": summary.usage["input_text_tokens"] + summary.usage["input_cached_tokens"],
            "output_tokens": summary.usage["output_text_tokens"],
            "cost": cost,
            "currency": job.get("currency", ""),
            "summarized_at": round(time.time(), 3),
        }
        try:
            spool.write_summary(self.spool_dir, result)
        except OSError as exc:  # kept: asked again later, which costs tokens but loses nothing
            log.warning("summary of call %s: cannot spool it (%s); will ask again", job["call_id"], exc)
            return self._failed(path, job, attempts, Failure("cannot spool the summary"), now)
        self._send_on(job, result)
        path.unlink(missing_ok=True)
        with_cost = "not priced" if cost is None else f"{cost:.6f} {job.get('currency', '')}".strip()
        self.figures.summarized += 1
        if cost:
            agent = str(job.get("agent") or "")
            self.figures.spent[agent] = round(self.figures.spent.get(agent, 0.0) + cost, 6)
        self.save()
        log.info(
            "summary of call %s: %d fields, %d+%d tokens, %s",
            job["call_id"],
            len(summary.fields),
            result["input_tokens"],
            result["output_tokens"],
            with_cost,
        )
        return True

    def _send_on(self, job: dict, result: dict) -> None:
        """The webhooks' `call.summary` event and the e-mail's entry: both from the spool,
        by their own senders (webhooks/sender.py, `mail` below)."""
        data = {
            "call_id": job["call_id"],
            "agent": job.get("agent", ""),
            "summary": result["summary"],
            "fields": result["fields"],
            "model": result["model"],
            "usage": {"input_tokens": result["input_tokens"], "output_tokens": result["output_tokens"]},
            "cost": result["cost"],
            "currency": result["currency"],
        }
        outbox.post(
            self.spool_dir, "call.summary", result["instance"], job["call_id"], data, job.get("webhooks")
        )
        spec = job.get("spec") or {}
        addresses = [str(a) for a in spec.get("email") or ()]
        if not addresses:
            return
        minutes = int(spec.get("email_batch_minutes") or 0)
        entry = {
            **{key: job.get(key) for key in ("call_id", "agent", "caller", "caller_name", "dialled")},
            **{key: job.get(key) for key in ("started_at", "duration_s", "end_reason")},
            "summary": result["summary"],
            "fields": result["fields"],
            "addresses": addresses,
            "minutes": minutes,
            "queued_at": round(time.time(), 3),
        }
        directory = summary_queue.mail_dir(self.spool_dir, self.instance) / summary_queue.batch_key(
            addresses, minutes
        )
        try:
            directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.time_ns():019d}_{spool.file_key(job['call_id'])}{summary_queue.JOB}"
            safe_files.write_text(directory / name, json.dumps(entry, ensure_ascii=False), durable=True)
        except OSError as exc:
            log.warning("summary of call %s: cannot queue its e-mail (%s)", job["call_id"], exc)

    def _failed(self, path: Path, job: dict, attempts: int, failure: Failure, now: float) -> bool:
        self.figures.failures += 1
        self.save()
        if failure.for_good and attempts >= REFUSED_ATTEMPTS:
            self._give_up(path, {**job, "attempts": attempts}, f"refused ({failure})")
            return False
        delay = min(RETRY_MAX, RETRY_MIN * 2 ** (attempts - 1))
        job.update(attempts=attempts, next_at=round(now + delay, 3), last_failure=str(failure))
        try:
            if path.exists():
                safe_files.write_text(path, json.dumps(job, ensure_ascii=False))
        except OSError:
            pass
        log.warning(
            "summary of call %s failed (%s, attempt %d); retrying in %.0f s",
            job.get("call_id"),
            failure,
            attempts,
            delay,
        )
        return False

    def _give_up(self, path: Path, job: dict, why: str) -> None:
        try:
            moved = summary_queue.set_aside(path)
        except OSError as exc:
            log.error("summary job %s: cannot move it to bad/: %s", path.name, exc)
            return
        self.figures.given_up += 1
        self.save()
        log.error("summary of call %s given up (%s); kept as %s", job.get("call_id", "?"), why, moved.name)

    # --- the e-mail

    def mail(self, now: float) -> None:
        root = summary_queue.mail_dir(self.spool_dir, self.instance)
        try:
            batches = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:
            return
        for batch in batches:
            entries = summary_queue.waiting(batch)
            if entries and now >= self.mail_next.get(batch.name, 0.0):
                self._mail_batch(batch.name, entries, now)

    def _mail_batch(self, key: str, paths: list[Path], now: float) -> None:
        loaded = []
        for path in paths:
            try:
                entry = json.loads(path.read_bytes())
                if isinstance(entry, dict) and entry.get("addresses"):
                    loaded.append((path, entry))
                    continue
            except (OSError, ValueError, RecursionError):
                pass
            log.error("summary e-mail: %s is not an entry; removed", path.name)
            path.unlink(missing_ok=True)
        if not loaded:
            return
        first = loaded[0][1]
        minutes = int(first.get("minutes") or 0)
        if minutes and now - float(first.get("queued_at") or 0) < minutes * 60:
            return  # the batch's period is not over: later calls join it
        stale = [(p, e) for p, e in loaded if now - float(e.get("queued_at") or 0) > self.give_up_after]
        for path, entry in stale:  # the server has refused them for SUMMARY_RETRY_HOURS
            log.error("summary e-mail of call %s given up after retrying", entry.get("call_id"))
            path.unlink(missing_ok=True)
            self.figures.mail_failures += 1
        loaded = [item for item in loaded if item not in stale]
        if not loaded:
            return
        if self.mail_server is None:
            if not self.no_server_logged:
                log.error("summary e-mails wait, but ALERT_SMTP_URL is not set: nothing can send them")
                self.no_server_logged = True
            return
        sends = [loaded[:1]] if not minutes else [loaded]  # per call: one at a time, in order
        for group in sends:
            addresses = group[0][1]["addresses"]
            try:
                with deadline(MAIL_DEADLINE):
                    sent, how = mail.send(self.mail_server, addresses, [e for _p, e in group], self.instance)
            except DeadlineExceeded as exc:
                sent, how = False, f"timed out: {exc}"
            calls = ", ".join(str(e.get("call_id")) for _p, e in group)
            if not sent:
                self.figures.mail_failures += 1
                self.save()
                delay = min(RETRY_MAX, max(RETRY_MIN, self.mail_delay.get(key, 0.0) * 2))
                self.mail_delay[key], self.mail_next[key] = delay, now + delay
                log.warning("summary e-mail of call %s not sent (%s); retrying in %.0f s", calls, how, delay)
                return
            for path, _entry in group:
                path.unlink(missing_ok=True)
            self.mail_delay.pop(key, None)
            self.mail_next.pop(key, None)
            self.figures.mails_sent += 1
            self.save()
            log.info("summary e-mail of call %s: %s", calls, how)


def run(
    settings, parent_pid: int, figures_file: Path | None = None, service: float = 0.0, poll: float = POLL
) -> None:
    """The summarizer's loop until its supervisor is gone."""
    figures = SummaryFigures.resume(figures_file, service) if figures_file else SummaryFigures(service)

    def save() -> None:  # only while our supervisor lives (as the drainer's, records/drainer.py)
        if figures_file is not None and os.getppid() == parent_pid:
            figures.save(figures_file)

    summarizer = Summarizer(
        settings.instance,
        settings.spool_dir,
        settings.openai_responses_url,
        settings.openai_api_key.reveal(),
        settings.prices,
        settings.summary_retry_hours,
        settings.mail_server,
        figures,
        save,
    )
    save()
    log.info("summarizer started: model %s", settings.summary_model)
    while os.getppid() == parent_pid:
        try:
            done = summarizer.pass_once()
        except Exception:  # a bug here must not end the summaries: the keeper would loop on it
            log.exception("summarizer: unexpected failure; going on")
            done = 0
        if not done:
            time.sleep(poll)


def summarizer_work(settings, service: float = 0.0):
    """The summarizer helper's function, as the supervisor's keeper starts it
    (supervisor/keeper.py)."""
    parent = os.getpid()
    return lambda: run(
        settings,
        parent,
        figures_file=summary_queue.figures_path(settings.state_dir, settings.instance),
        service=service,
    )
