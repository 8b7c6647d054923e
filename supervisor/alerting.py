"""The supervisor's side of the built-in alerts (ALERT_WEBHOOKS): feed the conditions from
what the loop already sees, and hand the notices to an "alert" helper.

On the tick it costs a few comparisons (alerts/watch.py, alerts/conditions.py); sending
is a helper's (alerts/send.py), so a receiver that is down or slow never reaches the loop.
A batch found while another is being sent waits for it, so notices leave in order and a
slow receiver cannot pile up helpers.

"Started after an unclean stop" is told by a marker file in STATE_DIR, written at start
and removed at a clean exit: found at start, the last run did not reach its exit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from alerts.conditions import Notice, Tracker
from alerts.send import send_all
from alerts.watch import Recent, holding, opened_since
from callbridge import safe_files
from records import drain_figures, outbox, summary_queue

log = logging.getLogger(__name__)

MAX_QUEUED = 200  # notices waiting for a helper; past this the oldest are dropped, logged
HELPER_LIMIT = 60.0  # an alert helper alive longer is killed: its deadlines should have ended it
DRAINER_LOOK = 10.0  # seconds between looks at the drainer's figures (a stat; a read when changed)


@dataclass
class Watched:
    """One figures file (records/run_figures.py) and the counter of it that feeds an alert."""

    path: Path
    figures: type
    counter: str
    grew: Callable[[float, int], None]  # (now, by how much): into alerts/watch.py::Recent
    seen: tuple[float, int] | None = None  # (mtime, count) at the last look

    def look(self, now: float, service: float) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return
        if self.seen is not None and self.seen[0] == mtime:
            return
        count = self.figures.run_counters(self.path, service)[self.counter]
        before = self.seen[1] if self.seen is not None else 0
        self.seen = (mtime, count)
        if count > before:
            self.grew(now, count - before)


class Alerting:
    def __init__(self, settings, start_helper) -> None:
        self.settings = settings
        self.start_helper = start_helper  # the supervisor's _helper: forks with its fds closed
        self.channels = settings.alert_channels
        thresholds = settings.alert_thresholds  # ALERT_*: read once, here
        self.tracker = Tracker(repeat_after=thresholds.repeat_seconds)
        self.recent = Recent(thresholds)
        self.queue: list[Notice] = []
        self.sending = None  # the helper sending the current batch
        self.sent = self.failed = 0
        self.marker = Path(settings.state_dir) / "run" / f"{settings.instance}.running"
        self.busy_seen = 0
        # The long-lived helpers' figures files with the count that is an alert: records the
        # database refused (the drainer's), webhook events given up (the sender's), summaries
        # given up (the summarizer's).
        self.watched = [
            Watched(
                drain_figures.figures_path(settings.state_dir, settings.instance),
                drain_figures.DrainFigures,
                "set_aside",
                self.recent.records_set_aside,
            ),
            Watched(
                outbox.figures_path(settings.state_dir, settings.instance),
                outbox.WebhookFigures,
                "given_up",
                self.recent.webhooks_given_up,
            ),
            Watched(
                summary_queue.figures_path(settings.state_dir, settings.instance),
                summary_queue.SummaryFigures,
                "given_up",
                self.recent.summaries_failed,
            ),
            Watched(
                summary_queue.figures_path(settings.state_dir, settings.instance),
                summary_queue.SummaryFigures,
                "mails_given_up",
                self.recent.summaries_failed,
            ),
        ]
        self.next_look = 0.0

    @property
    def on(self) -> bool:
        return bool(self.channels)

    # --- what the supervisor tells it

    def started(self, version: str) -> None:
        if not self.on:
            return
        unclean = self._marker_was_left()
        text = f"callbridge {version} started" + (
            " after an unclean stop (the last run did not exit)" if unclean else ""
        )
        self.queue.append(self.tracker.event("started", text, "warning" if unclean else "info"))
        self.flush()

    def stopping(self, why: str) -> None:
        self.queue.append(self.tracker.event("stopping", f"callbridge is stopping ({why}): no new calls"))
        self.flush()  # now: once the calls are gone the supervisor waits for this helper, not for a tick

    def stopped(self) -> None:
        if not self.on:
            return
        try:
            self.marker.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("alerts: cannot remove %s: %s", self.marker, exc)

    def record_lost(self, now: float) -> None:
        self.recent.record_lost(now)

    def recording_failed(self, now: float) -> None:
        self.recent.recording_failed(now)

    def watch_helpers(self, now: float, service: float) -> None:
        """What the drainer set aside and the webhook sender gave up since the last look,
        from their figures files (local files of a few hundred bytes, read only when they
        changed: no wait on the loop)."""
        if not self.on or now < self.next_look:
            return
        self.next_look = now + DRAINER_LOOK
        for watched in self.watched:
            watched.look(now, service)

    def call_ended(self, now: float, reason: str, errors_by_code: dict[str, int], counters: dict) -> None:
        """`counters`: the call's header snapshot at the reap (a session that opened fine
        ends a Realtime refusal: alerts/watch.py::opened_since). Nothing is kept with alerts
        off: the windows are pruned only by the tick, which then does not run (measured:
        about 90 bytes kept per call, for ever)."""
        if not self.on:
            return
        self.recent.call_ended(now, reason, errors_by_code, opened_since(counters))

    # --- the tick

    def tick(self, now: float, ari_connected: bool, shutdown_dates: dict[str, str], calls_busy: int) -> None:
        if not self.on:
            return
        for _ in range(max(0, calls_busy - self.busy_seen)):  # callers turned away since the last tick
            self.recent.turned_away(now)
        self.busy_seen = calls_busy
        today = datetime.now(UTC).date()
        days = {}
        for model, when in shutdown_dates.items():
            try:
                days[model] = (date.fromisoformat(when) - today).days
            except ValueError:
                continue
        self.queue.extend(self.tracker.update(now, holding(now, ari_connected, self.recent, days)))
        if len(self.queue) > MAX_QUEUED:
            log.error("alerts: %d notices waiting; dropping the oldest", len(self.queue) - MAX_QUEUED)
            del self.queue[: len(self.queue) - MAX_QUEUED]
        self.flush()

    def flush(self) -> None:
        """Start a helper for what is queued, unless one is still sending."""
        if not self.on or self.sending is not None or not self.queue:
            return
        batch, self.queue = self.queue, []
        channels, instance, spool_dir = self.channels, self.settings.instance, self.settings.spool_dir
        self.sending = self.start_helper(
            "alert", lambda: send_all(channels, batch, instance, spool_dir), self._sent
        )
        if self.sending is None:  # could not fork: try again on the next tick
            self.queue[:0] = batch

    def _sent(self, outcomes, ok: bool) -> None:
        self.sending = None
        if not ok or not isinstance(outcomes, list):
            self.failed += 1  # the helper logged each outcome it had; helpers.py logs its failure
        else:
            for outcome in outcomes:
                delivered = isinstance(outcome, dict) and outcome.get("delivered")
                self.sent, self.failed = self.sent + bool(delivered), self.failed + (not delivered)
        self.flush()  # what queued meanwhile (the stopping notice, at the end)

    def _marker_was_left(self) -> bool:
        try:
            left = os.path.lexists(self.marker)  # a link planted as the marker counts, unfollowed
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            safe_files.write_text(self.marker, f"{os.getpid()}\n")
            return left
        except OSError as exc:
            log.warning(
                "alerts: cannot keep the run marker %s (%s): unclean stops go unnoticed", self.marker, exc
            )
            return False
