"""The outage test of issue 13: a real `callbridge run` on the simulators stores its call
history in a real PostgreSQL server (tests/dbservers.py) that is stopped for real mid-run.
While it is down, calls end through the service and a worker is SIGKILLed mid-call; when
it is back, every call is in the database exactly once, the crashed one with the caller's
and the agent's turns it had before the kill.

What it catches: a drainer that gives up on (or skips) a record while the database is down
loses calls (the set of call ids differs); one that stores a record twice, or leaves a stored
record in the spool, is caught by the per-call row counts and the empty spool; a crash
record that misses the journal shows no turns."""

from __future__ import annotations

import os
import signal

import pytest
from records_fixtures import _server, db_servers  # noqa: F401 -- the session's servers
from sqlalchemy import func, select

from callbridge.database_url import DatabaseUrl
from records import crashed, queries, spool
from records.migrate import upgrade
from records.schema import calls, events, turns
from records.store import open_engine

pytestmark = pytest.mark.slow

ENDS = [{"say": 800}, {"silence": 1500}, {"hangup": True}]  # a short call the caller ends
LONG = [{"say": 1000}, {"silence": 60000}]  # the victim: talks once, then stays on the line


@pytest.fixture
def postgresql(db_servers):  # noqa: F811
    server = _server("postgresql")
    server.reset()
    url = DatabaseUrl.parse(server.url())
    engine = open_engine(url)
    upgrade(engine)  # `callbridge db upgrade`'s job for a server database
    try:
        yield server, url, engine
    finally:
        if server.proc is None:  # a failed test must not leave the session's server down
            server.start()
        engine.dispose()


def _rows_per_call(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(select(calls.c.call_id, func.count()).group_by(calls.c.call_id)).all())


def _count(engine, table, call_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(table).where(table.c.call_id == call_id)
        ).scalar()


def _stored(engine) -> dict[str, int]:
    try:
        return _rows_per_call(engine)
    except Exception:  # noqa: BLE001 -- the server is still coming back
        engine.dispose()
        return {}


def test_the_database_server_stopped_mid_run_loses_no_call_and_stores_none_twice(
    service, asterisk, postgresql
):
    server, url, engine = postgresql
    svc = service(DATABASE_URL=url.reveal(), INSTANCE_ID="outage")
    directory = svc.log_path.parent / "state" / "spool" / "outage"

    # Before: the drainer stores a call, so it is running and the schema is right.
    before = asterisk.place_call(ENDS)
    svc.wait(lambda: before in _stored(engine), timeout=30)

    # The victim's caller speaks and the agent answers; both turns reach its journal.
    victim = asterisk.place_call(LONG)
    journal = spool.journal_path(directory, victim)

    def journaled() -> list[dict]:
        try:
            return crashed.read_journal(journal)[1]
        except FileNotFoundError:
            return []

    svc.wait(lambda: {t["side"] for t in journaled()} >= {"caller", "agent"}, timeout=30)
    row = svc.call_row(victim)
    assert row is not None and row["pid"]

    # The server goes away for real, mid-run.
    engine.dispose()
    server.stop()
    during = [asterisk.place_call(ENDS) for _ in range(3)]
    # They end while it is down (their workers are gone, so they have written their records)
    # and the drainer has tried and failed to store them.
    seen: set[str] = set()

    def all_ended() -> bool:  # each was a live call once and is gone now (status lists live calls)
        live = {row["call_id"] for row in svc.status()["calls"]}
        seen.update(live & set(during))
        return seen == set(during) and not live & seen and victim in live

    svc.wait(all_ended, timeout=30)
    svc.wait(lambda: "cannot store call records yet" in svc.log(), timeout=30)

    # A worker is killed mid-call while the database is down: a helper rebuilds its record
    # from the journal (and removes the journal once the record is written).
    turns_before_kill = journaled()
    os.kill(row["pid"], signal.SIGKILL)
    svc.wait(lambda: svc.call_row(victim) is None and not journal.exists(), timeout=30)
    assert server.proc is None  # all of that happened with the server down

    server.start()
    expected = {before, victim, *during}
    # The drainer's retry delay has grown during the outage (up to 8 s after ~10 s down). A
    # file leaves the spool only once its transaction has committed: an empty spool means
    # everything the drainer will ever store is in the database.
    svc.wait(lambda: spool.pending_records(directory) == [] and _stored(engine), timeout=45)
    assert _rows_per_call(engine) == {call_id: 1 for call_id in expected}
    assert not (directory / "bad").exists()  # no record was set aside as unstorable

    [victim_call] = queries.find_calls(engine, victim)
    assert victim_call["complete"] is False and victim_call["end_reason"] == "worker_crashed"
    assert victim_call["worker_exit"] == "signal:SIGKILL"
    assert [(t["side"], t["text"]) for t in victim_call["turns"]] == [
        (t["side"], t["text"]) for t in turns_before_kill
    ]
    assert {t["side"] for t in victim_call["turns"]} >= {"caller", "agent"}
    assert "setup_bridged" in [e["kind"] for e in victim_call["events"]]  # its journaled set-up timeline
    assert _count(engine, turns, victim) == len(turns_before_kill)  # no turn stored twice
    for call_id in (before, *during):
        [call] = queries.find_calls(engine, call_id)
        assert call["complete"] is True and call["end_reason"] == "caller_hangup", call
        assert [e["kind"] for e in call["events"]].count("ended") == 1
        assert _count(engine, events, call_id) == len(call["events"])
    assert "cb-secret-pw" not in svc.log()  # the URL's password is never logged
