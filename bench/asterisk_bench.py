"""Call set-up against the real Asterisk 22: how long after StasisStart the caller's
voice reaches callbridge, for N calls placed by sipp.

    python bench/asterisk_bench.py --calls 1,10,20 [--rate 10] [--seconds 6] [--out bench/results]

Uses the end-to-end suite's Asterisk (a Debian sid chroot with Asterisk and sipp, built
once; needs root, see tests/asterisk/) and the simulated Realtime server. Measured
outside callbridge:
- StasisStart: the Asterisk timestamp (wall clock, ms) of the caller's ChannelDialplan
  event for Stasis(), which an ARI observer (another app, subscribed to all events)
  receives: Asterisk stamps it as the channel enters the app, just before the StasisStart
  it sends callbridge, so set-up is if anything overstated by up to a millisecond;
- first frame forwarded: the kernel's capture time (tcpdump on loopback) of the first
  RTP packet Asterisk sends to the call's externalMedia port, which the observer learns
  from the externalMedia channel's name.
sipp's callers send RTP from the moment Asterisk answers them (the dialplan answers
before Stasis), so the first packet leaves Asterisk as soon as the bridge is up, and go on
sending (the voice over and over) until they hang up, as phones do.

Also measured, for the same calls:
- downlink pacing at the caller: the capture times of the RTP packets Asterisk sends to
  each sipp caller's media port (callbridge's frames, relayed by the bridge), |gap - 20 ms|
  p99 and max, bursts (gaps under 10 ms) and sequence gaps;
- CPU % of a core per call and wake-ups per call-second, counted by the kernel
  (bench/cost.py: from the call records, or at the reap for code whose records lack
  them), and psutil's CPU and USS of the workers (bench/usage.py).
Writes asterisk-bench.json and .md to --out and prints the table.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
import websocket

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "asterisk"))

import speech  # noqa: E402
from pcap import in_range, read_rtp  # noqa: E402
from real_asterisk import ARI_PASSWORD, ARI_USER, Asterisk, Capture, Ports, ensure_root  # noqa: E402

from bench import frame_times as frame_report  # noqa: E402
from bench import plain_bridge  # noqa: E402
from bench.cost import call_cost, code_env, code_location  # noqa: E402
from bench.report import caller_stream, markdown, pacing, percentile, setup_breakdown  # noqa: E402
from bench.usage import Sampler  # noqa: E402
from call_worker import frame_trace  # noqa: E402
from shm_ring import wire  # noqa: E402
from simulators.clients import RealtimeSim, callbridge_env, stop_process  # noqa: E402

PORTS = Ports()
OBSERVER_APP = "cb-bench-observer"
SETUP_TARGET_MS = 100.0
_RTCP_TYPES = range(72, 77)  # SR, RR, SDES, BYE, APP (200-204) read as an RTP payload type
_EXTERNAL_NAME = re.compile(r"UnicastRTP/[^:]+:(\d+)-")
# The externalMedia channel's id names its call: cb.<instance>.em.<call> (callbridge/ids.py),
# cb-em-<call> in code before instances.
_EXTERNAL_ID = re.compile(r"^(?:cb\.[^.]+\.em\.|cb-em-)(.+)$")


class Observer:
    """An ARI events connection of its own: channel events of every app, kernel-clock
    receive times (time.time(), the clock tcpdump stamps with)."""

    def __init__(self) -> None:
        token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{PORTS.ari}/ari/events?app={OBSERVER_APP}&subscribeAll=true",
            header={"Authorization": f"Basic {token}"},
            timeout=5,
        )
        self.stasis: dict[str, float] = {}  # caller channel id -> time its Stasis() began
        self.media_port: dict[str, int] = {}  # caller channel id -> callbridge's RTP port
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        self.ws.settimeout(None)
        while True:
            try:
                event = json.loads(self.ws.recv())
            except (websocket.WebSocketException, OSError, ValueError):
                return
            channel = event.get("channel") or {}
            if event.get("type") == "ChannelDialplan" and event.get("dialplan_app") == "Stasis":
                stamped = datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
                self.stasis.setdefault(channel.get("id", ""), stamped)
            elif event.get("type") == "ChannelCreated" and _EXTERNAL_ID.match(channel.get("id", "")):
                match = _EXTERNAL_NAME.match(channel.get("name", ""))
                if match:
                    call_id = _EXTERNAL_ID.match(channel["id"]).group(1)
                    self.media_port[call_id] = int(match.group(1))

    def close(self) -> None:
        self.ws.close()
        self.thread.join(5)


def ari_connected(control_socket: Path) -> bool:
    try:
        return wire.request(str(control_socket), {"cmd": "status"})["supervisor"]["ari"] == "connected"
    except (OSError, wire.WireError, KeyError):
        return False


def ready(baseline: str, work: Path) -> bool:
    if baseline == "plain":
        return plain_bridge.READY in (work / "callbridge.log").read_text()
    return ari_connected(work / "control.sock")


def measure(
    asterisk: Asterisk,
    realtime: RealtimeSim,
    voice: Path,
    calls: int,
    rate: int,
    work: Path,
    code_dir: Path = ROOT,
    seconds: float = 6.0,
    baseline: str = "",
    frame_times: bool = False,
) -> dict:
    """One run of N calls; `callbridge run` imports callbridge from code_dir (bench/compare.py
    passes a worktree of another ref), everything else comes from this tree. baseline
    "plain": bench/plain_bridge.py carries the calls instead, measured the same way.
    frame_times: the workers trace every frame (bench/frame_times.py), which costs them two
    syscalls a frame: CPU figures of such a run are not comparable."""
    work = Path(tempfile.mkdtemp(dir=work, prefix=f"calls-{calls}-"))  # N may repeat
    records = work / "records"
    records.mkdir()
    reap_log = work / "reaped.jsonl"
    env = {
        **os.environ,
        **code_env(code_dir, reap_log),
        **callbridge_env(
            realtime,
            PORTS.ari,
            ARI_USER,
            ARI_PASSWORD,
            CONTROL_SOCKET_PATH=str(work / "control.sock"),
            RTP_PORT_RANGE=f"{PORTS.callbridge_rtp[0]}-{PORTS.callbridge_rtp[1]}",
            SHM_PREFIX=f"callbridge-abench{os.getpid()}",
            CALL_RECORDS_DIR=str(records),
            STATE_DIR=str(records),
            LOG_LEVEL="warning",
            MAX_CONCURRENT_CALLS=str(calls + 10),
        ),
    }
    env.pop("NOTIFY_SOCKET", None)
    if frame_times:
        (work / "frames").mkdir()
        env[frame_trace.VARIABLE] = str(work / "frames")
    plain_summary = work / "plain-summary.json"
    if baseline == "plain":
        command = plain_bridge.command(env, realtime.api_key, PORTS.callbridge_rtp, plain_summary)
        location = "bench/plain_bridge.py"
    else:
        command = [sys.executable, "-m", "callbridge.cli", "run"]
        location = code_location(env, work)
    observer = Observer()
    steal_start, clock_start = psutil.cpu_times().steal, time.monotonic()
    with open(work / "callbridge.log", "w") as log_file:
        service = subprocess.Popen(command, env=env, cwd=work, stdout=log_file, stderr=log_file)
    capture = sipp = None
    try:
        deadline = time.monotonic() + 15
        while not ready(baseline, work):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{location} did not connect to the real Asterisk")
            time.sleep(0.05)
        capture = Capture(work / "setup.pcap", PORTS)
        sampler = Sampler(service.pid, {"asterisk": asterisk.proc.pid, "realtime_sim": realtime.proc.pid})
        limit = calls / rate + seconds + 120
        sipp = asterisk.sipp(
            voice, hold_ms=int(seconds * 1000), calls=calls, rate=rate, timeout_s=limit, loops=-1
        )
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.append(sipp.communicate(timeout=limit)[0]))
        reader.start()  # sipp's output is read meanwhile, so that a full pipe never stalls it
        started = time.monotonic()
        while reader.is_alive():
            sampler.sample(measure_uss=time.monotonic() - started > 3.0)
            reader.join(0.5)
        # The workers end after their callers hang up: their records and reaps are the cost.
        deadline = time.monotonic() + 30
        while sampler.sample(measure_uss=False) and time.monotonic() < deadline:
            time.sleep(0.2)
        usage = sampler.totals()
        steal = (psutil.cpu_times().steal - steal_start) / (time.monotonic() - clock_start) * 100
    finally:
        if sipp is not None and sipp.poll() is None:
            os.killpg(sipp.pid, signal.SIGKILL)
            sipp.wait()
        packets = capture.stop() if capture is not None else None
        stop_process(service, timeout=30)
        observer.close()
    arrivals: dict[int, list[float]] = {}  # callbridge's RTP port -> packet times
    inbound: dict[tuple, list[tuple[float, int]]] = {}  # Asterisk -> callbridge, per stream
    downlink: dict[tuple, list[tuple[float, int]]] = {}  # Asterisk -> a sipp caller, per stream
    egress: dict[tuple, list[tuple[float, int]]] = {}  # the service -> Asterisk, per stream
    for packet in read_rtp(packets):
        if packet.payload_type in _RTCP_TYPES:  # RTCP (on the odd ports) passes the RTP check
            continue
        if in_range(packet.dst[1], PORTS.callbridge_rtp):
            arrivals.setdefault(packet.dst[1], []).append(packet.time)
            inbound.setdefault((packet.src, packet.dst, packet.ssrc), []).append(
                (packet.time, packet.sequence)
            )
        elif in_range(packet.src[1], PORTS.callbridge_rtp):
            egress.setdefault((packet.src, packet.dst, packet.ssrc), []).append(
                (packet.time, packet.sequence)
            )
        elif in_range(packet.src[1], PORTS.asterisk_rtp) and in_range(packet.dst[1], PORTS.sipp_rtp):
            key = (packet.src, packet.dst, packet.ssrc)  # ports are reused by later calls
            downlink.setdefault(key, []).append((packet.time, packet.sequence))
    setup = []
    for call_id, started in observer.stasis.items():
        # Ports are reused by later calls: the first packet after this call's start is its.
        times = arrivals.get(observer.media_port.get(call_id), [])
        first = next((t for t in times if t >= started), None)
        if first is not None:
            setup.append((first - started) * 1000)
    worker_cpu = sampler.final_worker_cpu
    lives = sum(json.loads(path.read_text()).get("duration_s", 0.0) for path in records.glob("*.json"))
    cost = call_cost(records, reap_log, set(sampler.cpu))
    if baseline == "plain":  # one process: its own counters, over the seconds of call it carried
        cost.update(plain_bridge.cost(plain_summary))
        lives, worker_cpu = cost.pop("call_seconds"), sampler.final_supervisor_cpu
    result = {
        "calls": calls,
        "arrivals_per_second": rate,
        "sipp_exit": sipp.returncode,
        "calls_measured": len(setup),
        "setup_p50_ms": percentile(setup, 0.5),
        "setup_p99_ms": percentile(setup, 0.99),
        "setup_max_ms": max(setup) if setup else None,
        **pacing(list(downlink.values())),
        "downlink_streams": len(downlink),
        # The same frames as they leave the service (kernel-stamped at its sendto), before
        # Asterisk relays them: the service's own share of the pacing at the caller.
        **{f"egress_{key}": value for key, value in pacing(list(egress.values())).items()},
        # The callers' streams as Asterisk relays them to callbridge: how steady they are is
        # what decides how often a worker's frame can leave in the caller packet's wake-up
        # (call_worker/media.py::MediaLoop._follow joins within FOLLOW_JOIN).
        **caller_stream(list(inbound.values())),
        # psutil, as in bench/calls_bench.py: worker CPU over the workers' whole lives
        "cpu_percent_per_call": worker_cpu / lives * 100 if lives else None,
        # The service's processes: callbridge's supervisor too (not its helpers), the plain bridge's one
        "cpu_percent_per_call_all": (
            (worker_cpu + (0 if baseline == "plain" else sampler.final_supervisor_cpu)) / lives * 100
            if lives
            else None
        ),
        "worker_uss_max_mb": max(sampler.uss.values()) if sampler.uss else None,
        **usage,
        "steal_percent": steal,
        **setup_breakdown(records),
        **cost,
        "code_under_test": location,
    }
    if frame_times:
        result["frame_times"] = frame_report.summarize(frame_report.load(work / "frames"))
    for key, value in list(result.items()):
        if isinstance(value, float):
            result[key] = round(value, 2)
    result["meets_setup_target"] = (
        result["calls_measured"] == calls and (result["setup_p99_ms"] or 1e9) <= SETUP_TARGET_MS
    )
    if sipp.returncode != 0:
        result["sipp_output"] = "".join(output)[-1000:]
    return result


COLUMNS = [
    ("calls", "N"),
    ("arrivals_per_second", "arrivals/s"),
    ("calls_measured", "measured"),
    ("setup_p50_ms", "set-up p50 ms"),
    ("setup_p99_ms", "set-up p99 ms"),
    ("setup_max_ms", "set-up max ms"),
    ("inside_worker_started_p50_ms", "worker started p50"),
    ("inside_bridged_p50_ms", "bridged p50 (inside)"),
    ("inside_bridged_p99_ms", "bridged p99 (inside)"),
    ("pacing_dev_p99_ms", "pacing dev p99 ms"),
    ("pacing_dev_max_ms", "pacing dev max ms"),
    ("bursts", "bursts"),
    ("frames_lost", "lost"),
    ("cpu_percent_per_call", "CPU %/call"),
    ("cpu_percent_per_call_kernel", "CPU %/call (rusage)"),
    ("wakeups_per_call_second", "wake-ups/call-s"),
    ("cost_source", "counted from"),
    ("worker_uss_max_mb", "worker USS MB"),
    ("steal_percent", "steal %"),
    ("meets_setup_target", "p99 <= 100 ms"),
]


class Bench:
    """The real Asterisk and the simulated Realtime server, started once for many runs
    (bench/compare.py alternates the code under test between them)."""

    def __init__(self, scratch: Path, asterisk_high_priority: bool = False) -> None:
        self.work = scratch
        self.asterisk = Asterisk(ensure_root(), PORTS, high_priority=asterisk_high_priority)
        self.realtime: RealtimeSim | None = None
        self.voice: Path | None = None

    def __enter__(self) -> Bench:
        self.asterisk.start()
        try:
            self.realtime = RealtimeSim("--reply-ms", "2000", quiet=True)
            self.voice = speech.script(
                ["Hello, what are your opening hours today?", 4.0], self.work / "voice.wav"
            )
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_) -> None:
        if self.realtime is not None:
            self.realtime.stop()
        self.asterisk.stop()

    def measure(self, calls: int, rate: int, **options) -> dict:
        """`measure` on this bench's Asterisk and simulator (options: code_dir, seconds,
        baseline, frame_times)."""
        return measure(self.asterisk, self.realtime, self.voice, calls, rate, self.work, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,10,20")
    parser.add_argument("--rate", type=int, default=10, help="calls placed per second")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long each caller stays on the line")
    parser.add_argument(
        "--baseline", choices=("plain",), help="run bench/plain_bridge.py instead of callbridge"
    )
    parser.add_argument("--frame-times", action="store_true", help="trace every frame (bench/frame_times.py)")
    parser.add_argument(
        "--asterisk-high-priority",
        action="store_true",
        help="Asterisk under SCHED_RR (asterisk -p, as Debian runs it)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="callbridge-abench-") as scratch,
        Bench(Path(scratch), args.asterisk_high_priority) as bench,
    ):
        for count in (int(c) for c in args.calls.split(",")):
            print(f"placing {count} calls on the real Asterisk ...", file=sys.stderr, flush=True)
            results.append(
                bench.measure(
                    count,
                    args.rate,
                    seconds=args.seconds,
                    baseline=args.baseline or "",
                    frame_times=args.frame_times,
                )
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            if "frame_times" in results[-1]:
                print(f"{count} calls, where each frame's time went:", flush=True)
                print(frame_report.markdown(results[-1]["frame_times"]), flush=True)
    table = markdown(results, COLUMNS)
    (out / "asterisk-bench.json").write_text(json.dumps({"results": results}, indent=2))
    (out / "asterisk-bench.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
