"""Real MariaDB and PostgreSQL servers for the records tests, started on loopback in a
temporary data directory, as the servers' own system users (never root), and stopped after.

`available()` says why a server cannot run here (not installed: scripts/setup-e2e.sh
installs both with apt-get); the fixture then skips loudly with that reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from testenv import free_port, wait_until

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _as(user: str) -> dict:
    """subprocess arguments that run as `user` when we are root (servers refuse root). No
    runuser in between: a signal must reach the server itself."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam(user)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class Server:
    name = ""
    user = ""
    stop_signal = signal.SIGTERM

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"callbridge-{self.name}-"))
        os.chmod(self.root, 0o755)  # the server's user must reach its data directory
        self.data = self.root / "data"
        self.data.mkdir()
        account = _user(self.user)
        if os.geteuid() == 0 and account is not None:  # its socket, pid file and data
            for path in (self.root, self.data):
                os.chown(path, account.pw_uid, account.pw_gid)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        """Stopped for real (the outage test), and started again by `start`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def _spawn(self, argv: list[str]) -> None:
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 -- the server's for its life
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, **_as(self.user))
        log.close()
        wait_until(lambda: _accepts(self.port) or self.proc.poll() is not None, timeout=60, interval=0.1)
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} did not start: {(self.root / 'server.log').read_text()[-2000:]}")


class MariaDB(Server):
    name, user = "mariadb", "mysql"

    @staticmethod
    def available() -> str | None:
        if not shutil.which("mariadbd") and not Path("/usr/sbin/mariadbd").exists():
            return "mariadb-server is not installed (scripts/setup-e2e.sh installs it)"
        if _user("mysql") is None and os.geteuid() == 0:
            return "no mysql system user"
        return None

    def __init__(self) -> None:
        super().__init__()
        self.socket = self.root / "mysqld.sock"
        command = [
            "mariadb-install-db",
            f"--datadir={self.data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=300, cwd=self.root, **_as(self.user))
        self.start()
        self._sql(
            "CREATE DATABASE callbridge CHARACTER SET utf8mb4; "
            "CREATE USER 'cb'@'127.0.0.1' IDENTIFIED BY 'cb-secret-pw'; "
            "GRANT ALL ON callbridge.* TO 'cb'@'127.0.0.1';"
        )

    def start(self) -> None:
        self._spawn(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--socket={self.socket}",
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                f"--pid-file={self.root / 'mysqld.pid'}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=32M",
                "--skip-log-bin",
            ]
        )

    def _sql(self, sql: str) -> None:
        command = ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", sql]
        subprocess.run(command, check=True, capture_output=True, timeout=60, **_as(self.user))

    def url(self) -> str:
        return f"mysql+pymysql://cb:cb-secret-pw@127.0.0.1:{self.port}/callbridge"

    def read_only_url(self) -> str:
        """A credential that may only read the history (what operators get, docs/operations.md)."""
        self._sql(
            "CREATE USER IF NOT EXISTS 'cbread'@'127.0.0.1' IDENTIFIED BY 'cb-read-pw'; "
            "GRANT SELECT ON callbridge.* TO 'cbread'@'127.0.0.1';"
        )
        return f"mysql+pymysql://cbread:cb-read-pw@127.0.0.1:{self.port}/callbridge"

    def reset(self) -> None:
        self._sql("DROP DATABASE callbridge; CREATE DATABASE callbridge CHARACTER SET utf8mb4;")


class PostgreSQL(Server):
    name, user = "postgresql", "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: a smart one would wait for our clients

    @staticmethod
    def available() -> str | None:
        if not PG_BIN:
            return "postgresql is not installed (scripts/setup-e2e.sh installs it)"
        if _user("postgres") is None and os.geteuid() == 0:
            return "no postgres system user"
        return None

    def __init__(self) -> None:
        super().__init__()
        self.bin = PG_BIN[0]
        pwfile = self.root / "pw"
        pwfile.write_text("cb-secret-pw\n")
        os.chmod(pwfile, 0o644)
        command = [
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "cb",
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=300, cwd=self.root, **_as(self.user))
        self.start()
        self._psql("CREATE DATABASE callbridge")

    def start(self) -> None:
        self._spawn(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
            ]
        )

    def _psql(self, sql: str, db: str = "postgres") -> None:
        command = [
            str(self.bin / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "cb",
            "-d",
            db,
            "-c",
            sql,
        ]
        env = {**os.environ, "PGPASSWORD": "cb-secret-pw"}
        subprocess.run(
            command, check=True, capture_output=True, timeout=60, env=env, cwd=self.root, **_as(self.user)
        )

    def url(self) -> str:
        return f"postgresql+psycopg://cb:cb-secret-pw@127.0.0.1:{self.port}/callbridge"

    def read_only_url(self) -> str:
        """A credential that may only read the history's tables as they are now (call it
        after the schema is made)."""
        self._psql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cbread') THEN "
            "CREATE ROLE cbread LOGIN PASSWORD 'cb-read-pw'; END IF; END $$;"
        )
        self._psql("GRANT SELECT ON ALL TABLES IN SCHEMA public TO cbread", db="callbridge")
        return f"postgresql+psycopg://cbread:cb-read-pw@127.0.0.1:{self.port}/callbridge"

    def reset(self) -> None:
        self._psql("DROP DATABASE callbridge WITH (FORCE)")
        self._psql("CREATE DATABASE callbridge")
