"""Operators are not the service (issue 22, item 6), with real Unix accounts and a real
`callbridge run` as the service's user, on each of the three databases.

As the unit sets them: the service's user has the operators' group as its primary group
(its files are that group's: 2750 directories, 0640 files) and the service's own group as
a supplementary one, which alone may read the env file with the secrets. The operator is in
the operators' group only, as a supplementary group. It may run `status` and `hangup` and
read the call history (SQLite read-only; a server through a credential that may only
read), and nothing else: not the env file, not a write to the history or the state.

Needs root (to create the throwaway accounts and run processes as them): skipped loudly
otherwise. The accounts are removed after the test."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from harness import AsteriskSim, RealtimeSim, started
from records_fixtures import _server, db_servers  # noqa: F401 -- the servers, shared
from test_records_group import _as, _python_for, _run
from testenv import ended, wait_until

from simulators.clients import simulated_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def accounts():
    """(service user, operator, operators' group, the service's own group)."""
    if os.geteuid() != 0:
        pytest.skip("NOT TESTED: operators' access needs root to create users")
    if not shutil.which("useradd"):
        pytest.skip("NOT TESTED: no useradd here")
    tag = f"co{os.getpid() % 100000}"
    secrets, ops, own, service, operator = f"{tag}sec", f"{tag}ops", f"{tag}own", f"{tag}svc", f"{tag}op"
    made: list[list[str]] = []
    try:
        for argv in (
            ["groupadd", secrets],
            ["groupadd", ops],
            ["groupadd", own],
            ["useradd", "-M", "-N", "-g", ops, "-G", secrets, "-s", "/usr/sbin/nologin", service],
            ["useradd", "-M", "-N", "-g", own, "-G", ops, "-s", "/usr/sbin/nologin", operator],
        ):
            subprocess.run(argv, check=True, capture_output=True, timeout=30)
            made.append(["userdel" if argv[0] == "useradd" else "groupdel", argv[-1]])
        yield service, operator, ops, secrets
    finally:
        for argv in reversed(made):
            subprocess.run(argv, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def asterisk():
    yield from started(AsteriskSim())


@pytest.fixture(scope="module")
def realtime():
    yield from started(RealtimeSim("--reply-ms", "2000"))


def _owned(path: Path, user: str, group: str, mode: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("backend", ["sqlite", "mariadb", "postgresql"])
def test_an_operator_runs_status_hangup_and_calls_and_nothing_else(accounts, asterisk, realtime, backend):
    service, operator, ops, secrets = accounts
    server = None
    if backend != "sqlite":
        server = _server(backend)
        server.reset()
    python, env = _python_for(service)
    base = Path(tempfile.mkdtemp(prefix="callbridge-operators-"))
    os.chmod(base, 0o755)
    state = _owned(base / "state", service, ops, 0o2750)  # StateDirectory=, StateDirectoryMode=
    run = _owned(base / "run", service, ops, 0o750)  # RuntimeDirectory=
    logs = _owned(base / "log", service, ops, 0o750)  # LogsDirectory=
    settings = simulated_env(
        asterisk,
        realtime,
        CONTROL_SOCKET_PATH=str(run / "control.sock"),
        STATE_DIR=str(state),
        LOG_FILE_PATH=str(logs / "callbridge.log"),
        SHM_PREFIX=f"cbops{os.getpid()}",
        RTP_PORT_RANGE="40000-49999",
        METRICS_LISTEN="",
        WEB_LISTEN="",
        DATABASE_URL=server.url() if server else "",
    )
    env_file = base / "callbridge.env"  # install_service.sh: 0640 root:callbridge
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    os.chown(env_file, 0, grp.getgrnam(secrets).gr_gid)
    os.chmod(env_file, 0o640)
    if server is not None:  # a server's schema is `db upgrade`'s, as the service's user
        _run(
            [python, "-m", "callbridge.cli", "db", "upgrade", "--env-file", str(env_file)],
            service,
            env=env,
            cwd="/",
        ).check_returncode()
    proc = subprocess.Popen(
        [python, "-m", "callbridge.cli", "run", "--env-file", str(env_file)],
        env=env,
        cwd="/",
        umask=0o027,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **_as(service),
    )
    ops_env = {
        **env,
        "HOME": str(base),
        "STATE_DIR": str(state),
        "CONTROL_SOCKET_PATH": str(run / "control.sock"),
    }
    ops_env["DATABASE_URL"] = server.read_only_url() if server else ""

    def as_operator(*argv: str) -> subprocess.CompletedProcess:
        return _run([python, "-m", "callbridge.cli", *argv], operator, env=ops_env, cwd="/")

    try:
        wait_until(lambda: (run / "control.sock").exists(), timeout=30, interval=0.1)
        call_id = asterisk.place_call([{"say": 800}, {"silence": 60000}])

        def live() -> bool:
            shown = as_operator("status", "--json")
            return shown.returncode == 0 and any(
                c["call_id"] == call_id for c in json.loads(shown.stdout)["calls"]
            )

        wait_until(live, timeout=30, interval=0.5)
        status = as_operator("status")
        assert status.returncode == 0 and call_id in status.stdout, status.stderr
        hung = as_operator("hangup", call_id)
        assert hung.returncode == 0 and f"ending call {call_id}" in hung.stdout, hung.stderr
        wait_until(lambda: ended(asterisk, call_id), timeout=20, interval=0.2)

        def listed() -> list[str]:
            shown = as_operator("calls", "--json")
            return [c["call_id"] for c in json.loads(shown.stdout)] if shown.returncode == 0 else []

        wait_until(lambda: listed() == [call_id], timeout=30, interval=0.5)
        shown = as_operator("calls", "show", call_id)
        assert shown.returncode == 0 and "operator_hangup" in shown.stdout, shown.stderr

        # ...and nothing else: no secret, no write to the history or the service's files.
        assert _run(["cat", str(env_file)], operator).returncode != 0
        assert as_operator("config", "--env-file", str(env_file)).returncode != 0
        assert _run(["touch", str(state / "planted")], operator).returncode != 0
        for path in state.rglob("*"):
            info = path.lstat()
            assert info.st_mode & 0o022 == 0, f"{path} is writable by its group or others"
        records = base / "import"
        records.mkdir()
        (records / "x.json").write_text(json.dumps({"call_id": "forged.1", "end_reason": "caller_hangup"}))
        os.chmod(records, 0o755)
        os.chmod(records / "x.json", 0o644)
        forged = as_operator("calls", "import", str(records))
        assert forged.returncode != 0 and listed() == [call_id], forged.stdout + forged.stderr
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if backend == "sqlite":  # with the service stopped (its -wal and -shm left, or not): still readable
        assert listed() == [call_id]
    shutil.rmtree(base, ignore_errors=True)
    state_now = asterisk.state()
    assert state_now["channels"] == [] and state_now["bridges"] == [], state_now
