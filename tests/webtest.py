"""For the dashboard's tests: a real `callbridge web serve` process, its users made with the
real `callbridge web add-user`, and logged-in HTTP sessions (requests) or browsers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests
from harness import REPO
from testenv import free_port, wait_until

ADMIN, VIEWER = ("ana", "ana-password-1"), ("vic", "vic-password-1")


def cli(env: dict, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "callbridge.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def add_user(env: dict, name: str, password: str, role: str) -> None:
    done = cli(env, "web", "add-user", name, "--role", role, "--password-stdin", stdin=password + "\n")
    assert done.returncode == 0, done.stderr


def answers(base: str) -> bool:
    try:
        return requests.get(base + "/login", timeout=2).status_code == 200
    except requests.RequestException:
        return False


class WebServe:
    """`callbridge web serve` on its own, with `settings` over a bare environment."""

    def __init__(self, workdir: Path, **settings: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "web.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
            "PYTHONPATH": str(REPO),
            "STATE_DIR": str(workdir / "state"),
            "CONTROL_SOCKET_PATH": str(workdir / "no-supervisor.sock"),
            "WEB_LISTEN": f"127.0.0.1:{self.port}",
            "METRICS_LISTEN": "",
            "LOG_FILE_PATH": str(self.log_path),
            **settings,
        }
        self.proc: subprocess.Popen | None = None

    def start(self) -> WebServe:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callbridge.cli", "web", "serve"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: answers(self.base) or self.proc.poll() is not None, timeout=20, interval=0.1)
        assert self.proc.poll() is None, self.log()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def hidden(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field in:\n{html[:2000]}"
    return found.group(1)


def csrf_of(html: str) -> str:
    return re.search(r'<meta name="csrf" content="([^"]*)"', html).group(1)


def login(base: str, name: str, password: str, headers: dict | None = None) -> requests.Session:
    """A logged-in session (asserts that the login worked)."""
    session = requests.Session()
    if headers:
        session.headers.update(headers)
    form = session.get(base + "/login", timeout=10)
    reply = session.post(
        base + "/login",
        data={"csrf": hidden(form.text), "name": name, "password": password, "next": "/live"},
        timeout=10,
    )
    assert reply.status_code == 200 and reply.url.endswith("/live"), (reply.status_code, reply.text[:500])
    return session
