"""Fixtures for the records tests: the same tests on SQLite, MariaDB and PostgreSQL.

The servers are real (tests/dbservers.py), one per session, emptied before each test.
When one cannot run here the test is skipped with the reason, which `-ra` prints at the
end of the run: a missing server is seen, never silently passed over."""

from __future__ import annotations

import importlib.util
import time

import pytest
from dbservers import MariaDB, PostgreSQL

from callbridge.database_url import DatabaseUrl

BACKENDS = ["sqlite", "mariadb", "postgresql"]
_servers: dict[str, object] = {}


def _server(name: str):
    if name not in _servers:
        kind = MariaDB if name == "mariadb" else PostgreSQL
        reason = kind.available()
        driver = "pymysql" if name == "mariadb" else "psycopg"
        if reason is None and importlib.util.find_spec(driver) is None:
            reason = f"the {driver} driver is not installed (pip install -e '.[test]')"
        if reason is not None:
            _servers[name] = reason
        else:
            try:
                _servers[name] = kind()
            except Exception as exc:  # cannot start here: say so for every test that needed it
                _servers[name] = f"{name} did not start: {exc}"[:500]
    server = _servers[name]
    if isinstance(server, str):
        pytest.skip(f"NOT TESTED ON {name.upper()}: {server}")
    return server


@pytest.fixture(scope="session")
def db_servers():
    """The servers started so far, stopped at the end of the session. A test module imports
    this with `database`, which needs it."""
    yield _servers
    for server in _servers.values():
        if not isinstance(server, str):
            server.close()


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path, db_servers) -> DatabaseUrl:
    """An empty database of each kind, as the DatabaseUrl callbridge would read."""
    if request.param == "sqlite":
        return DatabaseUrl.sqlite_file(tmp_path / "callbridge.db")
    server = _server(request.param)
    server.reset()
    return DatabaseUrl.parse(server.url())


def server_for(database: DatabaseUrl):
    """The running server behind `database` (None for SQLite): for the outage tests."""
    if database.is_sqlite:
        return None
    return _servers["mariadb" if database.backend == "mysql" else "postgresql"]


def a_record(call_id: str = "1733412345.42", instance: str = "clinic", **changes) -> dict:
    """A spool record as the worker writes it (records/spool.py)."""
    started = changes.pop("started_at", time.time() - 120)
    record = {
        "version": 1,
        "instance": instance,
        "call_id": call_id,
        "caller": "+34600111222",
        "caller_name": "Ana",
        "dialled": "100",
        "started_at": started,
        "answered_at": started + 0.2,
        "ended_at": started + 61.5,
        "duration_s": 61.5,
        "end_reason": "caller_hangup",
        "worker_exit": "exit:0",
        "agent": "",
        "model": "gpt-realtime-2.1",
        "failure": "",
        "complete": True,
        "setup_ms": {"answered": 9.3, "bridged": 19.4},
        "setup_bridge_retries": 1,
        "figures": {
            "frames_in": 3000,
            "frames_out": 1500,
            "underruns": 2,
            "barge_ins": 1,
            "rejected_packets": 0,
            "reconnects": 0,
        },
        "usage": {
            "input_audio_tokens": 800,
            "input_text_tokens": 300,
            "input_cached_tokens": 64,
            "output_audio_tokens": 1200,
            "output_text_tokens": 90,
            "transcription_seconds": 20.0,
        },
        "turns": [
            {
                "side": "agent",
                "offset_ms": 300,
                "text": "Hola, ¿en qué puedo ayudarle?",
                "interrupted": False,
            },
            {"side": "caller", "offset_ms": 2500, "text": "Quiero una cita", "interrupted": False},
            {
                "side": "agent",
                "offset_ms": 4000,
                "text": "Claro, tenemos el lunes o el martes",
                "interrupted": True,
                "heard": "Claro, tenemos",
                "phase": "answer",
            },
        ],
        "events": [{"offset_ms": 4100, "kind": "barge_in", "detail": {"heard_ms": 700}}],
    }
    record.update(changes)
    return record
