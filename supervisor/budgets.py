"""Each agent's estimated cost today, against its `daily_budget` (docs/agents.md).

The supervisor adds every reaped call's estimate (the same prices as the call's record,
callbridge/prices.py) under the call's agent; a new day in RECORDS_TIMEZONE starts from zero.
At start a helper asks the records database for the day so far (`seed_work`, calls this
instance started today before this run), so a restart does not give an agent a fresh
budget; the loop itself never queries the database. An agent at or over its budget gets
no new calls (admission sends them to the fallback); live calls go on. One line is logged
when an agent crosses its budget.

The post-call summaries cost too, after the call (summaries/summarizer.py): the summarizer
keeps what its summaries cost by agent in its figures file, and `SummarySpend` adds what grew
since the last look (a stat every few seconds; a read of a few hundred bytes when it changed).

Pure apart from that helper's work and the figures file: the clock comes in as arguments.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from callbridge.prices import PriceTable
from records.spool import usage_by_kind
from records.summary_queue import SummaryFigures

log = logging.getLogger(__name__)


def call_cost(prices: PriceTable, model: str, transcription_model: str, counters: dict) -> float:
    """A reaped call's estimate from its header's last counters, as its record makes it
    (records/spool.py::costs); 0 when the model has no price."""
    return prices.estimate(model, usage_by_kind(counters), transcription_model) or 0.0


def zone_of(name: str) -> tzinfo | None:
    """RECORDS_TIMEZONE's zone; None: the machine's."""
    return ZoneInfo(name) if name else None


def local_day(wall: float, zone: tzinfo | None) -> date:
    return datetime.fromtimestamp(wall, UTC).astimezone(zone).date()


def day_bounds(day: date, zone: tzinfo | None) -> tuple[datetime, datetime]:
    """The local day's first instant and the next day's, as the naive UTC the tables hold."""

    def utc(d: date) -> datetime:
        local = datetime.combine(d, time())
        local = local.replace(tzinfo=zone) if zone is not None else local.astimezone()
        return local.astimezone(UTC).replace(tzinfo=None)

    return utc(day), utc(day + timedelta(days=1))


class Budgets:
    def __init__(self, zone: tzinfo | None, now_wall: float) -> None:
        self.zone = zone
        self.day = local_day(now_wall, zone)
        self.spent: dict[str, float] = {}
        self.crossed: set[str] = set()  # agents already logged as over, today

    def _roll(self, now_wall: float) -> None:
        today = local_day(now_wall, self.zone)
        if today != self.day:  # midnight in RECORDS_TIMEZONE: every agent starts again
            self.day, self.spent, self.crossed = today, {}, set()

    def add(self, agent: str, cost: float, budget: float | None, now_wall: float) -> None:
        """A reaped call of `agent` cost `cost`; `budget` is the agent's daily_budget now."""
        self._roll(now_wall)
        if cost > 0:
            self.spent[agent] = self.spent.get(agent, 0.0) + cost
        self._check(agent, budget)

    def seed(self, day: str, spent: dict, budgets: dict[str, float | None], now_wall: float) -> bool:
        """The database's figures for `day` (ISO), added to what this run counted; ignored
        when the day has changed since they were asked for."""
        self._roll(now_wall)
        if day != self.day.isoformat():
            return False
        for agent, cost in spent.items():
            self.spent[str(agent)] = self.spent.get(str(agent), 0.0) + float(cost)
        for agent, budget in budgets.items():
            self._check(agent, budget)
        return True

    def over(self, agent: str, budget: float | None, now_wall: float) -> bool:
        self._roll(now_wall)
        return budget is not None and self.spent.get(agent, 0.0) >= budget

    def _check(self, agent: str, budget: float | None) -> None:
        if budget is None or agent in self.crossed or self.spent.get(agent, 0.0) < budget:
            return
        self.crossed.add(agent)
        log.warning(
            "agent %s reached its daily budget (%.4f of %.4f today): its new callers go to the fallback",
            agent,
            self.spent[agent],
            budget,
        )

    def as_dict(self) -> dict[str, float]:
        return {agent: round(cost, 6) for agent, cost in self.spent.items()}


def seed_work(settings, day: date, until_wall: float):
    """The helper's work: each agent's cost of the calls this instance started on `day`
    before `until_wall` (this run's start), from the records database."""
    database, instance, zone = settings.database, settings.instance, zone_of(settings.records_timezone)

    def work() -> dict:
        from records.queries import cost_by_agent
        from records.store import open_engine

        since, next_day = day_bounds(day, zone)
        run_start = datetime.fromtimestamp(until_wall, UTC).replace(tzinfo=None)
        until = min(next_day, run_start)
        if database.is_sqlite and not _exists(database):
            return {"day": day.isoformat(), "spent": {}}  # no history yet
        engine = open_engine(database, read_only=True)
        try:
            spent = cost_by_agent(engine, since, until, instance, run_start=run_start)
            return {"day": day.isoformat(), "spent": spent}
        finally:
            engine.dispose()

    return work


def _exists(database) -> bool:
    from pathlib import Path

    path = database.url.database
    return bool(path) and path != ":memory:" and Path(path).exists()


class SummarySpend:
    """What the summaries cost since the last look, by agent, from the summarizer's figures
    file (records/summary_queue.py::SummaryFigures) of this service run."""

    def __init__(self, path: Path, service: float) -> None:
        self.path = path
        self.service = service
        self.mtime: float | None = None
        self.seen: dict[str, float] = {}

    def grown(self) -> dict[str, float]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return {}
        if mtime == self.mtime:
            return {}
        self.mtime = mtime
        spent = SummaryFigures.resume(self.path, self.service).spent
        grown = {agent: cost - self.seen.get(agent, 0.0) for agent, cost in spent.items()}
        self.seen = dict(spent)
        return {agent: cost for agent, cost in grown.items() if cost > 0}
