"""Whether a tool that hangs costs the caller anything: the pacing of calls whose HTTP or MCP
tool hangs until its timeout, against calls without tools, in one run.

    python bench/tools_bench.py [--calls 4] [--rounds 3] [--out bench/results]

One `callbridge run` on the simulators with three agents: `plain` (no tools), `http` (an
HTTP tool whose server never answers: tests/http_services.py's /hang, timeout 4 s) and
`mcp` (an MCP server's tool that never answers: tests/mcp_server.py's slow_lookup, timeout
4 s). Each round places --calls calls to each agent at once; the simulated Realtime server
calls the tool after the caller's first turn, so each tool call hangs while the filler and
then the model's answer play. Measured at the caller (the simulated Asterisk's arrival
stamps), per agent: the pacing deviation |gap - 20 ms| p50, p99 and max over every frame of
the call, bursts (gaps under 10 ms) and frames lost; the target is each tool agent's p99
within 0.5 ms of `plain`'s. Prints a table and writes tools-bench.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from http_services import Services  # noqa: E402

from bench.report import pacing  # noqa: E402
from simulators.clients import AsteriskSim, RealtimeSim, simulated_env, stop_process  # noqa: E402

NUMBERS = {"801": "plain", "802": "http", "803": "mcp"}
TOKEN = "bench-token"
SCRIPT = [{"silence": 300}, {"say": 900}, {"silence": 9000}, {"hangup": True}]


def agents_file(path: Path, http_base: str, mcp_url: str) -> None:
    path.write_text(
        f"""
[agents.plain]
numbers = ["801"]

[agents.http]
numbers = ["802"]
[agents.http.tools.lookup]
description = "Look it up"
url = "{http_base}/hang"
timeout_seconds = 4
filler = "Un momento."

[agents.mcp]
numbers = ["803"]
[agents.mcp.mcp.tickets]
url = "{mcp_url}"
headers = {{ Authorization = "Bearer {TOKEN}" }}
tools = ["slow_lookup"]
timeout_seconds = 4
filler = "Un momento."
"""
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(calls: int, rounds: int, workdir: Path) -> dict:
    run_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="tools-"))
    http = Services()
    port = free_port()
    mcp = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "mcp_server.py"), str(port), TOKEN, str(run_dir / "mcp.jsonl")],
        stderr=subprocess.DEVNULL,
    )
    asterisk = AsteriskSim(quiet=True)
    realtime = RealtimeSim("--reply-ms", "1500", "--greeting-ms", "1000", quiet=True)
    agents_file(run_dir / "agents.toml", http.base, f"http://127.0.0.1:{port}/mcp")
    env = {
        **os.environ,
        **simulated_env(
            asterisk,
            realtime,
            CONTROL_SOCKET_PATH=str(run_dir / "control.sock"),
            AGENTS_FILE=str(run_dir / "agents.toml"),
            LOG_LEVEL="warning",
            SHM_PREFIX=f"callbridge-tools{os.getpid()}",
            RTP_PORT_RANGE="40000-49999",
            STATE_DIR=str(run_dir / "state"),
        ),
    }
    env.pop("NOTIFY_SOCKET", None)
    by_agent: dict[str, list] = {name: [] for name in NUMBERS.values()}
    with open(run_dir / "callbridge.log", "w") as log_file:
        service = subprocess.Popen(
            [sys.executable, "-m", "callbridge.cli", "run"],
            env=env,
            cwd=run_dir,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 20
        while "openai-app" not in asterisk.state()["apps"]:
            if time.monotonic() > deadline:
                raise RuntimeError("callbridge did not connect to the simulated Asterisk")
            time.sleep(0.05)
        for _ in range(rounds):
            for name in ("lookup", "slow_lookup"):
                requests.get(
                    f"{realtime.base}/sim/tool-calls",
                    params={"name": name, "arguments": "{}", "after_turn": 1, "count": calls * len(NUMBERS)},
                    timeout=5,
                ).raise_for_status()
            ids = {}
            for _ in range(calls):
                for number, agent in NUMBERS.items():
                    reply = requests.post(
                        f"{asterisk.base}/sim/calls", json={"script": SCRIPT, "exten": number}, timeout=10
                    )
                    reply.raise_for_status()
                    ids[reply.json()["channel_id"]] = agent
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                states = {
                    c["channel_id"]: c for c in requests.get(f"{asterisk.base}/sim/calls", timeout=10).json()
                }
                if all(states.get(i, {}).get("hangup") is not None for i in ids):
                    break
                time.sleep(0.5)
            for call_id, agent in ids.items():
                received = asterisk.call(call_id)["received"]
                by_agent[agent].append([(row[0], row[1]) for row in received])
            time.sleep(1.0)  # the workers' ends, before the next round's calls
        reached = run_dir / "mcp.jsonl"
        tool_calls = len(reached.read_text().splitlines()) if reached.exists() else 0
    finally:
        stop_process(service, timeout=30)
        asterisk.stop()
        realtime.stop()
        http.stop()
        mcp.kill()
    result = {"calls_per_agent": calls * rounds, "mcp_tool_calls_reached": tool_calls, "agents": {}}
    for agent, streams in by_agent.items():
        result["agents"][agent] = pacing(streams)
        # Where in the call the worst gaps were (s after its first frame): set-up, the tool's
        # start, its timeout, or anywhere.
        worst = sorted(
            (
                (abs((b - a) * 1000 - 20.0), round(a - stream[0][0], 2))
                for stream in streams
                for (a, _), (b, _) in zip(stream, stream[1:], strict=False)
            ),
            reverse=True,
        )[:5]
        result["agents"][agent]["worst_gaps"] = [{"dev_ms": round(d, 2), "at_s": at} for d, at in worst]
    plain = result["agents"]["plain"]["pacing_dev_p99_ms"]
    for agent in ("http", "mcp"):
        p99 = result["agents"][agent]["pacing_dev_p99_ms"]
        result["agents"][agent]["p99_over_plain_ms"] = None if None in (p99, plain) else round(p99 - plain, 3)
    return result


def table(result: dict) -> str:
    lines = [
        f"{result['calls_per_agent']} calls per agent; MCP tool calls that reached the server: {result['mcp_tool_calls_reached']}",
        "| agent | pacing dev p50 ms | p99 ms | max ms | p99 over plain ms | bursts | frames lost | frames |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for agent, figures in result["agents"].items():
        over = figures.get("p99_over_plain_ms")
        lines.append(
            f"| {agent} | {figures['pacing_dev_p50_ms']:.3f} | {figures['pacing_dev_p99_ms']:.3f} | "
            f"{figures['pacing_dev_max_ms']:.3f} | {'-' if over is None else f'{over:+.3f}'} | "
            f"{figures['bursts']} | {figures['frames_lost']} | {figures['frames_paced']} |"
        )
    for agent, figures in result["agents"].items():
        worst = ", ".join(f"{g['dev_ms']} ms at {g['at_s']} s" for g in figures["worst_gaps"])
        lines.append(f"worst gaps, {agent}: {worst}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4, help="calls to each agent per round, at once")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = measure(args.calls, args.rounds, out)
    print(table(result))
    (out / "tools-bench.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
