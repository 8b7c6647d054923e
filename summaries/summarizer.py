"""The summarizer: one long-lived helper per instance (`cb-summaries`) that turns each ended
call's job (records/summary_queue.py) into a summary and the agent's fields, through a text
model (summaries/responses.py), and sends them on: to the call's row (through the spool and
the drainer), to the call's webhooks (`call.summary`) and to its agent's e-mail addresses.

Never the worker, never the supervisor's loop: a model that is slow, down or refusing costs
this process time and nothing else, and loses nothing. A job stays in the queue until its
summary is spooled. A failed attempt waits a doubling delay of its own (5 s up to 10 min,
kept in the job, so a restart keeps it), so one call the model chokes on does not hold up
the others; a failure that is every job's (no answer, 429, 5xx, the key, the model) makes
the whole queue wait (its Retry-After when it gives one), so an outage costs one request
per delay, not one per call. A job older than SUMMARY_RETRY_HOURS, or refused for its content three times, is
moved to the queue's `bad/`, logged and counted (`given_up`). Its call's record was stored
long before and is untouched. The model asked is SUMMARY_MODEL as this run has it (the
job's own, from when the call ended, only when that is empty): mending a wrong or retired
model lets the waiting jobs through.

A job being asked about is renamed `<job>.json.working` for the attempt, and whatever
happens it ends back in the queue, set aside or done (`_settle`). `calls erase` removes
that name too, under the queue's lock (records/summary_queue.py::locked), which the
summarizer holds from its look at the job to its last write, and while it mails: a
summary whose job vanished is dropped, never spooled, posted or mailed. One job at a time,
in this process's main thread, each request bounded by a deadline for the whole of it
(callbridge/deadline.py: a server that trickles its answer a byte at a time); no job is
started after PASS_SECONDS of a pass (nor an e-mail, summaries/mail_queue.py), and the e-mail goes
first, so a backlog delays neither the mail nor the look at the supervisor by more than
one request.

What is logged is the call, the outcome and the tokens: never the transcript, the summary,
the key or the URL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import requests

from callbridge import safe_files
from callbridge.deadline import DeadlineExceeded, deadline
from records import outbox, spool, summary_queue
from records.summary_queue import JOB, WORKING, SummaryFigures
from summaries.mail_queue import Mailer
from summaries.responses import Failure, ask

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at an empty queue
RETRY_MIN, RETRY_MAX = 5.0, 600.0
REQUEST_DEADLINE = 120.0  # seconds for one request, whole
PASS_SECONDS = 30.0  # no job is started after this many seconds of a pass (the mail and the parent wait)
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
        model: str = "",
        zone=None,
        alive=lambda: True,
    ) -> None:
        self.instance = instance
        self.spool_dir = Path(spool_dir)
        self.queue = summary_queue.queue_dir(spool_dir, instance)
        self.url = url
        self.api_key = api_key
        self.prices = prices  # callbridge/prices.py::PriceTable, the records' own
        self.give_up_after = retry_hours * 3600
        self.figures = figures or SummaryFigures(0.0)
        self.save = save
        self.model = model  # SUMMARY_MODEL now ("": each job's own)
        self.alive = alive  # () -> bool: our supervisor is still there
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or .netrc from the machine's environment
        self.not_before: dict[str, float] = {}  # a job's next attempt, read from it once
        self.paused_until = 0.0  # the service failed: no job before this
        self.service_delay = 0.0
        self.mailer = Mailer(instance, spool_dir, mail_server, self.give_up_after, self.figures, save, zone)
        self._recover()

    def _recover(self) -> None:
        """Jobs a killed summarizer was asking about go back in the queue."""
        try:
            working = [p for p in self.queue.iterdir() if p.name.endswith(JOB + WORKING)]
        except OSError:
            return
        for path in working:
            try:
                os.replace(path, path.with_name(path.name.removesuffix(WORKING)))
            except OSError as exc:
                log.warning("summary job %s: cannot put it back in the queue: %s", path.name, exc)

    # --- the jobs

    def pass_once(self, now: float | None = None) -> int:
        """The mail that is due, then every job that is due, oldest first, for at most
        PASS_SECONDS; how many jobs were done."""
        clock = time.time if now is None else (lambda: now)
        self.mailer.run(clock())
        done = 0
        until = time.monotonic() + PASS_SECONDS
        for path in summary_queue.waiting(self.queue):
            if clock() < self.paused_until or time.monotonic() > until or not self.alive():
                break
            if self.not_before.get(path.name, 0.0) > clock():
                continue
            try:
                done += self.one(path, clock())
            except Exception:  # a bug here must not stop the queue: this job waits, the rest go on
                log.exception("summary job %s: unexpected failure; it waits", path.name)
                self.not_before[path.name] = clock() + RETRY_MAX
        return done

    def one(self, path: Path, now: float) -> bool:
        try:
            job = _checked(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return False
        except (OSError, ValueError, TypeError, KeyError, RecursionError, OverflowError) as exc:
            self._give_up(path, {}, f"not a summary job ({type(exc).__name__})")
            return False
        if job["next_at"] > now:  # a restart: the delay the job was given still holds
            self.not_before[path.name] = job["next_at"]
            return False
        if now - job["created_at"] > self.give_up_after:
            self._give_up(path, job, "retried for too long")
            return False
        model = self.model or str(job.get("model") or "")
        working = path.with_name(path.name + WORKING)
        try:
            os.replace(path, working)
        except FileNotFoundError:  # erased meanwhile
            return False
        outcome = "back"  # what becomes of the job's file: back in the queue, aside, or gone
        try:
            outcome, done = self._attempt(working, job, model, now)
            return done
        finally:  # whatever happened, raised or not, the job is in the queue, set aside, or done
            self._settle(working, path, job, outcome)

    def _attempt(self, working: Path, job: dict, model: str, now: float) -> tuple[str, bool]:
        """Ask about one job (renamed `working`): (what becomes of its file, done)."""
        job["attempts"] += 1
        try:
            with deadline(REQUEST_DEADLINE):
                summary = ask(self.session, self.url, self.api_key, job, model)
        except Failure as failure:
            return self._failed(job, failure, model), False
        except DeadlineExceeded as exc:
            return self._failed(job, Failure(f"timed out: {exc}", service=True), model), False
        except Exception as exc:  # a job shaped in a way ask() did not expect: its own fault
            return self._failed(job, Failure(f"cannot ask about it ({type(exc).__name__})"), model), False
        self.service_delay = 0.0
        cost = self.prices.estimate(summary.model, summary.usage)
        self._spend(job, cost)  # billed, whatever becomes of it
        spent_before = job["spent"]  # this job's failed attempts that were billed
        total = None if cost is None and not spent_before else round((cost or 0.0) + spent_before, 6)
        result = {
            "instance": str(job.get("instance") or self.instance),
            "call_id": job["call_id"],
            "summary": summary.summary,
            "fields": summary.fields,
            "model": summary.model,
            "input_tokens": summary.usage["input_text_tokens"]
            + summary.usage["input_cached_tokens"]
            + job["input_tokens_before"],
            "output_tokens": summary.usage["output_text_tokens"] + job["output_tokens_before"],
            "cost": total,
            "currency": str(job.get("currency") or ""),
            "summarized_at": round(time.time(), 3),
        }
        with summary_queue.locked(self.spool_dir, self.instance):
            if not working.exists():  # `calls erase` took it while the model answered: drop it
                log.info("summary of call %s dropped: the call was erased meanwhile", job["call_id"])
                return "gone", False
            try:
                spool.write_summary(self.spool_dir, result)
            except OSError as exc:  # kept: asked again later, which costs tokens but loses nothing
                log.warning("summary of call %s: cannot spool it (%s); will ask again", job["call_id"], exc)
                job["spent"] = round(job["spent"] + (cost or 0.0), 6)
                return self._failed(job, Failure("cannot spool the summary"), model, billed=0.0), False
            self._send_on(job, result)
            working.unlink(missing_ok=True)
        self.not_before.pop(working.name.removesuffix(WORKING), None)
        self.figures.summarized += 1
        self.save()
        with_cost = "not priced" if total is None else f"{total:.6f} {result['currency']}".strip()
        log.info(
            "summary of call %s: %d fields, %d+%d tokens, %s",
            job["call_id"],
            len(summary.fields),
            result["input_tokens"],
            result["output_tokens"],
            with_cost,
        )
        return "gone", True

    def _settle(self, working: Path, path: Path, job: dict, outcome: str) -> None:
        """The job's file after an attempt: back in the queue with what the attempt taught
        (its count, its delay), or set aside; nothing when it is gone (done, or erased)."""
        if outcome == "gone":
            return
        with summary_queue.locked(self.spool_dir, self.instance):
            if not working.exists():  # erased meanwhile: nothing may bring it back
                return
            try:
                safe_files.write_text(working, json.dumps(job, ensure_ascii=False), durable=True)
            except OSError as exc:  # the old content goes back: its count and delay are lost
                log.warning("summary job %s: cannot note the attempt: %s", path.name, exc)
            try:
                os.replace(working, path)
            except OSError as exc:
                log.error("summary job %s: cannot put it back in the queue: %s", path.name, exc)
                return
        self.not_before[path.name] = job["next_at"]
        if outcome == "aside":
            self._give_up(path, job, f"refused ({job.get('last_failure')})")

    def _spend(self, job: dict, cost: float | None) -> None:
        """What an answer cost, into the figures the supervisor adds to the agent's budget."""
        if cost:
            agent = str(job.get("agent") or "")
            self.figures.spent[agent] = round(self.figures.spent.get(agent, 0.0) + cost, 6)
        self.save()

    def _send_on(self, job: dict, result: dict) -> None:
        """The webhooks' `call.summary` event and the e-mail's entry: both from the spool,
        by their own senders (webhooks/sender.py, `mail` below). Both are named for the call,
        so that a summary asked for again (the summarizer killed after it spooled the first)
        replaces, not doubles, what still waits."""
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
        outbox.post(self.spool_dir, "call.summary", result["instance"], job["call_id"], data, job["webhooks"])
        self.mailer.queue(job, result)

    def _failed(self, job: dict, failure: Failure, model: str, billed: float | None = None) -> str:
        """The attempt failed: what a billed answer cost is counted (the job's and the
        budget's), the job's delay and the queue's pause are set; "back", or "aside" after
        REFUSED_ATTEMPTS answers that refuse the call itself."""
        at = time.time()  # after the request, which may have taken two minutes: delays start now
        self.figures.failures += 1
        if billed is None and failure.usage:
            billed = self.prices.estimate(model, failure.usage)
        if failure.usage:
            job["input_tokens_before"] += failure.usage.get("input_text_tokens", 0) + failure.usage.get(
                "input_cached_tokens", 0
            )
            job["output_tokens_before"] += failure.usage.get("output_text_tokens", 0)
        if billed:
            job["spent"] = round(job["spent"] + billed, 6)
        self._spend(job, billed)
        if failure.service:  # the service, not this job: every job waits
            self.service_delay = min(RETRY_MAX, max(RETRY_MIN, self.service_delay * 2, failure.retry_after))
            self.paused_until = at + self.service_delay
        if failure.for_good:  # refused for its content: three times, and it is set aside
            job["refusals"] += 1
        delay = max(min(RETRY_MAX, RETRY_MIN * 2 ** min(job["attempts"] - 1, 10)), failure.retry_after)
        job.update(next_at=round(at + delay, 3), last_failure=str(failure))
        if job["refusals"] >= REFUSED_ATTEMPTS:
            return "aside"
        log.warning(
            "summary of call %s failed (%s, attempt %d); retrying in %.0f s",
            job["call_id"],
            failure,
            job["attempts"],
            delay,
        )
        return "back"

    def _give_up(self, path: Path, job: dict, why: str) -> None:
        try:
            moved = summary_queue.set_aside(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("summary job %s: cannot move it to bad/: %s", path.name, exc)
            self.not_before[path.name] = time.time() + RETRY_MAX
            return
        self.not_before.pop(path.name, None)
        self.figures.given_up += 1
        self.save()
        log.error("summary of call %s given up (%s); kept as %s", job.get("call_id", "?"), why, moved.name)


def _checked(job) -> dict:
    """A job as read from its file, each field of the kind it is used as (raises otherwise:
    the job is set aside as not a job)."""
    if not isinstance(job, dict) or not job.get("call_id"):
        raise ValueError("not a job")
    turns = job.get("turns")
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ValueError("its turns are not a list of turns")
    spec = job.get("spec") if job.get("spec") is not None else {}
    if not isinstance(spec, dict):
        raise ValueError("its spec is not a table")
    email = spec.get("email") or []
    if not isinstance(email, list) or not all(isinstance(a, str) for a in email):
        raise ValueError("its addresses are not a list")
    hooks = job.get("webhooks") or []
    if not isinstance(hooks, list) or not all(isinstance(k, str) for k in hooks):
        raise ValueError("its webhooks are not a list")
    numbers = {name: float(job.get(name) or 0) for name in ("next_at", "created_at", "spent")}
    if not all(math.isfinite(value) for value in numbers.values()):
        raise ValueError("a time or cost that is not a number")
    counts = {name: int(job.get(name) or 0) for name in COUNTS}
    return {
        **job,
        **numbers,
        **counts,
        "call_id": str(job["call_id"]),
        "turns": turns,
        "webhooks": hooks,
        "spec": {**spec, "email": email, "email_batch_minutes": int(spec.get("email_batch_minutes") or 0)},
    }


COUNTS = ("attempts", "refusals", "input_tokens_before", "output_tokens_before")


def run(
    settings, parent_pid: int, figures_file: Path | None = None, service: float = 0.0, poll: float = POLL
) -> None:
    """The summarizer's loop until its supervisor is gone."""
    figures = SummaryFigures.resume(figures_file, service) if figures_file else SummaryFigures(service)

    def alive() -> bool:
        return os.getppid() == parent_pid

    def save() -> None:  # only while our supervisor lives (as the drainer's, records/drainer.py)
        if figures_file is not None and alive():
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
        model=settings.summary_model,
        zone=ZoneInfo(settings.records_timezone) if settings.records_timezone else None,
        alive=alive,
    )
    save()
    log.info("summarizer started: model %s", settings.summary_model or "each job's own")
    while alive():
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
    figures_file = summary_queue.figures_path(settings.state_dir, settings.instance)
    return lambda: run(settings, parent, figures_file=figures_file, service=service)
