"""Clients for the simulators run as subprocesses: start one, read its port, drive it
through its /sim control API. Used by `callbridge demo`, the tests and the benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


class SimProcess:
    """A simulator started as `python -m MODULE --port 0 ...`; its first line gives the port."""

    def __init__(self, module: str, *args: str, quiet: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--port", "0", *args],
            cwd=PACKAGE_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if quiet else None,
            text=True,
            env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)},
        )
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError(f"{module} did not start")
        self.port = json.loads(line)["port"]
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class AsteriskSim(SimProcess):
    def __init__(
        self, *args: str, username: str = "asterisk", password: str = "asterisk", quiet: bool = False
    ) -> None:
        super().__init__(
            "simulators.asterisk", "--username", username, "--password", password, *args, quiet=quiet
        )
        self.username, self.password = username, password

    def place_call(
        self,
        script: list[dict],
        app: str = "openai-app",
        caller: str = "",
        exten: str = "100",
        name: str = "",
        channel_id: str = "",
    ) -> str:
        reply = requests.post(
            f"{self.base}/sim/calls",
            json={
                "script": script,
                "app": app,
                "caller": caller,
                "exten": exten,
                "name": name,
                "channel_id": channel_id,
            },
            timeout=5,
        )
        reply.raise_for_status()
        return reply.json()["channel_id"]

    def call(self, channel_id: str, packets: bool = True) -> dict:
        return requests.get(
            f"{self.base}/sim/calls/{channel_id}", params={"packets": int(packets)}, timeout=10
        ).json()

    def hangup(self, channel_id: str) -> None:
        requests.post(f"{self.base}/sim/calls/{channel_id}/hangup", timeout=5)

    def dtmf(self, channel_id: str, digit: str) -> None:
        """The caller presses a key (a ChannelDtmfReceived event on their channel)."""
        requests.post(
            f"{self.base}/sim/calls/{channel_id}/dtmf", params={"digit": digit}, timeout=5
        ).raise_for_status()

    def state(self) -> dict:
        return requests.get(f"{self.base}/sim/state", timeout=5).json()


class RealtimeSim(SimProcess):
    def __init__(self, *args: str, api_key: str = "sk-sim", quiet: bool = False) -> None:
        super().__init__("simulators.realtime", "--api-key", api_key, *args, quiet=quiet)
        self.api_key = api_key

    def fault(self, kind: str, after: float = 0.0, count: int = 1, on: str = "", nth: int = 1) -> None:
        params = {"kind": kind, "after": after, "count": count}
        if on:
            params.update(on=on, nth=nth)
        requests.get(f"{self.base}/sim/faults", params=params, timeout=5)

    def sessions(self) -> list[dict]:
        return requests.get(f"{self.base}/sim/sessions", timeout=10).json()

    def reply(self, **options: int) -> dict:
        """Reply options from now on (/sim/reply): preamble_ms, think_ms, reply_ms, greeting_ms."""
        answer = requests.get(f"{self.base}/sim/reply", params=options, timeout=5)
        answer.raise_for_status()
        return answer.json()

    def reset(self) -> None:
        requests.get(f"{self.base}/sim/reset", timeout=5)

    def model_shutdown(self, model: str, date: str = "") -> None:
        """The shutdown date /v1/models announces for `model` from now on; "": none."""
        requests.get(f"{self.base}/sim/model-shutdown", params={"model": model, "date": date}, timeout=5)


class ResponsesSim(SimProcess):
    """OpenAI's Responses API (simulators/responses.py): what the post-call summaries use."""

    def __init__(self, *args: str, api_key: str = "sk-sim", quiet: bool = False) -> None:
        super().__init__("simulators.responses", "--api-key", api_key, *args, quiet=quiet)
        self.api_key = api_key
        self.url = f"{self.base}/v1/responses"

    def requests(self) -> list[dict]:
        return requests.get(f"{self.base}/sim/requests", timeout=10).json()

    def fault(self, kind: str, count: int = 1, seconds: float | None = None) -> None:
        params = {"kind": kind, "count": count, **({"seconds": seconds} if seconds is not None else {})}
        requests.get(f"{self.base}/sim/fault", params=params, timeout=5)

    def reset(self) -> None:
        requests.get(f"{self.base}/sim/reset", timeout=5)


def callbridge_env(
    realtime: RealtimeSim, ari_port: int, ari_user: str, ari_password: str, **overrides: str
) -> dict[str, str]:
    """The variables that point callbridge at an ARI on loopback (simulated or real) and at a
    simulated Realtime server, with the greeting and the time limits off unless overridden."""
    return {
        "ASTERISK_HOST": "127.0.0.1",
        "ASTERISK_PORT": str(ari_port),
        "ASTERISK_USERNAME": ari_user,
        "ASTERISK_PASSWORD": ari_password,
        "OPENAI_API_KEY": realtime.api_key,
        "OPENAI_REALTIME_URL": f"ws://127.0.0.1:{realtime.port}/v1/realtime",
        "OPENAI_LIVE_URL": f"ws://127.0.0.1:{realtime.port}/v1/live/sessions",
        "LOCAL_IP_ADDRESS": "127.0.0.1",
        "OPENAI_GREETING": "",
        "IDLE_TIMEOUT_SECONDS": "0",
        "MAX_CALL_SECONDS": "0",
        **overrides,
    }


def simulated_env(asterisk: AsteriskSim, realtime: RealtimeSim, **overrides: str) -> dict[str, str]:
    """`callbridge_env` for the simulated Asterisk."""
    return callbridge_env(realtime, asterisk.port, asterisk.username, asterisk.password, **overrides)


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL: how the demo and the benchmark stop `callbridge run`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
