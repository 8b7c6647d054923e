"""Built-in alerts, the conditions: what the supervisor's state says, decided on its tick.

`Recent` keeps sliding windows of what the reaps and admissions saw (a few timestamps per
call); `holding` turns them, the ARI link and the models' shutdown dates into the
conditions that hold now (alerts/conditions.py decides what to say about them). Pure and
cheap: no I/O, the caller passes the clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from alerts.conditions import Holding

ARI_HOLD = 30.0  # seconds the ARI link may be down before it is an alert
CRASHES, CRASH_WINDOW = 3, 600.0  # worker crashes within that many seconds
FAILED_RATIO, FAILED_MIN_CALLS, FAILED_WINDOW = 0.2, 5, 900.0
BUSY_WINDOW = 300.0  # callers turned away within these seconds
SHUTDOWN_DAYS = 30
REFUSALS = {  # Realtime error codes that mean no call can work (shm_ring/header.py ERROR_CODE_SLOTS)
    "invalid_api_key": "OpenAI refuses the API key (OPENAI_API_KEY)",
    "insufficient_quota": "the OpenAI account has no quota left",
    "model_not_found": "OpenAI does not know the model (OPENAI_REALTIME_MODEL)",
    "beta_api_shape_disabled": "OpenAI turned the beta API shape off (OPENAI_API_SHAPE=ga)",
}
FAILED_REASONS = ("worker_crashed", "setup_failed", "realtime_failed")


@dataclass
class Recent:
    ended: deque = field(default_factory=deque)  # (when, failed)
    crashes: deque = field(default_factory=deque)
    refusals: dict[str, float] = field(default_factory=dict)  # code -> last seen
    busy: deque = field(default_factory=deque)

    def call_ended(self, now: float, reason: str, errors_by_code: dict[str, int]) -> None:
        self.ended.append((now, reason in FAILED_REASONS))
        if reason == "worker_crashed":
            self.crashes.append(now)
        for code, count in errors_by_code.items():
            if code in REFUSALS and count:
                self.refusals[code] = now

    def turned_away(self, now: float) -> None:
        self.busy.append(now)

    def prune(self, now: float) -> None:
        """Forget what has left its window."""
        while self.ended and now - self.ended[0][0] > FAILED_WINDOW:
            self.ended.popleft()
        for window, times in ((CRASH_WINDOW, self.crashes), (BUSY_WINDOW, self.busy)):
            while times and now - times[0] > window:
                times.popleft()
        for code, when in list(self.refusals.items()):
            if now - when > FAILED_WINDOW:
                del self.refusals[code]


def holding(
    now: float, ari_connected: bool, recent: Recent, shutdown_days: dict[str, int]
) -> dict[str, Holding]:
    """The conditions that hold at `now`, by key."""
    recent.prune(now)
    found: dict[str, Holding] = {}
    if not ari_connected:
        found["ari_unreachable"] = Holding(
            f"Asterisk (ARI) unreachable for more than {ARI_HOLD:.0f} s: no calls are answered",
            "critical",
            hold=ARI_HOLD,
        )
    for code, text in sorted(REFUSALS.items()):
        if code in recent.refusals:
            found[f"realtime_{code}"] = Holding(f"Realtime refuses calls: {text}", "critical")
    if len(recent.crashes) >= CRASHES:
        found["worker_crashes"] = Holding(
            f"{len(recent.crashes)} call workers crashed within {CRASH_WINDOW / 60:.0f} minutes"
        )
    failed = sum(1 for _, bad in recent.ended if bad)
    if len(recent.ended) >= FAILED_MIN_CALLS and failed / len(recent.ended) > FAILED_RATIO:
        found["failed_calls"] = Holding(
            f"{failed} of the last {len(recent.ended)} calls failed (crash, set-up or Realtime), "
            f"within {FAILED_WINDOW / 60:.0f} minutes"
        )
    if recent.busy:
        found["callers_turned_away"] = Holding(
            f"{len(recent.busy)} callers turned away busy within {BUSY_WINDOW / 60:.0f} minutes "
            "(MAX_CONCURRENT_CALLS)"
        )
    for model, days in sorted(shutdown_days.items()):
        if days <= SHUTDOWN_DAYS:
            found[f"model_shutdown_{model}"] = Holding(
                f"{model} shuts down in {days} days: move to its replacement"
                if days > 0
                else f"{model} has shut down: calls fail until the model is changed",
                "warning" if days > 0 else "critical",
            )
    return found
