"""The webhook sender: one long-lived helper per instance that posts the calls' events from
the spool's outbox (records/outbox.py) to their receivers, each receiver in order, each
event until it is taken or its retry time is over.

One lane per receiver, each a thread of this process: a receiver that hangs, trickles or
refuses holds its own queue only, never another's, and never a call (the workers only
write files). A lane posts its oldest event; on a 2xx the file goes, on anything else
(no connection, a timeout, a 3xx, 4xx or 5xx) it waits a doubling delay (1 s up to
10 min) and tries the same event again, so one receiver's events arrive in the order they
happened. An event older than CALL_WEBHOOK_RETRY_HOURS, or refused with a 4xx that is not
about timing (REFUSED) three times, is moved to the outbox's `bad/`, logged and counted
(`given_up`); the supervisor alerts on the count as it does on
records the database refused (supervisor/alerting.py).

Each attempt is signed afresh (callbridge/call_webhooks.py: `t` is the attempt's time) and
carries the event's id in `X-Callbridge-Event-Id`, the same on every retry. What is logged
is the receiver's key, the event and the outcome: never the URL, never an exception's
text (requests puts the URL in it). Each final outcome (delivered, or given up) is spooled
for the drainer (records/spool.py::write_delivery), so the call's record shows it.

Bounds: connect 5 s and each read 10 s, the answer's body is never read, no redirect is
followed. A receiver that trickles its status line a byte at a time holds its lane for as
long as it keeps doing so; the lane's backlog shows in the metrics.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from callbridge import safe_files
from callbridge.call_webhooks import SIGNATURE_HEADER, Target, signature
from records import outbox, spool
from records.drainer import Backoff
from records.outbox import WebhookFigures

log = logging.getLogger(__name__)

POLL = 0.5  # seconds between looks at an empty queue, and at the outbox for new queues
BACKOFF_MIN, BACKOFF_MAX = 1.0, 600.0
TIMEOUT = (5.0, 10.0)  # connect, each read
USER_AGENT = "callbridge-webhooks"
# A receiver's answers that mean "not this event, not ever" (a 4xx but a timeout, too early,
# too many): after a few such answers the event is set aside, so that one event it will not
# take (a 413 for a long transcript) does not hold up every later one for a day.
REFUSED = frozenset(range(400, 500)) - {408, 425, 429}
REFUSED_ATTEMPTS = 3


@dataclass
class Shared:
    """What the lanes share: the figures (one lock), the stop, and where outcomes go."""

    instance: str
    spool_dir: Path
    secret: bytes
    give_up_after: float  # seconds
    figures: WebhookFigures
    save: object  # () -> None: write the figures file
    backoff_max: float = BACKOFF_MAX
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self.figures, name, getattr(self.figures, name) + 1)
            self.save()


def deliver(session: requests.Session, url: str, secret: bytes, event: dict) -> tuple[bool, str, int]:
    """One attempt: (taken, what happened in a few words, never the URL; the HTTP status, 0
    for no answer)."""
    body = json.dumps(
        {key: event.get(key) for key in ("id", "type", "created_at", "instance", "data")},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(secret, int(time.time()), body),
        "X-Callbridge-Event": str(event.get("type", "")),
        "X-Callbridge-Event-Id": str(event.get("id", "")),
    }
    try:
        # stream=True: the status is all we need; a body of gigabytes is never read
        reply = session.post(
            url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True
        )
    except requests.RequestException as exc:
        return False, type(exc).__name__, 0
    status = reply.status_code
    reply.close()
    return 200 <= status < 300, f"HTTP {status}", status


class Lane:
    """One receiver's queue (records/outbox.py), posted in order on a thread of its own."""

    def __init__(self, queue: Path, target: Target | None, shared: Shared) -> None:
        self.queue = queue
        self.key = queue.name
        self.target = target  # None: no configured URL has this key (removed, or changed)
        self.shared = shared
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or .netrc from the machine's environment
        self.backoff = Backoff(BACKOFF_MIN, shared.backoff_max)
        self.unknown_logged = False
        self.thread = threading.Thread(target=self._run, name=f"webhook-{self.key}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        stop = self.shared.stop
        while not stop.is_set():
            events = outbox.waiting(self.queue)
            if not events:
                stop.wait(POLL)
                continue
            try:
                taken = self.one(events[0])
            except Exception:  # a bug here must not end the lane: its queue would stall
                log.exception("webhook %s: unexpected failure; retrying", self.key)
                taken = False
            if taken:
                self.backoff.reset()
            else:
                stop.wait(self.backoff.delay or self.backoff.failed())

    def one(self, path: Path) -> bool:
        """The queue's oldest event: True when it left the queue (taken or set aside); else
        the lane's back-off holds the delay before the next attempt."""
        try:
            event = json.loads(path.read_bytes())
            if not isinstance(event, dict):
                raise ValueError("not a JSON object")
            created_at = float(event.get("created_at") or 0.0)
        except FileNotFoundError:
            return True
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            return self._set_aside(path, {}, f"not an event ({type(exc).__name__})")
        if time.time() - created_at > self.shared.give_up_after:
            return self._set_aside(path, event, "retried for too long")
        if self.target is None:
            self.backoff.delay = POLL * 10
            if not self.unknown_logged:
                log.warning(
                    "webhook %s: %d events wait, but no configured webhook has this key "
                    "(removed from CALL_WEBHOOKS or the agents file?)",
                    self.key,
                    len(outbox.waiting(self.queue)),
                )
                self.unknown_logged = True
            return False
        attempts = int(event.get("attempts") or 0) + 1
        taken, how, status = deliver(self.session, self.target.url.reveal(), self.shared.secret, event)
        if taken:
            path.unlink(missing_ok=True)
            self.shared.count("delivered")
            self._outcome(event, True, attempts, how)
            log.info(
                "webhook %s: %s of call %s delivered (%s)",
                self.key,
                event.get("type"),
                event.get("call_id"),
                how,
            )
            return True
        self.shared.count("failures")
        if status in REFUSED and attempts >= REFUSED_ATTEMPTS:  # it will not take this one, ever
            return self._set_aside(path, {**event, "attempts": attempts}, f"refused by the receiver ({how})")
        event["attempts"] = attempts
        try:  # the count of attempts survives a restart of the sender (the file is rewritten whole)
            if path.exists():
                safe_files.write_text(path, json.dumps(event, ensure_ascii=False))
        except OSError:
            pass
        log.warning(
            "webhook %s: %s of call %s not delivered (%s, attempt %d); retrying in %.1f s",
            self.key,
            event.get("type"),
            event.get("call_id"),
            how,
            attempts,
            self.backoff.failed(),
        )
        return False

    def _set_aside(self, path: Path, event: dict, why: str) -> bool:
        """False when it cannot be moved: the lane waits its back-off and tries again."""
        try:
            moved = outbox.set_aside(path)
        except OSError as exc:
            log.error("webhook %s: cannot move %s to bad/: %s", self.key, path.name, exc)
            self.backoff.failed()
            return False
        self.shared.count("given_up")
        self._outcome(event, False, int(event.get("attempts") or 0), why)
        log.error(
            "webhook %s: %s of call %s given up (%s); kept as %s",
            self.key,
            event.get("type", "?"),
            event.get("call_id", "?"),
            why,
            moved.name,
        )
        return True

    def _outcome(self, event: dict, delivered: bool, attempts: int, how: str) -> None:
        if not event.get("id"):
            return
        try:
            spool.write_delivery(
                self.shared.spool_dir,
                {
                    "instance": self.shared.instance,
                    "event_id": event["id"],
                    "target": self.key,
                    "call_id": event.get("call_id", ""),
                    "type": event.get("type", ""),
                    "created_at": event.get("created_at"),
                    "finished_at": round(time.time(), 3),
                    "delivered": delivered,
                    "attempts": attempts,
                    "outcome": how,
                },
            )
        except OSError as exc:  # the delivery happened; only its line in the record is lost
            log.warning("webhook %s: cannot spool the outcome for the record: %s", self.key, exc)


def run(
    instance: str,
    spool_dir: Path,
    targets: tuple[Target, ...],
    secret: bytes,
    parent_pid: int,
    give_up_after: float,
    figures_file: Path | None = None,
    service: float = 0.0,
    backoff_max: float = BACKOFF_MAX,
) -> None:
    """The sender's loop until its supervisor is gone: a lane for each queue that appears."""
    figures = WebhookFigures.resume(figures_file, service) if figures_file else WebhookFigures(service)

    def save() -> None:  # only while our supervisor lives (as the drainer's, records/drainer.py)
        if figures_file is not None and os.getppid() == parent_pid:
            figures.save(figures_file)

    shared = Shared(instance, Path(spool_dir), secret, give_up_after, figures, save, backoff_max)
    save()
    by_key = {target.key: target for target in targets}
    lanes: dict[str, Lane] = {}
    log.info("webhook sender started: %d receivers", len(by_key))
    try:
        while os.getppid() == parent_pid:
            for queue in outbox.queues(spool_dir, instance):
                if queue.name not in lanes:
                    lanes[queue.name] = lane = Lane(queue, by_key.get(queue.name), shared)
                    lane.start()
            time.sleep(POLL)
    finally:
        shared.stop.set()


def sender_work(settings, targets: tuple[Target, ...], service: float = 0.0):
    """The sender helper's function, as the supervisor's keeper starts it (supervisor/keeper.py):
    `targets`, every receiver CALL_WEBHOOKS and the agents name."""
    parent = os.getpid()
    return lambda: run(
        settings.instance,
        settings.spool_dir,
        targets,
        settings.call_webhook_secret.reveal().encode("utf-8"),
        parent,
        settings.call_webhook_retry_hours * 3600,
        figures_file=outbox.figures_path(settings.state_dir, settings.instance),
        service=service,
    )
