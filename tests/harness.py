"""Test harness: the simulators as real subprocesses, and a stand-in for the supervisor's
part of a call (events, segment, fork, reap) so the worker can be tested on its own."""

from __future__ import annotations

import base64
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import websocket

from call_worker import process
from call_worker.call import CallInfo
from callbridge import agents
from callbridge import config as cfg
from shm_ring import CallSegment, EndReason, Slot, call_events, segment_name
from simulators import clients
from supervisor.calls import signal_end

# Workers started from these settings spool their records here (records/spool.py).
TEST_STATE_DIR = tempfile.mkdtemp(prefix="callbridge-test-state-")

REPO = Path(__file__).resolve().parents[1]
ARI_USER, ARI_PASSWORD, API_KEY = "asterisk", "sim-ari-password", "sk-sim-test-key"


class AsteriskSim(clients.AsteriskSim):
    def __init__(self, *args: str) -> None:
        super().__init__(*args, username=ARI_USER, password=ARI_PASSWORD)


class RealtimeSim(clients.RealtimeSim):
    def __init__(self, *args: str) -> None:
        super().__init__(*args, api_key=API_KEY)


# The worker tests' Realtime server: their counts of frames are written for 1.5 s replies
# (75 frames) and a 1 s greeting (50 frames).
SHORT_REPLIES = ("--reply-ms", "1500", "--greeting-ms", "1000")


def short_replies():
    """A module's `realtime` fixture of replies of 1.5 s and a greeting of 1 s:
    `realtime = pytest.fixture(short_replies, scope="module", name="realtime")`."""
    yield from started(RealtimeSim(*SHORT_REPLIES))


def last_session(rt: RealtimeSim) -> dict:
    return rt.sessions()[-1]


def started(sim):
    """For fixtures: `yield from started(RealtimeSim(...))` runs it for the fixture's scope."""
    try:
        yield sim
    finally:
        sim.stop()


def settings_for(asterisk: AsteriskSim, realtime: RealtimeSim, **overrides: str) -> cfg.Settings:
    overrides.setdefault("STATE_DIR", TEST_STATE_DIR)  # call records' spool: never the machine's
    env = clients.simulated_env(asterisk, realtime, RTP_PORT_RANGE="30000-39999", **overrides)
    return cfg.load(env_file=None, environ=env).settings


@dataclass
class WorkerCall:
    channel_id: str
    segment: CallSegment
    pid: int
    exit_status: int | None = None
    events: list[dict] = field(default_factory=list)
    channel: object = None  # the supervisor's end of the call's event channel (shm_ring/call_events.py)


class MiniSupervisor:
    """What the supervisor does for a call, reduced to what worker tests need: listen to
    ARI events, create the segment, start the worker through the real spawn path
    (`call_worker.process.spawn`: its fork, descriptor closing, other calls' segments
    unmapped, signal set-up and exit codes), pass on the caller's hang-up, reap, unlink.

    With AGENTS_FILE set it picks the number's agent as the supervisor does (hours and
    fallbacks aside: a number without an agent gets the environment's). It differs from
    supervisor/service.py on purpose in two ways: it reaps its own pids,
    never `waitpid(-1)`, because the simulators are children of the test process too; and
    it keeps a reaped call's segment mapped (unlinked, as the supervisor does) until
    `close()`, so that tests can read the call's final counters."""

    def __init__(self, asterisk: AsteriskSim, settings: cfg.Settings, prefix: str) -> None:
        self.asterisk = asterisk
        self.settings = settings
        self.prefix = prefix
        auth = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{asterisk.port}/ari/events?app={settings.ari_app_name}&subscribeAll=false",
            header=[f"Authorization: Basic {auth}"],
            timeout=5,
        )
        self.calls: dict[str, WorkerCall] = {}
        self.events: list[dict] = []
        # Who answers, as the supervisor picks: the agents file's agent for the number, if any.
        self.book = agents.load_book(settings) if settings.agents_file else None

    def pump(self, timeout: float = 0.01) -> None:
        self.ws.settimeout(timeout)
        while True:
            try:
                event = json.loads(self.ws.recv())
            except (websocket.WebSocketTimeoutException, TimeoutError):
                return
            self.events.append(event)
            channel = (event.get("channel") or {}).get("id", "")
            if event["type"] == "StasisStart" and not event["channel"]["name"].startswith("UnicastRTP/"):
                self._start(event["channel"])
            elif event["type"] == "ChannelDtmfReceived" and channel in self.calls:
                call_events.send(self.calls[channel].channel, call_events.dtmf(event["digit"]))
            elif event["type"] == "StasisEnd" and channel in self.calls:
                call = self.calls[channel]
                if call.exit_status is None:
                    call.segment.header.set(Slot.END_REQUEST, EndReason.CALLER_HANGUP)
                    signal_end(call.pid)
            self.ws.settimeout(0.001)

    def _start(self, channel: dict) -> None:
        segment = CallSegment.create(segment_name(channel["id"], self.prefix))
        dialled = channel["dialplan"]["exten"]
        agent = self.book.pick(dialled, datetime.now(UTC)) if self.book is not None else None
        info = CallInfo(channel["id"], channel["caller"]["number"], dialled, channel["name"])
        if agent is not None:
            info = replace(info, agent=agent)
        others = [call.segment for call in self.calls.values()]  # still mapped here, reaped or not
        ours, theirs = call_events.pair()
        fds = [self.ws.sock.fileno(), ours.fileno(), *(c.channel.fileno() for c in self.calls.values())]
        pid = process.spawn(self.settings, info, segment, close_fds=fds, close_segments=others, events=theirs)
        self.calls[channel["id"]] = WorkerCall(channel["id"], segment, pid, channel=ours)

    def place(self, script: list[dict], timeout: float = 5.0) -> WorkerCall:
        channel_id = self.asterisk.place_call(script, app=self.settings.ari_app_name)
        self.wait(lambda: channel_id in self.calls, timeout)
        return self.calls[channel_id]

    def reap(self) -> None:
        for call in self.calls.values():
            if call.exit_status is None:
                pid, status = os.waitpid(call.pid, os.WNOHANG)
                if pid:
                    call.exit_status = status
                    call.segment.unlink()

    def wait(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.01)
            self.reap()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")

    def wait_ended(self, call: WorkerCall, timeout: float = 15.0) -> int:
        self.wait(lambda: call.exit_status is not None, timeout)
        return os.waitstatus_to_exitcode(call.exit_status)

    def close(self) -> None:
        for call in self.calls.values():
            if call.exit_status is None:
                try:
                    os.kill(call.pid, signal.SIGKILL)
                    os.waitpid(call.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            call.segment.close()
            call.segment.unlink()  # False when reaped already: unlinking is idempotent
            call.channel.close()
        self.ws.close()
