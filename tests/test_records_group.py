"""`callbridge calls` for an operator on the SQLite history in WAL mode, with real Unix
users: the service's user runs the real drainer (records/drainer.py) with the unit's umask
in a directory with the unit's StateDirectoryMode, its files the operators' group's (the
unit's Group=); an operator who is only in that group reads it, read-only: while the
drainer has the database open, after it closed it (no -wal or -shm left: the read falls
back to immutable, and creates nothing), and the drainer carries on after the read.

Needs root (to create the throwaway users and to run processes as them): skipped loudly
otherwise. The users and their group are removed after the test."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from records_fixtures import a_record
from testenv import wait_until

from records import spool

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "openai-inbound-calls.service"


def _unit_value(name: str) -> str:
    [value] = re.findall(rf"^{name}=(\S+)$", UNIT.read_text(), re.M)
    return value


def _run(argv, user=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **_as(user), **kwargs)


def _as(user) -> dict:
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": groups}


@pytest.fixture
def accounts():
    """(service user, operator, the service's group): the operator is in that group only as
    a supplementary group, as `usermod -aG callbridge alice` makes it."""
    if os.geteuid() != 0:
        pytest.skip("NOT TESTED: the group's access to the SQLite history needs root to create users")
    if not shutil.which("useradd"):
        pytest.skip("NOT TESTED: no useradd here")
    tag = f"cb{os.getpid() % 100000}"
    group, own, service, operator = f"{tag}grp", f"{tag}own", f"{tag}svc", f"{tag}op"
    made: list[list[str]] = []
    try:
        for argv in (
            ["groupadd", group],
            ["groupadd", own],
            ["useradd", "-M", "-N", "-g", group, "-s", "/usr/sbin/nologin", service],
            ["useradd", "-M", "-N", "-g", own, "-G", group, "-s", "/usr/sbin/nologin", operator],
        ):
            subprocess.run(argv, check=True, capture_output=True, timeout=30)
            made.append(["userdel" if argv[0] == "useradd" else "groupdel", argv[-1]])
        yield service, operator, group
    finally:
        for argv in reversed(made):
            subprocess.run(argv, capture_output=True, timeout=30)


def _python_for(user: str) -> tuple[str, dict]:
    """An interpreter `user` can run, with this checkout and its packages on the path (the
    venv's interpreter may live under a home others cannot enter)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join([str(REPO), *(p for p in sys.path if p.endswith("site-packages"))]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    major, minor = sys.version_info[:2]
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{major}.{minor}"):
        try:
            probe = _run([candidate, "-c", "import sqlalchemy, typer, records.store"], user, env=env, cwd="/")
        except OSError:  # not there, or not executable by `user`
            continue
        if probe.returncode == 0:
            return candidate, env
    pytest.skip(f"NOT TESTED: no Python {major}.{minor} that the user {user} may run with this checkout")


class Drainer:
    """records/drainer.py::run as the service's user, with the unit's umask."""

    def __init__(self, python: str, env: dict, user: str, state: Path, directory: Path) -> None:
        code = (
            "import sys; from pathlib import Path; from callbridge import logs; "
            "from records.drainer import run; from callbridge.database_url import DatabaseUrl; "
            "logs.setup('debug', 'text', ''); "
            "run(DatabaseUrl.sqlite_file(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3]), poll=0.1)"
        )
        self.proc = subprocess.Popen(
            [python, "-c", code, str(state / "callbridge.db"), str(directory), str(os.getpid())],
            env=env,
            cwd="/",
            umask=int(_unit_value("UMask"), 8),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **_as(user),
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def test_a_member_of_the_services_group_reads_the_sqlite_history_in_wal_mode(accounts):
    service, operator, group = accounts
    mode = _unit_value("StateDirectoryMode")
    # The installer makes the same directory the same way when the service has not started.
    assert f"install -d -m {mode} " in (REPO / "install_service.sh").read_text()
    python, env = _python_for(operator)
    base = Path(tempfile.mkdtemp(prefix="callbridge-group-"))
    os.chmod(base, 0o755)
    state = base / "state"  # as systemd makes StateDirectory=: the unit's mode, the service's owner
    state.mkdir()
    os.chown(state, pwd.getpwnam(service).pw_uid, grp.getgrnam(group).gr_gid)
    os.chmod(state, int(mode, 8))
    directory = state / "spool" / "clinic"
    directory.mkdir(parents=True)
    for path in (state / "spool", directory):
        os.chown(path, pwd.getpwnam(service).pw_uid, grp.getgrnam(group).gr_gid)
    db = state / "callbridge.db"
    cli_env = {**env, "HOME": str(base), "STATE_DIR": str(state), "DATABASE_URL": "", "INSTANCE_ID": "clinic"}

    def calls_as_operator() -> subprocess.CompletedProcess:
        return _run([python, "-m", "callbridge.cli", "calls", "--json"], operator, env=cli_env, cwd="/")

    def listed(result: subprocess.CompletedProcess) -> list[str]:
        assert result.returncode == 0, f"the operator cannot read the history: {result.stderr}"
        return sorted(call["call_id"] for call in json.loads(result.stdout))

    drainer = Drainer(python, env, service, state, directory)
    try:
        spool.write_record(directory, a_record("group.1"))
        wait_until(lambda: spool.pending_records(directory) == [], timeout=30, interval=0.1)
        assert stat.S_IMODE(db.stat().st_mode) == 0o640 and db.stat().st_gid == grp.getgrnam(group).gr_gid

        # 1. While the drainer has the database open (its -wal and -shm exist).
        assert Path(f"{db}-shm").exists()
        assert listed(calls_as_operator()) == ["group.1"]
        shown = _run(
            [python, "-m", "callbridge.cli", "calls", "show", "group.1"], operator, env=cli_env, cwd="/"
        )
        assert shown.returncode == 0 and "Quiero una cita" in shown.stdout, shown.stderr

        # 2. With no connection open: the last one to close removed the -wal and -shm, and
        # the operator's read must create them.
        drainer.stop()
        closing = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('select count(*) from sqlite_master'); c.close()"
        _run([python, "-c", closing, str(db)], service, env=env, cwd="/").check_returncode()
        assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
        assert listed(calls_as_operator()) == ["group.1"]
        assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()  # the read wrote nothing
        assert _run(["touch", str(state / "x")], operator).returncode != 0  # nor can it

        # 3. The service carries on writing after the operator's read.
        drainer = Drainer(python, env, service, state, directory)
        spool.write_record(directory, a_record("group.2"))
        wait_until(lambda: spool.pending_records(directory) == [], timeout=30, interval=0.1)
        assert listed(calls_as_operator()) == ["group.1", "group.2"]
    finally:
        drainer.stop()
        shutil.rmtree(base, ignore_errors=True)
