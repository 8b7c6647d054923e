"""The supervisor: one process, one thread, one `selectors` loop.

It listens to ARI events, forks one worker per call, reaps them, serves the control socket,
samples the workers' health and talks to systemd. It never touches audio, and it never
waits on Asterisk: the events link is a non-blocking state machine (supervisor/ari_events.py)
and every ARI request it needs (teardown after a crash, turning callers away,
reconciliation listings) runs in a helper process (supervisor/helpers.py). Signal handlers
only record the signal; the loop (woken through `signal.set_wakeup_fd`) does the work, so
reaping, logging and forking all happen here and the process holds no threads when it forks.

`Supervisor` is the spine, readable top to bottom: the loop, its dispatch, the reap (every
child's exit is interpreted here, in one place), the tick, the signals, the control socket
and the shutdown. The rest is collaborators, each given what it needs in its constructor:
the events link and reconciliation (supervisor/asterisk_side.py), the turn-away desk
(supervisor/turning_away.py), the agents and models (supervisor/agents_side.py), a call's
admission (supervisor/admission.py) and a call's end (supervisor/reaping.py), transfers,
alerts, health, and the keepers of the long-lived helpers (supervisor/keeper.py).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time

from call_worker import process
from callbridge import __version__
from callbridge.agents import AgentBook, load_book
from callbridge.config import Settings
from records import outbox, summary_queue
from records.drainer import drainer_work
from shm_ring import EndReason, Slot, call_events, start_tracker, sweep
from summaries.summarizer import summarizer_work
from supervisor import asterisk_work, start_checks, systemd
from supervisor.admission import Admission
from supervisor.agents_side import AgentsSide
from supervisor.alerting import HELPER_LIMIT as ALERT_HELPER_LIMIT
from supervisor.alerting import Alerting
from supervisor.ari_events import BACKOFF_CAP, LinkState
from supervisor.asterisk_side import AsteriskLink, Reconciler
from supervisor.calls import CallCounts, CallEntry
from supervisor.commands import COMMANDS
from supervisor.control import ControlServer
from supervisor.exits import describe_status, signal_name
from supervisor.health import HealthMonitor
from supervisor.helpers import Helpers
from supervisor.keeper import Keeper
from supervisor.key_presses import event_time
from supervisor.loop_watch import LoopWatch
from supervisor.reaping import CallEnds
from supervisor.recent import RecentIds
from supervisor.stopping import STOP_SIGNALS, Stopping
from supervisor.totals import Totals
from supervisor.transfers import Transfers
from supervisor.turning_away import TurnAwayDesk
from web import helper as web_helper
from webhooks.sender import sender_work

log = logging.getLogger(__name__)

TICK = 1.0
# Seconds a worker has, once its call is ending (asked to, or on its own), before SIGKILL:
# the failure prompt (call_worker/ending.py PROMPT_LIMIT) and a teardown against a slow
# Asterisk fit; a worker stuck longer is killed and its teardown helper finishes the job.
END_GRACE = 40.0
STUCK_GRACE = 10.0  # a worker ended for being stuck (health) is given less: it is not working
HARD_STOP_GRACE = 5.0
# Helpers whose work must be done before the process exits: a caller waits on each (or, for
# "record", a crashed call's record is written to the spool). Under
# systemd they die with the service, so the supervisor waits for them, up to HELPERS_WAIT
# (the unit's TimeoutStopSec leaves room for it after the drain).
MUST_FINISH = ("teardown", "busy", "refuse", "record", "alert")
HELPERS_WAIT = 45.0
RECONCILE_LIMIT = 60.0
TURN_AWAY_LIMIT = 60.0  # a refusing batch: 20 s of work and a request's 15 s, with room
PROMPT_HELPER_LIMIT = 120.0  # a prompt: 10 s of it, and up to 60 s of hang-up retries  # a listing helper slower than this is killed and the listing retried


class Supervisor:
    def __init__(self, settings: Settings, agents: AgentBook | None = None) -> None:
        """`agents`: the book to start with, else AGENTS_FILE's (or the environment's
        default agent); an invalid file raises AgentFileError, a ConfigError."""
        self.settings = settings
        self.ids = settings.ids
        self.selector = selectors.DefaultSelector()
        self.helpers = Helpers(self.selector)
        self.started = time.monotonic()
        self.media_scheduling = "not checked yet"  # supervisor/start_checks.py, at start
        self.started_wall = time.time()
        self.ready = False
        self.control: ControlServer | None = None
        self.helpers_wait_since: float | None = None
        # The live calls, by channel id and by worker pid: admission adds, the reap removes.
        self.calls: dict[str, CallEntry] = {}
        self._events_of: dict = {}  # call id -> its event channel's end, from the fork to its entry
        self.by_pid: dict[int, CallEntry] = {}
        self.counts = CallCounts()
        # Callers this run admitted or turned away, and when they were last ours: a listing
        # taken while such a call ended must not read its caller as a missed StasisStart.
        self.recent = RecentIds()  # supervisor/recent.py
        self.stopping = Stopping(settings.drain_timeout_seconds)
        self.health = HealthMonitor()
        self.loop = LoopWatch()
        # What every reaped call added, for the metrics (supervisor/totals.py).
        self.totals = Totals(settings.openai_realtime_model, settings.prices)
        start_helper = self._helper
        book = agents if agents is not None else load_book(settings)
        self.agents = AgentsSide(
            settings, book, self.started_wall, start_helper, self._guarded, self.stopping
        )
        self.agents.preload_mcp()
        self.link = AsteriskLink(settings, self.selector, start_helper, self._on_connect)
        self.desk = TurnAwayDesk(settings, start_helper, self.recent, self.counts)
        self.transfers = Transfers(self.ids, self._start_teardown)  # supervisor/transfers.py
        self.alerting = Alerting(settings, start_helper)  # ALERT_WEBHOOKS (supervisor/alerting.py)
        self.admission = Admission(
            settings,
            self.agents,
            self.calls,
            self.by_pid,
            self.desk,
            self.recent,
            self.stopping,
            self.counts,
            self._spawn_worker,
        )
        self.reconciler = Reconciler(
            settings,
            self.link,
            self.calls,
            self.transfers,
            self.desk,
            self.admission.unusable,
            self.recent,
            start_helper,
            self._start_teardown,
            self._admit,
        )
        self.ends = CallEnds(
            settings,
            self.calls,
            self.recent,
            self.health,
            self.transfers,
            self.totals,
            self.alerting,
            self.agents,
            self.counts,
            start_helper,
            self._start_teardown,
            self._guarded,
        )
        # The long-lived helpers, each kept running by one keeper: the records drainer
        # (spool -> database; its figures name this run by the start time), and the web
        # helper (web/helper.py: /metrics and the dashboard) when either listener is set.
        service = round(self.started_wall, 3)
        self.keepers = [Keeper("drainer", lambda: drainer_work(settings, service))]
        if settings.metrics_listen or settings.web_listen:
            self.keepers.append(Keeper("web", self._web_work))
        # The webhook sender (webhooks/sender.py), while any receiver is configured or
        # events wait for one (a receiver removed: they go to bad/ in their time); the
        # targets are read at each start, so a reload that changes them restarts it.
        self.webhook_targets = self._webhook_targets()
        self.webhooks_wanted = self._webhooks_wanted()
        self.keepers.append(
            Keeper(
                "webhooks",
                lambda: sender_work(settings, self.webhook_targets, service),
                wanted=lambda: self.webhooks_wanted,
            )
        )
        # The summarizer (summaries/summarizer.py), while SUMMARY_MODEL is set or jobs of an
        # earlier run wait, or were being asked about when it was killed (each job names its
        # own model, and its turns must not stay in the spool for ever).
        summaries_wanted = bool(settings.summary_model) or summary_queue.has_jobs(
            settings.spool_dir, settings.instance
        )
        self.keepers.append(
            Keeper("summaries", lambda: summarizer_work(settings, service), wanted=lambda: summaries_wanted)
        )

    # --- public, for the commands

    def live_calls(self) -> list[CallEntry]:
        return list(self.calls.values())

    def find_call(self, call_id: str) -> CallEntry | None:
        return self.calls.get(call_id)

    def summary(self) -> dict:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "instance": self.settings.instance,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "ari": self.link.events.state.value,
            "ari_connects": self.link.events.connects,
            "draining": self.stopping.draining,
            "calls_live": len(self.calls),
            "calls_taken": self.counts.taken,
            "calls_failed": self.counts.failed,
            "calls_rejected_busy": self.counts.busy,
            "calls_to_fallback": self.counts.to_fallback,
            "calls_routed_away": self.counts.routed_away,
            "calls_over_caller_limit": self.admission.caller_limit.refused,
            "max_concurrent_calls": self.settings.max_concurrent_calls,
            "max_calls_per_caller_per_hour": self.settings.max_calls_per_caller_per_hour,
            "ari_last_error": self.link.events.last_error,
            "helpers": len(self.helpers.by_pid),
            "turning_away": len(self.desk.queue),
            "reconciliations": self.reconciler.state.done,
            "models": self.agents.models,
            "calls_transferred_live": len(self.transfers.pairs),
            "agents_file": self.agents.book.source,
            "agents": self.agents.summary(),
            "loop_busy_max_ms": self.loop.busy_max_ms(),
            "loop_slow_passes": self.loop.slow_passes,
            "media_scheduling": self.media_scheduling,
        }

    def metrics(self) -> dict:
        """What the `metrics` command answers (supervisor/commands/metrics.py)."""
        return {
            "instance": self.settings.instance,
            "version": __version__,
            "started_at": round(self.started_wall, 3),
            "calls_live": len(self.calls),
            "calls_turned_away": self.counts.busy,
            "calls_over_caller_limit": self.admission.caller_limit.refused,
            "ari_connected": 1 if self.link.events.state is LinkState.CONNECTED else 0,
            "model_shutdown_dates": dict(self.agents.model_shutdown_dates),
            "currency": self.settings.records_currency,
            "loop_pass_seconds": self.loop.passes.as_dict(),
            **self.totals.as_dict(),
        }

    def _webhook_targets(self) -> tuple:
        """Every receiver of call events: CALL_WEBHOOKS, then each agent's own."""
        agents = self.agents.book.agents.values()
        found = (*self.settings.call_webhooks, *(t for agent in agents for t in agent.webhooks))
        return tuple(dict.fromkeys(found))

    def _webhooks_wanted(self) -> bool:
        """At start and at a reload only: a look at the outbox is a directory listing."""
        return bool(self.webhook_targets) or bool(
            outbox.queues(self.settings.spool_dir, self.settings.instance)
        )

    def _reload(self) -> None:
        """SIGHUP: the agents file again; a sender with other receivers starts anew."""
        self.agents.reload()
        targets = self._webhook_targets()
        if targets != self.webhook_targets:
            self.webhook_targets = targets
            self.webhooks_wanted = self._webhooks_wanted()
            self.helpers.kill(("webhooks",))  # its keeper starts it again with the new list

    def _web_work(self):
        settings, parent = self.settings, os.getpid()
        return lambda: web_helper.run(settings, parent)

    # --- the loop

    def run(self) -> int:
        start_tracker()
        removed = sweep(self.settings.segment_prefix)
        if removed:
            log.info("removed %d shared-memory segments left by an earlier run", len(removed))
        self.control = ControlServer(self.settings.control_socket_path, self.selector, self._handle_request)
        self.stopping.install(self.selector)
        log.info(
            "callbridge %s started (pid %d): instance %s, ARI %s, app %s, up to %d calls",
            __version__,
            os.getpid(),
            self.settings.instance,
            self.settings.ari_base_url,
            self.settings.ari_app_name,
            self.settings.max_concurrent_calls,
        )
        self._guarded(start_checks.warn_capacity, self.settings.max_concurrent_calls)
        self.media_scheduling = start_checks.media_scheduling(self.settings.media_realtime_priority)
        self._guarded(self.alerting.started, __version__)
        self._guarded(self.agents.seed_budgets)
        next_tick = time.monotonic()
        try:
            while not self._finished():
                if self.link.events.due(time.monotonic()):
                    self._guarded(self.link.connect)
                wait = max(0.0, min(next_tick, self.link.next_attempt()) - time.monotonic())
                self.loop.end_pass()
                ready = self.selector.select(wait)
                self.loop.begin_pass()
                for key, mask in ready:
                    self._guarded(self._dispatch, key.data, mask)
                self._handle_signals()
                self._guarded(self._reap)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK
                    self._guarded(self._tick)
                    systemd.notify("WATCHDOG=1")  # the loop is alive: it got here
        finally:
            self._shutdown()
        return 0

    def _guarded(self, step, *args) -> None:
        """A bug or a bad input in one step is logged; the loop, and every call, go on.
        Each step is timed for the loop's figures (supervisor/loop_watch.py)."""
        self.loop.begin_step(getattr(step, "__qualname__", "?"))
        try:
            step(*args)
        except Exception:
            log.exception("supervisor: %s failed; carrying on", getattr(step, "__name__", step))
        finally:
            self.loop.end_step()

    def _finished(self) -> bool:
        stopping = self.stopping
        if not (stopping.draining or stopping.hard_stop_at is not None) or self.calls:
            return False
        # Turned-away callers are hung up, and crashed calls torn down, before we exit.
        waiting = [h for h in self.helpers.running() if h.kind in MUST_FINISH]
        if not waiting and not self.desk.queue.queue:
            return True
        now = time.monotonic()
        if self.helpers_wait_since is None:
            self.helpers_wait_since = now
            log.info("waiting for %d helpers (turned-away callers, teardowns) before exiting", len(waiting))
        if now - self.helpers_wait_since < HELPERS_WAIT:
            return False
        log.error(
            "exiting with %d helpers unfinished; the next start reconciles what they leave", len(waiting)
        )
        return True

    def _dispatch(self, data, mask: int) -> None:
        kind, obj = data
        if kind == "wakeup":
            self.stopping.on_wakeup()
        elif kind == "ari":
            for event in self.link.events.on_ready(mask):
                self._guarded(self._on_ari_event, event)
            self.link.sync()
        elif kind == "helper":
            self.helpers.on_readable(obj)
        elif kind == "control":
            self.control.accept()
        elif kind == "client":
            self.control.on_event(obj, mask)

    def _on_ari_event(self, event: dict) -> None:
        kind = event["type"]
        channel = event.get("channel") if isinstance(event.get("channel"), dict) else {}
        channel_id = str(channel.get("id", ""))
        if self.transfers.on_event(kind, event, self.calls):
            return  # a transfer's channel, or a transferred caller (supervisor/transfers.py)
        if kind == "StasisStart":
            if self.ids.is_media_channel(channel):
                return  # an externalMedia channel entering the app: not a call
            self._admit(channel)
        elif kind == "ChannelDtmfReceived":
            entry = self.calls.get(channel_id)
            if entry is not None and not entry.caller_gone:
                self._key_pressed(entry, event)
        elif kind in ("StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"):
            entry = self.calls.get(channel_id)
            if entry is not None and not entry.caller_gone:
                entry.caller_gone = True
                entry.request_end(EndReason.CALLER_HANGUP)
        elif kind == "ApplicationReplaced":
            log.error(
                "another program connected to ARI as app %r and took its events; each instance "
                "needs its own ARI_APP_NAME. Reconnecting in %.0f s",
                self.settings.ari_app_name,
                BACKOFF_CAP,
            )
            self.link.events.replaced()

    def _admit(self, channel: dict) -> None:
        entry = self.admission.admit(channel)
        ours = self._events_of.pop(str(channel.get("id", "")), None)
        if entry is None:
            if ours is not None:
                ours.close()
            return
        entry.events = ours
        self._notify_status()

    def _key_pressed(self, entry: CallEntry, event: dict) -> None:
        """ChannelDtmfReceived on a caller's channel: on to its worker, never waiting for it;
        once per press (supervisor/key_presses.py)."""
        try:
            duration = int(event.get("duration_ms") or 0)
        except (TypeError, ValueError):
            duration = 0
        if not entry.keys.is_new(str(event.get("digit", "")), duration, event_time(event, time.time())):
            log.debug(
                "key %s: the same press reported again", event.get("digit"), extra={"call_id": entry.call_id}
            )
            return
        try:
            message = call_events.dtmf(str(event.get("digit", "")))
        except call_events.EventError as exc:
            log.warning("ignoring a key press event: %s", exc, extra={"call_id": entry.call_id})
            return
        if entry.events is not None and call_events.send(entry.events, message):
            entry.key_presses += 1
        else:
            entry.events_dropped += 1
            if entry.events_dropped == 1:
                log.warning("a key press could not be passed to the worker", extra={"call_id": entry.call_id})

    def _on_connect(self) -> None:
        """A new connect of the events link: reconcile now; the first one makes us ready."""
        self.reconciler.state.after_connect()
        self.reconciler.run()
        if not self.ready:
            self.ready = True
            systemd.notify("READY=1")
        self._notify_status()

    # --- signals (supervisor/stopping.py): handlers record, the loop acts

    def _handle_signals(self) -> None:
        reload = False
        for signum in self.stopping.take_signals():
            if signum in STOP_SIGNALS:
                if not self.stopping.draining:
                    self._begin_drain(signal_name(signum))
                elif self.stopping.hard_stop_at is None:
                    self._hard_stop(signal_name(signum))
            elif signum == signal.SIGHUP:
                reload = True  # several at once are one reload
        if reload:
            self._guarded(self._reload)

    def _begin_drain(self, why: str) -> None:
        self.stopping.begin_drain()
        systemd.notify("STOPPING=1")
        self._guarded(self.alerting.stopping, why)
        log.info(
            "%s: no new calls; waiting up to %d s for %d live calls (send it again to end them now)",
            why,
            self.settings.drain_timeout_seconds,
            len(self.calls),
        )

    def _hard_stop(self, why: str) -> None:
        self.stopping.begin_hard_stop()
        log.warning("%s again: ending %d calls now", why, len(self.calls))
        for entry in self.live_calls():
            entry.request_end(EndReason.SHUTDOWN)
            self._signal_worker(entry, signal.SIGTERM)

    # --- children: helpers and workers

    def _helper(self, kind: str, work, on_done=None, key: str = ""):
        """Start a helper with nothing of the supervisor's and no call's audio."""
        return self.helpers.start(
            kind,
            work,
            on_done,
            key=key,
            close_fds=self._fds_for_children(),
            close_segments=[entry.segment for entry in self.calls.values()],
        )

    def _spawn_worker(self, info, segment) -> int:
        """Fork a call's worker (call_worker/process.py) with nothing of the supervisor's and
        no other call's audio, and the call's event channel (shm_ring/call_events.py), whose
        end `_admit` gives the call's entry; its pid. Raises OSError when the fork fails."""
        others = [entry.segment for entry in self.calls.values()]
        ours, theirs = call_events.pair()
        try:
            pid = process.spawn(
                self.settings,
                info,
                segment,
                close_fds=[*self._fds_for_children(), ours.fileno()],
                close_segments=others,
                events=theirs,
            )
        except OSError:
            ours.close()
            theirs.close()
            raise
        self._events_of[info.call_id] = ours
        return pid

    def _start_teardown(self, call_id: str, targets) -> None:
        started = self._helper(
            "teardown", lambda: asterisk_work.teardown(self.settings, targets, call_id), key=call_id
        )
        if started is None:  # what is left is found by the next reconciliation
            self.reconciler.state.after_connect()

    def _reap(self) -> None:
        """Collect every exited child: workers (their call is finished by supervisor/reaping.py),
        helpers (supervisor/helpers.py), and children that are neither (the multiprocessing
        resource tracker), which are tolerated. Each child's handling is guarded on its own:
        one that cannot be described or cleaned up stops no other."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.by_pid.pop(pid, None)
            if entry is not None:
                self._guarded(self._finish_call, entry, status)
            elif not self.helpers.reaped(pid, status):
                log.debug("reaped child %d (%s), not ours to track", pid, describe_status(status))

    def _finish_call(self, entry: CallEntry, status: int) -> None:
        self.ends.finish(entry, status)
        self._notify_status()

    def _fds_for_children(self) -> list[int]:
        fds = self.stopping.fds() + self.helpers.fds()
        fds += [entry.events.fileno() for entry in self.calls.values() if entry.events is not None]
        fds += [sock.fileno() for sock in self._events_of.values()]
        if self.link.events.sock is not None:
            fds.append(self.link.events.fileno())
        if self.control is not None:
            fds.extend(self.control.fds())
        selector_fd = getattr(self.selector, "fileno", lambda: -1)()
        if selector_fd >= 0:
            fds.append(selector_fd)
        return fds

    def _signal_worker(self, entry: CallEntry, signum: int) -> None:
        try:
            os.kill(entry.pid, signum)
        except ProcessLookupError:
            pass

    # --- once a second

    def _tick(self) -> None:
        """Once a second. Each part is guarded on its own: a bug in one stops no other, and
        the watchdog (sent by the loop after the tick) keeps going."""
        now = time.monotonic()
        self._guarded(self.link.events.check_time, now)
        self._guarded(self.link.sync)
        self._guarded(self.reconciler.run)
        self._guarded(self.agents.check_models, now)
        self._guarded(self.agents.count_summaries, now)
        for keeper in self.keepers:
            self._guarded(keeper.tick, now, self._helper)
        connected = self.link.events.state is LinkState.CONNECTED
        self._guarded(self.alerting.watch_helpers, now, round(self.started_wall, 3))
        self._guarded(self.alerting.tick, now, connected, self.agents.model_shutdown_dates, self.counts.busy)
        self.helpers.kill(("reconcile",), older_than=RECONCILE_LIMIT)
        for _ in self.helpers.kill(("alert",), older_than=ALERT_HELPER_LIMIT):  # later alerts must not wait
            log.warning(
                "an alert helper ran over %.0f s and was killed; its notices count as not sent",
                ALERT_HELPER_LIMIT,
            )
        # A turn-away helper is bounded by its requests' timeouts; one hung past them anyway
        # (a name lookup that never returns) must not stop every later caller's.
        self.helpers.kill(("refuse",), older_than=TURN_AWAY_LIMIT)
        self.helpers.kill(("busy",), older_than=PROMPT_HELPER_LIMIT)
        self._guarded(self.desk.pump)  # callers whose helper could not start
        self._guarded(self.admission.caller_limit.prune, now)
        live = self.live_calls()
        self._guarded(self.health.plan_uss, live, now)
        for entry in live:
            self._guarded(self._watch_call, entry, now)
        if self.calls and self.stopping.drain_expired(now):
            log.info("drain timeout: ending %d calls", len(self.calls))
            for entry in self.live_calls():
                entry.request_end(EndReason.SHUTDOWN)
        self.recent.forget_old(now)
        if self.control is not None:
            self._guarded(self.control.tick)
        self._notify_status()

    def _watch_call(self, entry: CallEntry, now: float) -> None:
        entry.observe()
        problem = self.health.sample(entry)
        if problem and entry.request_end(EndReason.WORKER_CRASHED):
            log.error("ending the call: %s", problem, extra={"call_id": entry.call_id})
        ending_since = entry.ending_since()
        if ending_since is None or entry.killed_at is not None:
            return
        if self.stopping.hard_stop_at:
            grace = HARD_STOP_GRACE
        elif entry.header.get(Slot.END_REQUEST) == EndReason.WORKER_CRASHED:
            grace = STUCK_GRACE
        else:
            grace = END_GRACE
        if now - ending_since > grace:
            entry.killed_at = now
            log.error(
                "worker %d did not end within %.0f s; killing it",
                entry.pid,
                grace,
                extra={"call_id": entry.call_id},
            )
            self._signal_worker(entry, signal.SIGKILL)

    def _notify_status(self) -> None:
        state = "draining, " if self.stopping.draining else ""
        systemd.notify(f"STATUS={state}{len(self.calls)} live calls, ARI {self.link.events.state.value}")

    # --- control socket

    def _handle_request(self, request: dict, uid: int) -> dict:
        name = request.get("cmd")
        command = COMMANDS.get(name) if isinstance(name, str) else None
        if command is None:
            return {
                "ok": False,
                "error": f"unknown command {str(name)[:40]!r}; known: {', '.join(COMMANDS)}",
            }
        try:
            return command.execute(self, request)
        except Exception as exc:  # a bad request must never take the supervisor down
            log.exception("control command %s failed", command.NAME)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    # --- the end

    def _shutdown(self) -> None:
        for entry in self.live_calls():  # only after an exception in the loop
            self._signal_worker(entry, signal.SIGKILL)
            try:
                _, status = os.waitpid(entry.pid, 0)
            except ChildProcessError:
                status = 0
            self.by_pid.pop(entry.pid, None)
            self._guarded(self._finish_call, entry, status)
        # Listings and lookups are of no use any more; teardown and busy helpers finish
        # their work on their own (they do not die with us).
        self.helpers.kill(
            ("reconcile", "resolve", "models", "drainer", "web", "webhooks", "summaries", "budgets")
        )
        self.stopping.close()
        if self.control is not None:
            self.control.close()
        self.link.events.close()
        self.alerting.stopped()  # a clean exit: the next start is not "after an unclean stop"
        log.info("callbridge stopped: %d calls taken, %d failed", self.counts.taken, self.counts.failed)
