"""Built-in alerts, the conditions: what the supervisor's state says, decided on its tick.

`Recent` keeps sliding windows of what the reaps and admissions saw (a few timestamps per
call); `holding` turns them, the ARI link and the models' shutdown dates into the
conditions that hold now (alerts/conditions.py decides what to say about them). Pure and
cheap: no I/O, the caller passes the clock. The limits are one `Thresholds`, built once
from the ALERT_* settings (callbridge/alert_settings.py, callbridge/config.py::Settings.alert_thresholds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from alerts.conditions import Holding
from callbridge.alert_settings import Thresholds

REFUSALS = {  # Realtime error codes that mean no call can work (shm_ring/header.py ERROR_CODE_SLOTS)
    "invalid_api_key": "OpenAI refuses the API key (OPENAI_API_KEY)",
    "insufficient_quota": "the OpenAI account has no quota left",
    "model_not_found": "OpenAI does not know the model (OPENAI_REALTIME_MODEL)",
    "beta_api_shape_disabled": "OpenAI turned the beta API shape off (OPENAI_API_SHAPE=ga)",
}
FAILED_REASONS = ("worker_crashed", "setup_failed", "realtime_failed")


def opened_since(counters: dict[str, int]) -> float | None:
    """When a reaped call was admitted (monotonic seconds), if its Realtime session opened
    and took the caller's audio; None if it never got that far. `counters` is the header's
    snapshot at the reap: FRAMES_TO_REALTIME is counted only on an open session."""
    if counters.get("frames_to_realtime", 0) <= 0 or counters.get("created_ns", 0) <= 0:
        return None
    return counters["created_ns"] / 1e9


@dataclass
class Recent:
    thresholds: Thresholds = field(default_factory=Thresholds)
    ended: deque = field(default_factory=deque)  # (when, failed)
    crashes: deque = field(default_factory=deque)
    refusals: dict[str, float] = field(default_factory=dict)  # code -> last seen
    busy: deque = field(default_factory=deque)
    lost: deque = field(default_factory=deque)  # records that could not be written
    recordings_failed: deque = field(default_factory=deque)  # recordings stopped (a full disk)
    set_aside: deque = field(default_factory=deque)  # records the database can never take
    given_up: deque = field(default_factory=deque)  # webhook events retried too long
    summaries_given_up: deque = field(default_factory=deque)  # post-call summaries retried too long

    def call_ended(
        self, now: float, reason: str, errors_by_code: dict[str, int], opened_at: float | None = None
    ) -> None:
        """One reaped call. `opened_at` (from `opened_since`): when a call whose Realtime
        session opened was admitted."""
        self.ended.append((now, reason in FAILED_REASONS))
        self.prune(now)  # the windows hold whether or not a tick came meanwhile
        if reason == "worker_crashed":
            self.crashes.append(now)
        refused = [code for code, count in errors_by_code.items() if code in REFUSALS and count]
        for code in refused:
            self.refusals[code] = now
        if opened_at is not None and not refused and reason != "realtime_failed":
            # A session opened fine with the same key, quota, model and shape: each refusal
            # seen before this call was admitted is over. One seen while it ran is not.
            for code, when in list(self.refusals.items()):
                if when <= opened_at:
                    del self.refusals[code]

    def turned_away(self, now: float) -> None:
        self.busy.append(now)

    def record_lost(self, now: float) -> None:
        self.lost.append(now)

    def recording_failed(self, now: float) -> None:
        self.recordings_failed.append(now)

    def records_set_aside(self, now: float, count: int) -> None:
        self.set_aside.extend([now] * count)

    def webhooks_given_up(self, now: float, count: int) -> None:
        self.given_up.extend([now] * count)

    def summaries_failed(self, now: float, count: int) -> None:
        self.summaries_given_up.extend([now] * count)

    def prune(self, now: float) -> None:
        """Forget what has left its window."""
        limits = self.thresholds
        while self.ended and now - self.ended[0][0] > limits.failed_window_seconds:
            self.ended.popleft()
        for window, times in (
            (limits.crash_window_seconds, self.crashes),
            (limits.busy_window_seconds, self.busy),
            (limits.failed_window_seconds, self.lost),
            (limits.failed_window_seconds, self.recordings_failed),
            (limits.failed_window_seconds, self.set_aside),
            (limits.failed_window_seconds, self.given_up),
            (limits.failed_window_seconds, self.summaries_given_up),
        ):
            while times and now - times[0] > window:
                times.popleft()
        for code, when in list(self.refusals.items()):
            if now - when > limits.failed_window_seconds:
                del self.refusals[code]


def holding(
    now: float, ari_connected: bool, recent: Recent, shutdown_days: dict[str, int]
) -> dict[str, Holding]:
    """The conditions that hold at `now`, by key, against `recent.thresholds`."""
    recent.prune(now)
    limits = recent.thresholds
    found: dict[str, Holding] = {}
    if not ari_connected:
        found["ari_unreachable"] = Holding(
            f"Asterisk (ARI) unreachable for more than {limits.ari_down_seconds:.0f} s: "
            "no calls are answered",
            "critical",
            hold=limits.ari_down_seconds,
        )
    for code, text in sorted(REFUSALS.items()):
        if code in recent.refusals:
            found[f"realtime_{code}"] = Holding(f"Realtime refuses calls: {text}", "critical")
    if len(recent.crashes) >= limits.crashes:
        found["worker_crashes"] = Holding(
            f"{len(recent.crashes)} call workers crashed within {_span(limits.crash_window_seconds)}"
        )
    failed = sum(1 for _, bad in recent.ended if bad)
    calls = len(recent.ended)
    if calls >= limits.failed_min_calls and failed / calls > limits.failed_ratio:
        found["failed_calls"] = Holding(
            f"{failed} of the last {calls} calls failed (crash, set-up or Realtime), "
            f"within {_span(limits.failed_window_seconds)}"
        )
    if recent.busy:
        found["callers_turned_away"] = Holding(
            f"{len(recent.busy)} callers turned away busy within {_span(limits.busy_window_seconds)} "
            "(MAX_CONCURRENT_CALLS)"
        )
    if recent.lost:
        found["records_lost"] = Holding(
            f"{len(recent.lost)} call records could not be written to the spool within "
            f"{_span(limits.failed_window_seconds)}: they are lost (is the state directory's disk full?)",
            "critical",
        )
    if recent.recordings_failed:
        found["recordings_failed"] = Holding(
            f"{len(recent.recordings_failed)} call recordings stopped or could not start within "
            f"{_span(limits.failed_window_seconds)}: the calls went on unrecorded (is RECORDINGS_DIR's disk full?)"
        )
    if recent.set_aside:
        found["records_set_aside"] = Holding(
            f"{len(recent.set_aside)} call records could not be stored within "
            f"{_span(limits.failed_window_seconds)}: the database refuses them; kept in the spool's bad/"
        )
    if recent.given_up:
        found["webhooks_given_up"] = Holding(
            f"{len(recent.given_up)} webhook events were given up within "
            f"{_span(limits.failed_window_seconds)}: their receiver did not take them within "
            "CALL_WEBHOOK_RETRY_HOURS; kept in the spool's webhooks/bad/"
        )
    if recent.summaries_given_up:
        found["summaries_given_up"] = Holding(
            f"{len(recent.summaries_given_up)} post-call summaries or their e-mails were given up within "
            f"{_span(limits.failed_window_seconds)}: not made or not mailed within SUMMARY_RETRY_HOURS, "
            "refused by the model, or their spool files broken; the calls' records are kept, "
            "the jobs in the spool's summaries/INSTANCE/bad/ (see the log)"
        )
    for model, days in sorted(shutdown_days.items()):
        if days <= limits.shutdown_days:
            found[f"model_shutdown_{model}"] = Holding(
                f"{model} shuts down in {days} days: move to its replacement"
                if days > 0
                else f"{model} has shut down: calls fail until the model is changed",
                "warning" if days > 0 else "critical",
            )
    return found


def _span(seconds: float) -> str:
    """ "10 minutes", or "45 s" for a window shorter than two minutes."""
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} s"
