"""A real Asterisk 22 (and sipp) from Debian sid in a chroot, for the end-to-end suite.

The root is built once with debootstrap into a cache directory outside the repository
(`CALLBRIDGE_ASTERISK_ROOT`, default /var/cache/callbridge-test/asterisk-root) and reused.
The chroot shares the network namespace, so ARI, PJSIP and RTP are on 127.0.0.1.
Our configuration is written into <root>/etc/callbridge-test; runtime files go to
<root>/tmp/callbridge-test-run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = Path("/var/cache/callbridge-test/asterisk-root")
PACKAGES = "asterisk,sip-tester"


class CannotRun(Exception):
    """The end-to-end suite cannot run on this machine; the text says why."""


@dataclass(frozen=True)
class Ports:
    ari: int = 18088
    sip: int = 15060
    sipp: int = 15070
    asterisk_rtp: tuple[int, int] = (21000, 21999)
    callbridge_rtp: tuple[int, int] = (22000, 22999)
    sipp_rtp: tuple[int, int] = (23000, 23999)


ARI_USER, ARI_PASSWORD, APP = "callbridge", "e2e-ari-secret", "openai-app"


def root_dir() -> Path:
    return Path(os.environ.get("CALLBRIDGE_ASTERISK_ROOT", str(DEFAULT_ROOT)))


def ensure_root() -> Path:
    """The chroot with Asterisk and sipp, built when missing (about a minute)."""
    root = root_dir()
    if (root / "usr/sbin/asterisk").exists() and (root / "usr/bin/sipp").exists():
        return root
    if os.geteuid() != 0:
        raise CannotRun("NOT ROOT: building the Asterisk chroot needs root (debootstrap, chroot)")
    if shutil.which("debootstrap") is None:
        raise CannotRun("DEBOOTSTRAP IS NOT INSTALLED: apt-get install debootstrap (see .ci/run)")
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "sid", str(staging)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise CannotRun(
            f"DEBOOTSTRAP OF DEBIAN SID FAILED (no reachable Debian mirror?):\n{result.stderr[-2000:]}"
        )
    staging.rename(root)
    return root


def check_tools() -> None:
    missing = [tool for tool in ("tcpdump", "espeak-ng", "sox", "soxi") if shutil.which(tool) is None]
    if missing:
        raise CannotRun(f"MISSING TOOLS {', '.join(missing).upper()}: apt-get install tcpdump espeak-ng sox")


class Asterisk:
    def __init__(self, root: Path, ports: Ports = Ports(), high_priority: bool = False) -> None:
        self.root = root
        self.ports = ports
        # -p: Asterisk's threads under SCHED_RR (`highpriority`), as Debian's asterisk.service runs it
        self.high_priority = high_priority
        self.etc = root / "etc/callbridge-test"
        self.run_dir = root / "tmp/callbridge-test-run"
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{ports.ari}/ari"
        self.auth = (ARI_USER, ARI_PASSWORD)

    def write_config(self) -> None:
        shutil.rmtree(self.etc, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.etc.mkdir(parents=True)
        for sub in ("db", "spool", "run", "log"):
            (self.run_dir / sub).mkdir(parents=True)
        values = {
            "etc_dir": "/etc/callbridge-test",
            "run_dir": "/tmp/callbridge-test-run",
            "ari_port": self.ports.ari,
            "ari_user": ARI_USER,
            "ari_password": ARI_PASSWORD,
            "sip_port": self.ports.sip,
            "sipp_port": self.ports.sipp,
            "app": APP,
            "rtp_start": self.ports.asterisk_rtp[0],
            "rtp_end": self.ports.asterisk_rtp[1],
        }
        for template in (HERE / "config").iterdir():
            (self.etc / template.name).write_text(template.read_text().format(**values))

    def start(self, timeout: float = 60.0) -> None:
        self.write_config()
        log = open(self.run_dir / "console.log", "w")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(
            [
                "chroot",
                str(self.root),
                "/usr/sbin/asterisk",
                "-f",
                *(["-p"] if self.high_priority else []),
                "-C",
                "/etc/callbridge-test/asterisk.conf",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CannotRun(
                    f"ASTERISK EXITED AT START ({self.proc.returncode}):\n{self.console()[-2000:]}"
                )
            try:
                if requests.get(f"{self.base}/asterisk/info", auth=self.auth, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise CannotRun(f"ASTERISK DID NOT OPEN ARI WITHIN {timeout:.0f} S:\n{self.console()[-2000:]}")

    def console(self) -> str:
        path = self.run_dir / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def get(self, path: str):
        reply = requests.get(f"{self.base}{path}", auth=self.auth, timeout=5)
        reply.raise_for_status()
        return reply.json()

    def leftovers(self) -> dict:
        return {
            "channels": [c["name"] for c in self.get("/channels")],
            "bridges": [b["id"] for b in self.get("/bridges")],
        }

    # --- sipp, inside the same chroot

    def sipp(
        self,
        wav: Path,
        hold_ms: int,
        calls: int = 1,
        rate: int = 10,
        timeout_s: float = 120,
        number: str = "100",
        second: bool = False,
        loops: int = 1,
        keys: tuple[tuple[int, str], ...] = (),
    ) -> subprocess.Popen:
        """Start sipp placing `calls` calls to `number` that stream `wav` `loops` times (-1:
        for as long as the call lasts, as a phone sends) and hang up after `hold_ms`.
        `second`: a second sipp running beside the first, on its own SIP port and the upper
        half of the RTP range (Asterisk identifies sipp by address alone). `keys`: (pause in
        ms, digits) pairs the caller presses after the audio started, each after its pause
        (RFC 4733 events, sipp's play_dtmf, which plays in the background: a pause must
        outlast the digits before it, about 0.6 s each, or the next press cuts them)."""
        sip_port = self.ports.sipp + (1 if second else 0)
        low, high = self.ports.sipp_rtp
        middle = (low + high) // 2
        rtp_low, rtp_high = (middle + 1, high) if second else (low, middle)
        inside = Path("/tmp/callbridge-test-run")
        name = f"caller-{time.monotonic_ns()}"
        shutil.copy(wav, self.run_dir / f"{name}.wav")
        scenario = (
            (HERE / "scenarios/caller.xml.in")
            .read_text()
            .format(hold_ms=hold_ms, wav=str(inside / f"{name}.wav"), loops=loops, keys=_key_presses(keys))
        )
        (self.run_dir / f"{name}.xml").write_text(scenario)
        args = [
            "chroot",
            str(self.root),
            "/usr/bin/sipp",
            f"127.0.0.1:{self.ports.sip}",
            "-sf",
            str(inside / f"{name}.xml"),
            "-s",
            number,
            "-i",
            "127.0.0.1",
            "-p",
            str(sip_port),
            "-mi",
            "127.0.0.1",
            "-min_rtp_port",
            str(rtp_low),
            "-max_rtp_port",
            str(rtp_high),
            "-m",
            str(calls),
            "-l",
            str(calls),
            "-r",
            str(rate),
            "-rp",
            "1000",
            "-nostdin",
            "-timeout",
            f"{int(timeout_s)}s",
            "-timeout_error",
            "-trace_stat",
            "-stf",
            str(inside / f"{name}.csv"),
        ]
        return subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )


def _key_presses(keys: tuple[tuple[int, str], ...]) -> str:
    """The scenario's key presses: for each, a pause and sipp's play_dtmf."""
    return "".join(
        f'  <pause milliseconds="{pause_ms}"/>\n  <nop><action><exec play_dtmf="{digits}"/></action></nop>\n'
        for pause_ms, digits in keys
    )


class Capture:
    """tcpdump on loopback, for the RTP port ranges of the suite."""

    def __init__(self, path: Path, ports: Ports = Ports()) -> None:
        low = min(ports.asterisk_rtp[0], ports.callbridge_rtp[0], ports.sipp_rtp[0])
        high = max(ports.asterisk_rtp[1], ports.callbridge_rtp[1], ports.sipp_rtp[1])
        self.path = path
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "-n", "-s", "256", "-w", str(path), f"udp portrange {low}-{high}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # tcpdump says "listening on lo" once it captures
            if self.proc.poll() is not None:
                raise CannotRun(f"TCPDUMP FAILED: {self.proc.stderr.read()}")
            if path.exists():
                time.sleep(0.2)
                return
            time.sleep(0.05)

    def stop(self) -> Path:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        return self.path
