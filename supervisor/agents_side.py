"""The supervisor's agents and models: the agents file and its reload, the daily budgets,
the models' shutdown dates, the summaries' costs into the budgets.

A collaborator of the supervisor's loop (supervisor/service.py), given what it needs in its
constructor: what the service answers with (callbridge/agents.py) and what may change
outside it without a restart (SIGHUP). Nothing here waits: the budgets' seed and the model check are helpers'
(supervisor/helpers.py); a reload reads one small local file on the loop.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

from call_worker import mcp_calls
from callbridge.agent_file import AgentFileError
from callbridge.agents import AgentBook, load_book
from callbridge.config import Settings
from callbridge.model_lifecycle import SEVERITY, ModelWatch, log_and_report
from records import summary_queue
from supervisor.budgets import Budgets, SummarySpend, call_cost, seed_work, zone_of
from supervisor.calls import CallEntry
from supervisor.stopping import Stopping

log = logging.getLogger(__name__)

SPEND_LOOK = 5.0  # seconds between looks at the summarizer's costs (a stat)
LEVELS = {number: level for level, number in SEVERITY.items()}  # a model check's worst, as status shows it


class AgentsSide:
    def __init__(
        self,
        settings: Settings,
        book: AgentBook,
        started_wall: float,
        start_helper: Callable,
        guarded: Callable,
        stopping: Stopping,
    ) -> None:
        """`book`: the agents to start with; `start_helper` and `guarded` are the supervisor's
        (a helper with nothing of the supervisor's; a step whose bug is logged, not raised)."""
        self.settings = settings
        self.book = book
        self.started_wall = started_wall
        self.start_helper = start_helper
        self.guarded = guarded
        self.stopping = stopping
        # Each agent's cost today against its daily_budget (supervisor/budgets.py), seeded
        # from the records database by a helper once some agent has a budget.
        self.budgets = Budgets(zone_of(settings.records_timezone), started_wall)
        self.budgets_seeded = False
        self.summary_spend = SummarySpend(
            summary_queue.figures_path(settings.state_dir, settings.instance), round(started_wall, 3)
        )
        self.next_spend_look = 0.0
        self.model_watch = ModelWatch()
        self.models_checking = False  # a "models" helper is running
        self.models = "unchecked"  # the last model check's worst finding, for status
        self.model_shutdown_dates: dict[str, str] = {}
        self.mcp_loaded = False

    def preload_mcp(self) -> None:
        """Once some agent names an MCP server: the SDK is imported here, before the workers
        are forked, not in a call while its audio plays (call_worker/mcp_calls.py::preload).
        At start, and at a reload that adds the first server (a one-off half second of this
        loop; the calls' audio is the workers')."""
        if self.mcp_loaded or not any(agent.mcp for agent in self.book.agents.values()):
            return
        self.mcp_loaded = True
        took = mcp_calls.preload()
        if took is None:
            log.error(
                "agents name MCP servers, but the MCP SDK is not installed (pip install 'callbridge[mcp]'): "
                "their tools are not offered"
            )
        else:
            # Its tens of thousands of objects are kept out of every later collection: a
            # worker's first full collection walked them all, a 20 ms pause in its audio.
            gc.freeze()
            log.info("MCP SDK loaded for the agents' MCP servers (%.0f ms)", took * 1000)

    def summary(self) -> dict:
        spent = self.budgets.as_dict()
        return {
            name: {"spent_today": spent.get(name, 0.0), "daily_budget": agent.daily_budget}
            for name, agent in self.book.agents.items()
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
        self.guarded(self.reload_agents)
        self.model_watch.force()
        self.check_models(time.monotonic())

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
        old, self.book = self.book, book
        log.info("SIGHUP: agents file read again (%d agents): %s", len(book.agents), book.changes_from(old))
        self.guarded(self.preload_mcp)
        self.guarded(self.seed_budgets)
        return True

    def seed_budgets(self) -> None:
        """Once some agent has a daily_budget: today's costs so far, from the database."""
        if self.budgets_seeded or not any(a.daily_budget is not None for a in self.book.agents.values()):
            return
        self.budgets_seeded = True
        day = self.budgets.day
        self.start_helper(
            "budgets", seed_work(self.settings, day, self.started_wall), self._on_budgets_seeded
        )

    def _on_budgets_seeded(self, found, ok: bool) -> None:
        if not ok or not isinstance(found, dict) or not isinstance(found.get("spent"), dict):
            log.warning("cannot read today's costs from the records database; daily budgets count from now")
            return
        budgets = {name: agent.daily_budget for name, agent in self.book.agents.items()}
        if self.budgets.seed(str(found.get("day")), found["spent"], budgets, time.time()):
            log.info("daily budgets: today's costs so far %s", found["spent"] or "none")

    def model_of(self, entry: CallEntry) -> str:
        """The voice model the call's agent runs on (its own, or the environment's)."""
        agent = self.book.agents.get(entry.agent)
        return (
            agent.apply(self.settings).openai_realtime_model if agent else self.settings.openai_realtime_model
        )

    def count_cost(self, entry: CallEntry, counters: dict) -> None:
        settings = self.settings
        cost = call_cost(settings.prices, self.model_of(entry), settings.openai_transcription_model, counters)
        agent = self.book.agents.get(entry.agent)  # the budget as the book says now
        self.budgets.add(entry.agent, cost, agent.daily_budget if agent else None, time.time())

    def count_summaries(self, now: float) -> None:
        """The summaries' cost since the last look, into their agents' budgets (on the tick,
        every SPEND_LOOK seconds)."""
        if now < self.next_spend_look:
            return
        self.next_spend_look = now + SPEND_LOOK
        for name, cost in self.summary_spend.grown().items():
            agent = self.book.agents.get(name)
            self.budgets.add(name, cost, agent.daily_budget if agent else None, time.time())

    def check_models(self, now: float) -> None:
        """At start and once a day, a helper asks OpenAI when the configured models shut
        down and logs what it found (callbridge/model_lifecycle.py)."""
        if self.stopping.draining or self.models_checking or not self.model_watch.due(now):
            return  # one check at a time: a later one never lands before an earlier one
        self.model_watch.started(now)
        agents = tuple(self.book.agents.values())  # their own models are in use too
        helper = self.start_helper(
            "models", lambda: log_and_report(self.settings, agents=agents), self._on_models_checked
        )
        self.models_checking = helper is not None

    def _on_models_checked(self, found, ok: bool) -> None:
        self.models_checking = False
        found = found if ok and isinstance(found, dict) else {}
        worst = found.get("worst")
        self.models = LEVELS.get(worst, "unknown") if ok else "check failed"
        dates = found.get("shutdown_dates")
        if isinstance(dates, dict):  # a failed check keeps the dates the last good one found
            self.model_shutdown_dates = {str(m): str(d) for m, d in dates.items()}
