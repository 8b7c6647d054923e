"""This instance's live state, from its supervisor's control socket, shared by every viewer.

However many browsers poll the live page, the supervisor is asked for `status` at most
once per `ttl` (one request in flight at a time, on one thread of this helper: the others
wait for its answer), so 50 open dashboards cost its loop what one does. The `metrics`
totals (for the overview's health) are cached the same way, less often, and sampled so that
"in the last hour" can be told from process-lifetime counters.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from shm_ring import wire

STATUS_SECONDS = 0.5
METRICS_SECONDS = 10.0
REQUEST_TIMEOUT = 2.0
HOUR = 3600.0


class Cached:
    """One control-socket question, answered from a cache younger than `ttl`."""

    def __init__(self, socket_path: str, request: dict, ttl: float, pool: ThreadPoolExecutor) -> None:
        self.socket_path = socket_path
        self.request = request
        self.ttl = ttl
        self.pool = pool
        self.reply: dict = {}
        self.at = float("-inf")
        self.lock: asyncio.Lock | None = None
        self.asked = 0  # how many times the supervisor was asked: the tests count it

    def _ask(self) -> dict:
        self.asked += 1
        try:
            return wire.request(self.socket_path, self.request, timeout=REQUEST_TIMEOUT)
        except (OSError, wire.WireError) as exc:
            # The supervisor not running or not answering is shown, not raised.
            return {"ok": False, "error": f"the supervisor does not answer: {type(exc).__name__}"}

    async def get(self) -> dict:
        if self.lock is None:
            self.lock = asyncio.Lock()
        if time.monotonic() - self.at < self.ttl:
            return self.reply
        async with self.lock:
            if time.monotonic() - self.at >= self.ttl:
                self.reply = await asyncio.get_running_loop().run_in_executor(self.pool, self._ask)
                self.at = time.monotonic()
        return self.reply


def counters(totals: dict) -> dict[str, int]:
    """The process-lifetime counters of a metrics reply that the overview shows per hour."""

    def number(key: str) -> int:
        value = totals.get(key, 0)
        return value if isinstance(value, int) else 0

    by_code = totals.get("realtime_errors_by_code") or {}
    return {
        "realtime_errors": sum(v for v in by_code.values() if isinstance(v, int)),
        "worker_crashes": number("worker_crashes"),
        "calls_turned_away": number("calls_turned_away"),
        "records_lost": number("records_lost"),
    }


class LiveFeed:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="control")
        self.status = Cached(socket_path, {"cmd": "status"}, STATUS_SECONDS, pool)
        self.metrics = Cached(socket_path, {"cmd": "metrics"}, METRICS_SECONDS, pool)
        self.samples: deque[tuple[float, dict]] = deque()  # (when, totals) over the last hour

    async def totals(self) -> tuple[dict, dict]:
        """The metrics reply, and how much each counter grew in the last hour (or since this
        helper first asked, when that is later: `since_s` says how long it covers)."""
        reply = await self.metrics.get()
        now = time.monotonic()
        if reply.get("ok"):
            if not self.samples or self.samples[-1][1] is not reply:
                self.samples.append((now, reply))
            while len(self.samples) > 1 and now - self.samples[1][0] >= HOUR:
                self.samples.popleft()
        if not reply.get("ok") or not self.samples:
            return reply, {}
        first_at, first = self.samples[0]
        latest, earliest = counters(reply), counters(first)
        # never below zero: a supervisor that restarted began its counters again
        grew = {key: max(0, latest[key] - earliest[key]) for key in latest}
        grew["since_s"] = round(now - first_at)
        return reply, grew

    def hangup(self, call_id: str) -> dict:
        """Blocking: run it on a thread. The operator's hang-up, as `callbridge hangup` does."""
        try:
            return wire.request(
                self.socket_path, {"cmd": "hangup", "call_id": call_id}, timeout=REQUEST_TIMEOUT
            )
        except (OSError, wire.WireError) as exc:
            return {"ok": False, "error": f"the supervisor does not answer: {type(exc).__name__}"}
