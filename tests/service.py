"""`callbridge run` as a real process, against the simulators or a real Asterisk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import ARI_PASSWORD, ARI_USER, REPO, AsteriskSim, RealtimeSim

from shm_ring import wire
from simulators import clients


class Service:
    def __init__(
        self,
        asterisk: AsteriskSim | None,
        realtime: RealtimeSim,
        workdir: Path,
        prefix: str,
        ari: tuple[int, str, str] | None = None,
        **overrides: str,
    ) -> None:
        """`asterisk` is the simulator, or None with `ari` = (port, user, password) of a real one."""
        self.asterisk = asterisk
        ari_port, ari_user, ari_password = ari or (asterisk.port, ARI_USER, ARI_PASSWORD)
        self.socket = overrides.get("CONTROL_SOCKET_PATH", str(workdir / "control.sock"))
        self.log_path = workdir / "callbridge.log"
        settings = {
            "RTP_PORT_RANGE": "40000-49999",
            "CONTROL_SOCKET_PATH": self.socket,
            "SHM_PREFIX": prefix,
            "LOG_FILE_PATH": str(self.log_path),
            "MAX_CONCURRENT_CALLS": "50",
            "STATE_DIR": str(workdir / "state"),  # the call history and its spool
            "METRICS_LISTEN": "",  # off: parallel services would all want 127.0.0.1:9464
            "WEB_LISTEN": "",  # and 127.0.0.1:8470
            **overrides,
        }
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
            "PYTHONPATH": str(REPO),
            **clients.callbridge_env(realtime, ari_port, ari_user, ari_password, **settings),
        }
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> Service:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callbridge.cli", "run"],
            cwd=self.log_path.parent,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait_ready:
            self.wait(lambda: os.path.exists(self.socket) and self._ari_connected())
        return self

    def wait(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s; log:\n{self.log()[-3000:]}")
            time.sleep(0.05)  # polls cost CPU that the calls under test need

    def _ari_connected(self) -> bool:
        try:
            return self.status()["supervisor"]["ari"] == "connected"
        except (OSError, wire.WireError):
            return False

    def status(self) -> dict:
        return wire.request(self.socket, {"cmd": "status"})

    def call_row(self, call_id: str) -> dict | None:
        for row in self.status()["calls"]:
            if row["call_id"] == call_id:
                return row
        return None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "callbridge.cli", *args, "--socket", self.socket],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(10)
