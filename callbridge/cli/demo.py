"""`callbridge demo`: the whole system on one machine, on the built-in simulators.

Starts the simulated Asterisk and Realtime server, runs the real supervisor
(`callbridge run`) against them, places a few calls whose callers speak, listen and talk
over a reply, shows live status while they run, then a per-call summary measured on the
callers' side (what they said and heard, reply latency, pacing, barge-ins), what was said
on each call as text, and the commands to look at its calls afterwards. No Asterisk, no
OpenAI key, no network.

It is self-contained: its own ports (metrics, RTP), control socket, state directory and
call history, so it runs beside an installed service without touching it; anything the
service logged as an error is shown on the terminal, not only in its log file.

On a terminal the status table is redrawn in place (rich's Live, which typer ships);
when stdout is a file or a pipe, one table is printed: the last sample with calls live.
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from rich.console import Console
from rich.live import Live
from rich.text import Text

from shm_ring import wire
from simulators.clients import AsteriskSim, RealtimeSim, simulated_env, stop_process
from supervisor.commands import status as status_command

LOUD = 1000
ARI_USER, ARI_PASSWORD, API_KEY = "demo", "demo-ari-password", "sk-demo-key"
LEGEND = (
    "frames in/out: 20 ms RTP frames from/to the caller.  fill: reply audio queued for the\n"
    "caller, in bytes (G.711: 160 bytes = 20 ms).  underruns: 20 ms frames for which the reply\n"
    "was late (the caller heard a gap).  barge-ins: times the caller talked over the agent."
)


class StatusView:
    """`callbridge status` during the demo: one table, redrawn in place on a terminal.

    Elsewhere (a pipe, a file, a test) redrawing would leave a copy per second, so only the
    last sample with calls live is kept and printed once, through `echo`, when they ended.
    """

    def __init__(self, console: Console, echo) -> None:
        self.echo = echo
        self.kept: str | None = None  # the last sample with calls live
        self.live = Live(console=console, auto_refresh=False) if console.is_terminal else None

    def __enter__(self) -> StatusView:
        if self.live is not None:
            self.live.start()
        return self

    def show(self, status: dict) -> None:
        text = status_command.render(status)
        if status["calls"] or self.kept is None:
            self.kept = text
        if self.live is not None:
            self.live.update(self._on_terminal(text), refresh=True)

    def __exit__(self, *exc) -> None:
        if self.live is not None:  # leave the last sample with calls live on the screen
            if self.kept is not None:
                self.live.update(self._on_terminal(self.kept), refresh=True)
            self.live.stop()
            self.echo("")
        elif self.kept is not None:
            self.echo(f"{self.kept}\n\n{LEGEND}\n")

    @staticmethod
    def _on_terminal(text: str) -> Text:
        # no_wrap: a wrapped row would break the columns; a narrow terminal loses the right edge
        return Text(f"{text}\n\n{LEGEND}", no_wrap=True, overflow="ellipsis")


def caller_script(seconds: float, index: int) -> list[dict]:
    """Speak, listen to the reply, then talk over the next reply (a barge-in), then listen."""
    script = [
        {"silence": 300 + 200 * index},
        {"say": 1200},
        {"silence": 3500},
        {"say": 900, "hz": 520},
        {"silence": 1200},
        {"say": 700, "hz": 610},
    ]
    used = sum(step.get("say", 0) + step.get("silence", 0) for step in script)
    script.append({"silence": max(2500, int(seconds * 1000) - used)})
    script.append({"hangup": True})
    return script


def _analyse(record: dict) -> dict:
    received = record.get("received", [])
    loud = [row for row in received if row[7] >= LOUD]
    gaps = [(b[0] - a[0]) * 1000 for a, b in zip(loud, loud[1:], strict=False) if (b[0] - a[0]) < 0.1]
    said_ms = sum(frames * 20 for _, frames in record.get("utterances", []))
    latency = None
    sends = record.get("send_times", [])
    if record.get("utterances") and loud and sends:
        first, frames = record["utterances"][0]
        end_index = first + frames - 1
        if end_index < len(sends):
            after = [row[0] for row in loud if row[0] > sends[end_index]]
            latency = (after[0] - sends[end_index]) * 1000 if after else None
    deviations = sorted(abs(g - 20) for g in gaps)
    return {
        "said_ms": said_ms,
        "heard_ms": len(loud) * 20,
        "reply_latency_ms": latency,
        "gap_p50_ms": statistics.median(gaps) if gaps else None,
        "gap_dev_p99_ms": deviations[int(0.99 * (len(deviations) - 1))] if deviations else None,
        "gap_dev_max_ms": deviations[-1] if deviations else None,
        "bursts": sum(1 for g in gaps if g < 10),
        "ended_by": record.get("hangup_by") or "-",
    }


def _summaries(log_text: str) -> dict[str, dict]:
    found = {}
    for line in log_text.splitlines():
        # Any logger name: the line is the supervisor's, whichever of its modules writes it.
        match = re.search(r"\[([^\]]+)\] supervisor\.[\w.]+: call summary: (.*)$", line)
        if match:
            found[match.group(1)] = dict(pair.split("=", 1) for pair in match.group(2).split())
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _free_rtp_range(size: int = 200) -> str:
    """A run of UDP ports nobody is bound to now, away from the service's default range."""
    import socket

    for start in range(41000, 60000, size):
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as last,
            ):
                first.bind(("127.0.0.1", start))
                last.bind(("127.0.0.1", start + size - 1))
        except OSError:
            continue
        return f"{start}-{start + size - 1}"
    return "41000-41199"


def _problems(log_text: str) -> list[str]:
    """What the service logged as an error: shown on the terminal, not left in a file."""
    return [line for line in log_text.splitlines() if re.search(r" (ERROR|CRITICAL) ", line)]


def _conversation(workdir: Path, call_id: str) -> list[str]:
    """What was said on the call, as the worker's record has it (CALL_RECORDS_DIR)."""
    import json

    try:
        record = json.loads((workdir / "records" / f"{call_id}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ["    (no record)"]
    lines = []
    for turn in record.get("transcript", []):
        text = turn.get("text") or ""
        if turn.get("interrupted"):
            text += f"  [cut off; the caller heard: {turn.get('heard') or ''!r}]"
        lines.append(f"    {turn.get('role', '?'):>6}: {text}")
    return lines or ["    (nothing was said)"]


def _wait_for_the_history(spool_dir: Path, limit: float = 10.0) -> None:
    """Until the drainer stored every record (the commands printed at the end read them)."""
    from records.spool import pending_records

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        waiting = [p for d in spool_dir.glob("*") if d.is_dir() for p in pending_records(d)]
        if not waiting:
            return
        time.sleep(0.1)


def _commands(workdir: Path) -> list[str]:
    program = Path(sys.executable).with_name("callbridge")
    cli = str(program) if program.exists() else "callbridge"
    env_file = workdir / "demo.env"
    return [
        f"  {cli} calls --env-file {env_file}",
        f"  {cli} calls show CALL_ID --env-file {env_file}",
        f"  {cli} usage --env-file {env_file}",
        f"  {cli} web serve --env-file {env_file}",
    ]


def _demo_user(workdir: Path, env: dict) -> str:
    """The demo's own dashboard user `demo`, an admin with a fresh password (returned), in
    the demo's own records database."""
    password = secrets.token_urlsafe(9)
    subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "web", "add-user", "demo", "--role", "admin"]
        + ["--password-stdin", "--env-file", str(workdir / "demo.env")],
        env=env,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return password


def run_demo(calls: int, seconds: float, echo=print, console: Console | None = None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="callbridge-demo-"))
    asterisk = realtime = service = None
    try:
        asterisk = AsteriskSim(username=ARI_USER, password=ARI_PASSWORD, quiet=True)
        realtime = RealtimeSim("--reply-ms", "3000", "--greeting-ms", "1200", api_key=API_KEY, quiet=True)

        socket_path = str(workdir / "control.sock")
        metrics, web = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
        own = {  # nothing of an installed service's: its ports, socket, state and history stay its own
            "CONTROL_SOCKET_PATH": socket_path,
            "LOG_FILE_PATH": str(workdir / "callbridge.log"),
            "SHM_PREFIX": f"callbridge-demo{os.getpid()}",
            "CALL_RECORDS_DIR": str(workdir / "records"),
            "STATE_DIR": str(workdir),
            "METRICS_LISTEN": metrics,
            "WEB_LISTEN": web,
            "RTP_PORT_RANGE": _free_rtp_range(),
            "LOG_UTTERANCES": "true",
        }
        # The demo's whole configuration, in its own file: the service reads that one and no
        # other (without --env-file it would find /etc/callbridge/callbridge.env, and take the
        # installed service's database, alerts and agents). The commands printed at the end
        # read it too.
        settings = simulated_env(asterisk, realtime, **own)
        (workdir / "demo.env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        os.chmod(workdir / "demo.env", 0o600)
        env = {**os.environ, **settings}
        env.pop("NOTIFY_SOCKET", None)
        service = subprocess.Popen(
            [sys.executable, "-m", "callbridge.cli", "run", "--env-file", str(workdir / "demo.env")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=workdir,
        )
        ari = asterisk.base
        deadline = time.monotonic() + 10
        while "openai-app" not in requests.get(f"{ari}/sim/state", timeout=5).json()["apps"]:
            if time.monotonic() > deadline or service.poll() is not None:
                echo(
                    "callbridge did not connect to the simulated Asterisk; log:\n"
                    + (workdir / "callbridge.log").read_text()
                )
                return 1
            time.sleep(0.05)
        password = _demo_user(workdir, env)
        echo(
            f"callbridge is running against the simulators; placing {calls} calls of about {seconds:.0f} s\n"
            f"while it runs: {_commands(workdir)[0].split()[0]} status --socket {socket_path}, "
            f"metrics at http://{metrics}/metrics,\n"
            f"the dashboard at http://{web}/ (user demo, password {password}: the demo's own)\n"
        )
        ids = []
        for index in range(calls):
            reply = requests.post(
                f"{ari}/sim/calls",
                json={"script": caller_script(seconds, index), "caller": f"+1555010{index:04d}"},
                timeout=5,
            )
            ids.append(reply.json()["channel_id"])
        deadline = time.monotonic() + seconds + 20
        with StatusView(console or Console(), echo) as view:
            while time.monotonic() < deadline:
                time.sleep(1.0)
                try:
                    status = wire.request(socket_path, {"cmd": "status"})
                except (OSError, wire.WireError):
                    continue
                view.show(status)
                records = requests.get(f"{ari}/sim/calls", timeout=5).json()
                if all(r["hangup"] is not None for r in records) and not status["calls"]:
                    break
        time.sleep(0.3)
        summaries = _summaries((workdir / "callbridge.log").read_text())
        ok = True
        echo("per-call summary (measured at the simulated callers):")
        echo(
            f"{'call':22} {'said':>7} {'heard':>7} {'reply after':>11} {'gap p50':>9} {'dev p99':>9} "
            f"{'dev max':>9} {'bursts':>6} {'barge-ins':>9}  end"
        )
        for call_id in ids:
            record = requests.get(f"{ari}/sim/calls/{call_id}", timeout=10).json()
            figures = _analyse(record)
            summary = summaries.get(call_id, {})
            echo(
                f"{call_id:22} {figures['said_ms'] / 1000:5.1f} s {figures['heard_ms'] / 1000:5.1f} s "
                f"{_ms(figures['reply_latency_ms'], 0):>11} {_ms(figures['gap_p50_ms']):>9} "
                f"{_ms(figures['gap_dev_p99_ms']):>9} {_ms(figures['gap_dev_max_ms']):>9} "
                f"{figures['bursts']:>6} {summary.get('barge_ins', '?'):>9}  {summary.get('end', '?')}"
            )
            ok &= figures["heard_ms"] > 0 and summary.get("end") == "caller_hangup" and figures["bursts"] == 0
        echo("\n'reply after': from the end of the caller's first sentence to the first reply audio, which")
        echo("includes the simulated server's 500 ms end-of-speech detection. 'gap': time between two")
        echo("reply frames (20 ms when paced right); 'dev': how far the gaps strayed from 20 ms.")
        echo("'bursts': gaps under 10 ms (frames sent too early).")
        echo("\nwhat was said (the simulated callers speak tones; the simulated Realtime server")
        echo("transcribes them by their length and answers with a sentence):")
        for call_id in ids:
            echo(f"  {call_id}")
            for line in _conversation(workdir, call_id):
                echo(line)
        _wait_for_the_history(workdir / "spool")
        stop_process(service)
        service = None
        problems = _problems((workdir / "callbridge.log").read_text())
        if problems:
            ok = False
            echo(
                f"\nthe service logged {len(problems)} errors (all of its log: {workdir / 'callbridge.log'}):"
            )
            for line in problems[:20]:
                echo(f"  {line}")
        echo("\nlook at the demo's calls, stored in its own call history (the last command serves the")
        echo(f"dashboard again at http://{web}/, user demo):")
        for line in _commands(workdir):
            echo(line)
        echo(f"logs and call records: {workdir}")
        return 0 if ok else 1
    finally:
        stop_process(service)
        for sim in (realtime, asterisk):
            if sim is not None:
                sim.stop()


def _ms(value: float | None, decimals: int = 1) -> str:
    return "-" if value is None else f"{value:.{decimals}f} ms"
