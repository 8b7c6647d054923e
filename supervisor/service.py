"""The supervisor: one process, one thread, one `selectors` loop.

It listens to ARI events, forks one worker per call, reaps and cleans up after them,
serves the control socket, samples the workers' health and talks to systemd. It never
touches audio. Signal handlers only record the signal; the loop (woken through
`signal.set_wakeup_fd`) does the work, so reaping, logging and forking all happen here
and the process holds no threads when it forks.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time

from call_worker import process
from call_worker.call import CallInfo
from callbridge import __version__, ids
from callbridge.ari_rest import AriError, AriRest
from callbridge.config import Settings
from shm_ring import CallSegment, EndReason, SegmentExistsError, segment_name, start_tracker, sweep
from supervisor import cleanup, systemd
from supervisor.ari_events import AriEvents, LinkState
from supervisor.calls import CallEntry, Phase
from supervisor.commands import COMMANDS
from supervisor.control import ControlServer
from supervisor.health import HealthMonitor
from supervisor.reconcile import Reconciliation
from supervisor.stopping import STOP_SIGNALS, Stopping

log = logging.getLogger(__name__)

TICK = 1.0
END_GRACE = 10.0  # seconds a worker has to exit after an end request before SIGKILL
HARD_STOP_GRACE = 5.0
BUSY_PROMPT_LIMIT = 10.0


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.selector = selectors.DefaultSelector()
        self.ari = AriRest(
            settings.ari_base_url, settings.asterisk_username, settings.asterisk_password, timeout=1.0
        )
        self.events = AriEvents(settings)
        self.reconciliation = Reconciliation()
        self.ari_fd = -1
        self.calls: dict[str, CallEntry] = {}
        self.by_pid: dict[int, CallEntry] = {}
        self.busy: dict[str, float] = {}  # channel id -> when to hang up if the prompt never ends
        self.cleanup = cleanup.AsteriskCleanup(self.ari)
        self.health = HealthMonitor()
        self.started = time.monotonic()
        self.calls_taken = self.calls_failed = self.calls_busy = 0
        self.stopping = Stopping(settings.drain_timeout_seconds)
        self.ready = False
        self.control: ControlServer | None = None

    # --- public, for the commands

    def live_calls(self) -> list[CallEntry]:
        return list(self.calls.values())

    def find_call(self, call_id: str) -> CallEntry | None:
        return self.calls.get(call_id)

    def summary(self) -> dict:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 1),
            "ari": self.events.state.value,
            "ari_connects": self.events.connects,
            "draining": self.stopping.draining,
            "calls_live": len(self.calls),
            "calls_taken": self.calls_taken,
            "calls_failed": self.calls_failed,
            "calls_rejected_busy": self.calls_busy,
            "max_concurrent_calls": self.settings.max_concurrent_calls,
            "ari_last_error": self.events.last_error,
        }

    # --- the loop

    def run(self) -> int:
        start_tracker()
        removed = sweep(self.settings.shm_prefix)
        if removed:
            log.info("removed %d shared-memory segments left by an earlier run", len(removed))
        self.control = ControlServer(self.settings.control_socket_path, self.selector, self._handle_request)
        self.stopping.install(self.selector)
        log.info(
            "callbridge %s started (pid %d): ARI %s, app %s, up to %d calls",
            __version__,
            os.getpid(),
            self.settings.ari_base_url,
            self.settings.ari_app_name,
            self.settings.max_concurrent_calls,
        )
        next_tick = time.monotonic()
        try:
            while not self._finished():
                now = time.monotonic()
                if self.events.due(now):
                    self._connect_ari()
                wait = max(0.0, min(next_tick, self._next_ari_attempt()) - time.monotonic())
                for key, mask in self.selector.select(wait):
                    self._guarded(self._dispatch, key.data, mask)
                self._handle_signals()
                self._reap()
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + TICK
                    self._guarded(self._tick)
        finally:
            self._shutdown()
        return 0

    def _guarded(self, step, *args) -> None:
        """A bug or a bad input in one step is logged; the loop, and every call, go on."""
        try:
            step(*args)
        except Exception:
            log.exception("supervisor: %s failed; carrying on", getattr(step, "__name__", step))

    def _next_ari_attempt(self) -> float:
        return self.events.next_attempt if self.events.state is LinkState.DISCONNECTED else float("inf")

    def _finished(self) -> bool:
        stopping = self.stopping
        return (stopping.draining or stopping.hard_stop_at is not None) and not self.calls

    def _dispatch(self, data, mask: int) -> None:
        kind, obj = data
        if kind == "wakeup":
            self.stopping.on_wakeup()
        elif kind == "ari":
            for event in self.events.read():
                self._guarded(self._on_ari_event, event)
            if self.events.state is LinkState.DISCONNECTED:
                self._forget_ari_fd()
        elif kind == "control":
            self.control.accept()
        elif kind == "client":
            self.control.on_event(obj, mask)

    # --- signals (supervisor/stopping.py): handlers record, the loop acts

    def _handle_signals(self) -> None:
        for signum in self.stopping.take_signals():
            if signum in STOP_SIGNALS:
                if not self.stopping.draining:
                    self._begin_drain(signal.Signals(signum).name)
                elif self.stopping.hard_stop_at is None:
                    self._hard_stop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP:
                log.info("SIGHUP: configuration is read at start; restart the service to apply changes")

    def _begin_drain(self, why: str) -> None:
        self.stopping.begin_drain()
        systemd.notify("STOPPING=1")
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

    # --- ARI

    def _connect_ari(self) -> None:
        if not self.events.connect():
            return
        self.ari_fd = self.events.fileno()
        self.selector.register(self.ari_fd, selectors.EVENT_READ, ("ari", None))
        self.reconciliation.after_connect(self)
        if not self.ready:
            self.ready = True
            systemd.notify("READY=1")
        self._notify_status()

    def _forget_ari_fd(self) -> None:
        if self.ari_fd >= 0:
            try:
                self.selector.unregister(self.ari_fd)
            except (KeyError, ValueError):
                pass
            self.ari_fd = -1

    def _on_ari_event(self, event: dict) -> None:
        kind = event["type"]
        channel = event.get("channel") if isinstance(event.get("channel"), dict) else {}
        channel_id = str(channel.get("id", ""))
        if kind == "StasisStart":
            if ids.is_our_channel(channel):
                return  # our externalMedia channel entering the app: not a call
            self.admit(channel)
        elif kind in ("StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"):
            entry = self.calls.get(channel_id)
            if entry is not None and not entry.caller_gone:
                entry.caller_gone = True
                entry.request_end(EndReason.CALLER_HANGUP)
            if kind != "ChannelHangupRequest":
                self.busy.pop(channel_id, None)  # a turned-away caller left by itself
        elif kind == "PlaybackFinished":
            playback = event.get("playback")
            playback_id = str(playback.get("id", "")) if isinstance(playback, dict) else ""
            target = playback_id.removeprefix(f"{ids.PREFIX}busy-")
            if target != playback_id and target in self.busy:
                self.busy[target] = 0.0  # hang up at the next tick
        elif kind == "ApplicationReplaced":
            log.error(
                "another program connected to ARI as app %r and took its events; reconnecting",
                self.settings.ari_app_name,
            )

    # --- calls

    def admit(self, channel: dict) -> None:
        channel_id = str(channel.get("id", ""))
        if channel_id in self.calls or channel_id in self.busy:
            return
        if not ids.valid_call_id(channel_id):
            # The id names a shared-memory segment, ARI paths and a record file: refuse
            # anything but Asterisk's own id alphabet rather than escape it everywhere.
            log.error("refusing a channel with an unusable id %r", channel_id[:80])
            return
        if self.stopping.draining or len(self.calls) >= self.settings.max_concurrent_calls:
            self._turn_away(channel_id, "draining" if self.stopping.draining else "at MAX_CONCURRENT_CALLS")
            return
        caller = str(_field(channel, "caller", "number"))
        dialled = str(_field(channel, "dialplan", "exten"))
        info = CallInfo(channel_id, caller, dialled, str(channel.get("name", "")), time.monotonic_ns())
        try:
            segment = CallSegment.create(segment_name(channel_id, self.settings.shm_prefix))
        except SegmentExistsError:
            log.error("a segment for call %s exists already; not starting it twice", channel_id)
            return
        except OSError as exc:  # /dev/shm full, or limits
            log.error("cannot create the call's shared memory (%s); turning it away", exc)
            self._turn_away(channel_id, "no shared memory")
            return
        others = [entry.segment for entry in self.calls.values()]
        try:
            pid = process.spawn(
                self.settings,
                info,
                segment,
                close_fds=self._fds_for_children(),
                close_segments=others,
                in_child=[self.ari.close],
            )
        except OSError as exc:  # fork failed: EAGAIN (process limit), ENOMEM
            segment.destroy()
            log.error("cannot start a worker (%s); turning the call away", exc, extra={"call_id": channel_id})
            self._turn_away(channel_id, "no worker")
            return
        entry = CallEntry(channel_id, caller, dialled, info.channel_name, pid, segment)
        self.calls[channel_id] = entry
        self.by_pid[pid] = entry
        self.calls_taken += 1
        log.info(
            "call from %s to %s (%s): worker %d",
            caller or "unknown",
            dialled or "?",
            info.channel_name,
            pid,
            extra={"call_id": channel_id},
        )
        self._notify_status()

    def _turn_away(self, channel_id: str, why: str) -> None:
        self.calls_busy += 1
        self.busy[channel_id] = time.monotonic() + BUSY_PROMPT_LIMIT
        log.warning("turning a call away (%s): busy prompt, then hang-up", why, extra={"call_id": channel_id})
        try:
            self.ari.answer(channel_id)
            self.ari.play(channel_id, self.settings.busy_prompt, f"{ids.PREFIX}busy-{channel_id}")
        except AriError as exc:
            log.warning("busy prompt failed: %s", exc, extra={"call_id": channel_id})
            self.busy[channel_id] = 0.0

    def _fds_for_children(self) -> list[int]:
        fds = self.stopping.fds()
        if self.ari_fd >= 0:
            fds.append(self.ari_fd)
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

    def _reap(self) -> None:
        """Collect every exited child; children that are not workers are tolerated."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.by_pid.pop(pid, None)
            if entry is not None:
                self._finish_call(entry, status)

    def _finish_call(self, entry: CallEntry, status: int) -> None:
        entry.exit_status = status
        counters = entry.header.snapshot()
        ending = cleanup.describe_exit(status, counters)
        if ending.crashed:
            self.calls_failed += 1
            log.error(
                "worker %d died (%s) with the call up; last counters: frames in %d out %d, state %d",
                entry.pid,
                ending.how,
                counters["frames_in"],
                counters["frames_out"],
                counters["call_state"],
                extra={"call_id": entry.call_id},
            )
        elif ending.reason is EndReason.SETUP_FAILED:
            self.calls_failed += 1
        self.cleanup.teardown(entry.call_id, hang_up_caller=not entry.caller_gone or ending.crashed)
        entry.segment.close()
        entry.segment.unlink()
        entry.phase = Phase.GONE  # worker reaped, Asterisk cleaned, segment unlinked
        del self.calls[entry.call_id]
        self.health.forget(entry.pid)
        log.info("%s", cleanup.summary_line(entry, counters, ending), extra={"call_id": entry.call_id})
        self._notify_status()

    # --- once a second

    def _tick(self) -> None:
        now = time.monotonic()
        if self.ari_fd >= 0 and self.reconciliation.due(now):
            self.reconciliation.retry(self)
        for entry in self.live_calls():
            entry.observe()
            problem = self.health.sample(entry)
            if problem and entry.request_end(EndReason.WORKER_CRASHED):
                log.error("ending the call: %s", problem, extra={"call_id": entry.call_id})
            if entry.end_requested_at and entry.killed_at is None:
                grace = HARD_STOP_GRACE if self.stopping.hard_stop_at else END_GRACE
                if now - entry.end_requested_at > grace:
                    entry.killed_at = now
                    log.error(
                        "worker %d did not end within %.0f s; killing it",
                        entry.pid,
                        grace,
                        extra={"call_id": entry.call_id},
                    )
                    self._signal_worker(entry, signal.SIGKILL)
        if self.calls and self.stopping.drain_expired(now):
            log.info("drain timeout: ending %d calls", len(self.calls))
            for entry in self.live_calls():
                entry.request_end(EndReason.SHUTDOWN)
        for channel_id, deadline in list(self.busy.items()):
            if now >= deadline:
                del self.busy[channel_id]
                try:
                    self.ari.hangup(channel_id)
                except AriError as exc:
                    log.warning(
                        "could not hang up a turned-away call: %s", exc, extra={"call_id": channel_id}
                    )
        if self.events.state is LinkState.CONNECTED:
            self.cleanup.retry(live=self.calls)
        if self.control is not None:
            self.control.tick()
        systemd.notify("WATCHDOG=1")
        self._notify_status()

    def _notify_status(self) -> None:
        state = "draining, " if self.stopping.draining else ""
        systemd.notify(f"STATUS={state}{len(self.calls)} live calls, ARI {self.events.state.value}")

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
            self._finish_call(entry, status)
        self.stopping.close()
        if self.control is not None:
            self.control.close()
        self.events.close()
        self.ari.close()
        log.info("callbridge stopped: %d calls taken, %d failed", self.calls_taken, self.calls_failed)


def _field(obj: dict, outer: str, inner: str) -> str:
    """obj[outer][inner] from an ARI event, tolerating missing or mistyped parts."""
    value = obj.get(outer)
    return str(value.get(inner, "")) if isinstance(value, dict) else ""
