"""The supervisor's agents and models: the agents file and its reload, the daily budgets,
the models' shutdown dates.

Part of `Supervisor` (supervisor/service.py), kept apart because it is one thing: what the
service answers with (callbridge/agents.py) and what may change outside it without a
restart (SIGHUP). Nothing here waits: the budgets' seed and the model check are helpers'
(supervisor/helpers.py); a reload reads one small local file on the loop.
"""

from __future__ import annotations

import logging
import time

from callbridge.agent_file import AgentFileError
from callbridge.agents import load_book
from callbridge.model_lifecycle import log_and_report
from supervisor.budgets import call_cost, seed_work
from supervisor.calls import CallEntry

log = logging.getLogger(__name__)


class AgentsSide:
    """Mixed into `Supervisor`; uses its settings, agents, budgets, model watch and helpers."""

    def _agents_summary(self) -> dict:
        spent = self.budgets.as_dict()
        return {
            name: {"spent_today": spent.get(name, 0.0), "daily_budget": agent.daily_budget}
            for name, agent in self.agents.agents.items()
        }

    def reload(self) -> None:
        """What SIGHUP asks for (`systemctl reload`, the unit's ExecReload): look again, now,
        at what may have changed outside the service, without a restart.

        Two things: AGENTS_FILE is read again (`reload_agents`: new calls get the new
        agents, live calls keep theirs), and the model check runs at once, in its helper as
        at start and daily (callbridge/model_lifecycle.py), so an alert about a model that
        no longer shuts down soon resolves without waiting a day. A reload never touches a
        live call, the ARI link or the settings: those are read at start, and a changed env
        file still needs a restart. Runs on the loop: it reads one small local file (and
        the instructions files it names) and starts helpers.
        """
        log.info("reload (SIGHUP): reading the agents file and checking the models' shutdown dates again")
        self._guarded(self.reload_agents)
        self.model_watch.force()
        self._check_models(time.monotonic())

    def reload_agents(self) -> bool:
        """Read AGENTS_FILE again. On success the new book answers new calls (live calls
        keep the agent they started with) and one line says what changed; on an error
        the old book stays and every problem is logged. False when there is no file or it
        is invalid."""
        if not self.settings.agents_file:
            log.info("SIGHUP: no AGENTS_FILE to read again; other settings are read at start")
            return False
        try:
            book = load_book(self.settings)
        except AgentFileError as exc:
            log.error(
                "SIGHUP: the agents file has %d problem(s); keeping the agents loaded before:\n%s",
                len(exc.problems),
                "\n".join(exc.problems),
            )
            return False
        old, self.agents = self.agents, book
        log.info("SIGHUP: agents file read again (%d agents): %s", len(book.agents), book.changes_from(old))
        self._guarded(self._seed_budgets)
        return True

    def _seed_budgets(self) -> None:
        """Once some agent has a daily_budget: today's costs so far, from the database."""
        if self.budgets_seeded or not any(a.daily_budget is not None for a in self.agents.agents.values()):
            return
        self.budgets_seeded = True
        day = self.budgets.day
        self._helper("budgets", seed_work(self.settings, day, self.started_wall), self._on_budgets_seeded)

    def _on_budgets_seeded(self, found, ok: bool) -> None:
        if not ok or not isinstance(found, dict) or not isinstance(found.get("spent"), dict):
            log.warning("cannot read today's costs from the records database; daily budgets count from now")
            return
        budgets = {name: agent.daily_budget for name, agent in self.agents.agents.items()}
        if self.budgets.seed(str(found.get("day")), found["spent"], budgets, time.time()):
            log.info("daily budgets: today's costs so far %s", found["spent"] or "none")

    def _count_cost(self, entry: CallEntry, counters: dict) -> None:
        settings = self.settings
        cost = call_cost(
            settings.prices, settings.openai_realtime_model, settings.openai_transcription_model, counters
        )
        agent = self.agents.agents.get(entry.agent)  # the budget as the book says now
        self.budgets.add(entry.agent, cost, agent.daily_budget if agent else None, time.time())

    def _check_models(self, now: float) -> None:
        """At start and once a day, a helper asks OpenAI when the configured models shut
        down and logs what it found (callbridge/model_lifecycle.py)."""
        if self.stopping.draining or self.models_checking or not self.model_watch.due(now):
            return  # one check at a time: a later one never lands before an earlier one
        self.model_watch.started(now)
        helper = self._helper("models", lambda: log_and_report(self.settings), self._on_models_checked)
        self.models_checking = helper is not None

    def _on_models_checked(self, found, ok: bool) -> None:
        self.models_checking = False
        found = found if ok and isinstance(found, dict) else {}
        worst = found.get("worst")
        self.models = {0: "ok", 1: "warning", 2: "failure"}.get(worst, "unknown") if ok else "check failed"
        dates = found.get("shutdown_dates")
        if isinstance(dates, dict):  # a failed check keeps the dates the last good one found
            self.model_shutdown_dates = {str(m): str(d) for m, d in dates.items()}
