"""How a record travels: the worker's spool, the rebuild after a crash, and the drainer,
a real process, storing every record exactly once while the database goes away and comes
back (SQLite: locked by another writer; MariaDB and PostgreSQL: the server stopped)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from records_fixtures import a_record, database, db_servers, server_for  # noqa: F401 -- the parametrized fixture
from sqlalchemy import func, select
from testenv import reap, wait_until

from records import crashed, queries, spool
from records.drain_figures import DrainFigures, backlog, figures_path, run_counters
from records.drainer import complete_orphans, drain_once
from records.migrate import upgrade
from records.schema import calls
from records.store import open_engine, store_record

REPO = Path(__file__).resolve().parents[1]


def _spool(tmp_path: Path, started_at: float = 1_790_000_000.0) -> spool.CallSpool:
    header = {
        "version": 1,
        "instance": "clinic",
        "call_id": "1733.7",
        "caller": "+3460",
        "caller_name": "",
        "dialled": "100",
        "started_at": started_at,
        "agent": "",
        "model": "gpt-realtime-2.1",
        "worker_pid": os.getpid(),
    }
    return spool.CallSpool(tmp_path / "spool", header)


def _transcript(started_at: float, n: int) -> list[dict]:
    return [
        {"role": ("caller", "agent")[i % 2], "text": f"turn {i}", "t": started_at + i, "interrupted": False}
        for i in range(n)
    ]


def test_the_worker_journals_each_turn_once_and_its_record_replaces_the_journal(tmp_path):
    call = _spool(tmp_path)
    usage = {"input_tokens": 120, "input_audio_tokens": 100, "output_tokens": 50, "output_audio_tokens": 40}
    call.journal(_transcript(call.started_at, 2), usage)
    call.journal(_transcript(call.started_at, 2), usage)  # nothing new: nothing written
    call.journal(_transcript(call.started_at, 3), usage)
    journal = spool.journal_path(tmp_path / "spool", "1733.7")
    header, turns, last_usage = crashed.read_journal(journal)
    assert header["caller"] == "+3460" and [t["text"] for t in turns] == ["turn 0", "turn 1", "turn 2"]
    assert [t["offset_ms"] for t in turns] == [0, 1000, 2000]
    assert last_usage["input_text_tokens"] == 20 and last_usage["output_audio_tokens"] == 40
    path = call.finish({"ended_at": call.started_at + 5, "end_reason": "caller_hangup", "turns": turns})
    assert not journal.exists()
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [path.name]  # no temp file left
    assert json.loads(path.read_text())["end_reason"] == "caller_hangup"


def test_a_spool_that_cannot_be_written_costs_the_record_not_the_call(tmp_path, caplog):
    (tmp_path / "spool").write_text("a file where the directory should be")
    call = _spool(tmp_path)
    call.journal(_transcript(call.started_at, 1), {})
    assert call.finish({"ended_at": call.started_at + 1}) is None
    assert "cannot journal the call" in caplog.text


def test_after_a_crash_the_record_is_rebuilt_from_the_journal_and_the_last_counters(tmp_path):
    call = _spool(tmp_path)
    call.journal(_transcript(call.started_at, 2), {"input_tokens": 10, "input_audio_tokens": 10})
    with open(spool.journal_path(tmp_path / "spool", "1733.7"), "a") as torn:
        torn.write('{"kind": "turn", "side": "caller", "te')  # the crash hit mid-line
    counters = {
        "frames_in": 900,
        "frames_out": 400,
        "rejected_source": 2,
        "input_tokens": 30,
        "output_tokens": 7,
    }
    done = crashed.complete_crashed(
        tmp_path / "spool", {"instance": "clinic", "call_id": "1733.7"}, counters, "signal:SIGKILL"
    )
    assert done == "rebuilt from the journal (2 turns)"
    [path] = spool.pending_records(tmp_path / "spool")
    record = json.loads(path.read_text())
    assert record["complete"] is False and record["end_reason"] == "worker_crashed"
    assert record["worker_exit"] == "signal:SIGKILL" and record["caller"] == "+3460"
    assert [t["text"] for t in record["turns"]] == ["turn 0", "turn 1"]
    assert record["figures"]["frames_in"] == 900 and record["figures"]["rejected_packets"] == 2
    assert record["usage"]["input_audio_tokens"] == 10 and record["usage"]["input_text_tokens"] == 20
    [ended] = record["events"]  # died before media was ready: no set-up timeline, only the end
    assert ended["kind"] == "ended" and ended["offset_ms"] >= 0
    assert ended["detail"] == {"reason": "worker_crashed", "worker_exit": "signal:SIGKILL"}
    assert not spool.journal_path(tmp_path / "spool", "1733.7").exists()


def test_a_crashed_calls_record_keeps_the_set_up_timeline_the_worker_journaled(tmp_path):
    from call_worker.setup_timeline import SetupTimeline

    call = _spool(tmp_path)
    timeline = SetupTimeline(admitted_ns=1_000_000_000)
    timeline.marks = {"worker_started": 1_004_000_000, "answered": 1_009_300_000, "bridged": 1_019_400_000}
    timeline.bridge_retries = 1
    call.setup(timeline)  # once media is ready (call_worker/call.py)
    call.journal(_transcript(call.started_at, 2), {})
    crashed.complete_crashed(
        tmp_path / "spool", {"instance": "clinic", "call_id": "1733.7"}, {}, "signal:SIGKILL"
    )
    [path] = spool.pending_records(tmp_path / "spool")
    record = json.loads(path.read_text())
    assert record["setup_ms"] == {"worker_started": 4.0, "answered": 9.3, "bridged": 19.4}
    assert record["setup_bridge_retries"] == 1
    assert record["answered_at"] == pytest.approx(call.started_at + 0.0093)
    assert [(e["kind"], e["offset_ms"]) for e in record["events"][:3]] == [
        ("setup_worker_started", 4),
        ("setup_answered", 9),
        ("setup_bridged", 19),
    ]
    assert record["events"][2]["detail"] == {"bridge_retries": 1}
    assert record["events"][-1]["kind"] == "ended" and len(record["events"]) == 4
    assert [t["text"] for t in record["turns"]] == ["turn 0", "turn 1"]  # the turns, as before


def test_a_journal_left_by_a_dead_run_is_completed_by_the_drainer(tmp_path):
    directory = tmp_path / "spool"
    child = os.fork()
    if child == 0:  # a worker that journals one turn and dies without a record
        call = _spool(tmp_path)
        call.header["worker_pid"] = os.getpid()
        call.journal(_transcript(call.started_at, 1), {})
        os._exit(0)
    reap(child)
    assert complete_orphans(directory) == 0  # too fresh: its supervisor's helper may be on it
    assert complete_orphans(directory, now=os.path.getmtime(next(directory.iterdir())) + 61) == 1
    [path] = spool.pending_records(directory)
    assert json.loads(path.read_text())["turns"][0]["text"] == "turn 0"


def test_one_dead_workers_journal_is_completed_once_whoever_comes_to_it(tmp_path):
    """A crash helper and the drainer's orphan pass may both come to one journal: the one
    that claims it completes it; the other leaves it, and after it is done does not write a
    second record from nothing. A claim whose helper died is taken over, and one left beside
    no journal is removed."""
    directory = tmp_path / "spool"
    call = _spool(tmp_path)
    call.journal(_transcript(call.started_at, 2), {})
    path = spool.journal_path(directory, "1733.7")
    claim = crashed.claim_journal(path)  # a crash helper is on it
    assert claim is not None and crashed.claim_journal(path) is None
    header, _, _ = crashed.read_journal(path)
    assert crashed.complete_crashed(directory, header, None, "unknown", journal_found=True) == (
        "being completed by another helper"
    )
    assert spool.pending_records(directory) == [] and path.exists()
    claim.unlink()
    assert (
        crashed.complete_crashed(directory, header, {}, "signal:SIGKILL")
        == "rebuilt from the journal (2 turns)"
    )
    assert not path.exists() and not claim.exists()  # done, and the claim released
    [record] = spool.pending_records(directory)
    record.unlink()  # the drainer stored it
    assert crashed.complete_crashed(directory, header, None, "unknown", journal_found=True) == (
        "completed by another helper"
    )
    assert spool.pending_records(directory) == []  # no second record
    child = os.fork()
    if child == 0:
        os._exit(0)
    reap(child)
    claim.write_text(str(child))  # a helper that died holding it
    path.write_text("")  # (a journal again, for the claim to be beside)
    assert crashed.claim_journal(path) == claim and claim.read_text() == str(os.getpid())  # taken over
    crashed.release(claim)
    assert not claim.exists()
    claim.write_text(str(child))  # a claim its dead helper left beside no journal
    path.unlink()
    assert crashed.stale_claims(directory) == 1 and not claim.exists()


def test_drain_is_idempotent_when_a_record_was_stored_but_its_file_not_removed(tmp_path):
    engine = open_engine_for(tmp_path)
    directory = tmp_path / "spool"
    record = a_record()
    store_record(engine, record)  # a drainer killed after its commit, before the unlink
    spool.write_record(directory, record)
    (directory / "0000000000001_bad.json").write_text("[1, 2]")  # never a row: set aside
    figures = DrainFigures(service=1.0)
    assert drain_once(engine, directory, figures) == 1
    assert spool.pending_records(directory) == [] and (directory / "bad" / "0000000000001_bad.json").exists()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(calls)).scalar() == 1
    assert figures.stored == 0  # it was there already: the metrics never count a record twice


def open_engine_for(tmp_path):
    from callbridge.database_url import DatabaseUrl

    engine = open_engine(DatabaseUrl.sqlite_file(tmp_path / "h.db"))
    upgrade(engine)
    return engine


class Drainer:
    """records/drainer.py::run in its own process, as the supervisor's helper runs it."""

    def __init__(self, url: str, directory: Path, log: Path) -> None:
        code = (
            "import sys; from pathlib import Path; from callbridge import logs; "
            "from records.drainer import run; from callbridge.database_url import DatabaseUrl; "
            "logs.setup('debug', 'text', sys.argv[3]); "
            "run(DatabaseUrl.parse(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[4]), poll=0.1, backoff_max=1.0,"
            " figures_file=Path(sys.argv[5]), service=float(sys.argv[6]))"
        )
        self.figures = directory.parent / "run" / "drainer.json"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                url,
                str(directory),
                str(log),
                str(os.getpid()),
                str(self.figures),
                "7.5",
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def test_the_database_going_away_mid_run_loses_nothing_and_stores_nothing_twice(database, tmp_path):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine)
    directory, log = tmp_path / "spool", tmp_path / "drainer.log"
    drainer = Drainer(database.reveal(), directory, log)
    try:
        for n in range(3):
            spool.write_record(directory, a_record(f"before.{n}", ended_at=1_790_000_000 + n))
        wait_until(lambda: spool.pending_records(directory) == [], timeout=30)

        # The database goes away: locked by another writer (SQLite) or stopped (servers).
        server = server_for(database)
        lock = None
        if server is None:
            lock = sqlite3.connect(database.url.database, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
        else:
            engine.dispose()
            server.stop()
        for n in range(3):
            spool.write_record(directory, a_record(f"during.{n}", ended_at=1_790_000_100 + n))
        killed = _spool(tmp_path)  # a worker killed mid-call while the database is away
        killed.journal(_transcript(killed.started_at, 2), {})
        crashed.complete_crashed(directory, killed.header, {"frames_in": 50}, "signal:SIGKILL")
        wait_until(lambda: "cannot store call records yet" in log.read_text(), timeout=60, interval=0.1)
        assert len(spool.pending_records(directory)) == 4  # waiting, in the spool
        assert backlog(directory) == (4, 1_790_000_100.0)  # what the metrics export, and the oldest
        failed = run_counters(drainer.figures, 7.5)
        assert failed["stored"] == 3 and failed["store_failures"] >= 1  # the drainer's own figures
        drainer.kill()  # and the drainer dies during the outage: its successor carries on
        drainer = Drainer(database.reveal(), directory, log)
        if lock is not None:
            lock.rollback()
            lock.close()
        else:
            server.start()
        wait_until(lambda: spool.pending_records(directory) == [], timeout=60, interval=0.1)
        # Carried on from its predecessor's figures, each record counted once.
        wait_until(lambda: run_counters(drainer.figures, 7.5)["stored"] == 7, timeout=10, interval=0.1)
        assert run_counters(drainer.figures, 7.5)["store_failures"] >= failed["store_failures"]
        assert run_counters(drainer.figures, 8.0) == dict.fromkeys(run_counters(drainer.figures, 7.5), 0)
        assert backlog(directory) == (0, None)
    finally:
        drainer.kill()
    with engine.connect() as conn:
        rows = conn.execute(select(calls.c.call_id, func.count()).group_by(calls.c.call_id)).all()
    assert sorted(rows) == sorted(
        [(f"before.{n}", 1) for n in range(3)] + [(f"during.{n}", 1) for n in range(3)] + [("1733.7", 1)]
    )
    [rebuilt] = queries.find_calls(engine, "1733.7")
    assert rebuilt["complete"] is False and [t["text"] for t in rebuilt["turns"]] == ["turn 0", "turn 1"]
    assert "cb-secret-pw" not in log.read_text()  # the URL's password never reaches the log
    engine.dispose()


def test_with_transcripts_off_turns_keep_side_and_time_but_no_text(tmp_path):
    call = _spool(tmp_path)
    call.transcripts = False
    turns = _transcript(call.started_at, 2)
    turns[1].update(interrupted=True, heard="tu")
    call.journal(turns, {})
    _, journaled, _ = crashed.read_journal(spool.journal_path(tmp_path / "spool", "1733.7"))
    assert [(t["side"], t["offset_ms"], t["text"]) for t in journaled] == [
        ("caller", 0, ""),
        ("agent", 1000, ""),
    ]
    assert (
        "heard" not in journaled[1]
        and "turn 1" not in spool.journal_path(tmp_path / "spool", "1733.7").read_text()
    )


def test_the_journal_keeps_what_the_caller_heard_of_a_cut_reply_only(tmp_path):
    from call_worker.playback import Truncation
    from call_worker.transcript import Transcript

    call = _spool(tmp_path)
    transcript = Transcript()
    transcript.agent_done("item1", "Buenos días, clínica", interrupted=False)
    transcript.truncated(Truncation("item2", audio_end_ms=1000, item_audio_ms=4000))
    transcript.agent_done("item2", "Tenemos cita el lunes a las diez o el martes", interrupted=True)
    call.journal(transcript, {})  # the worker passes call_worker/transcript.py's object
    _, turns, _ = crashed.read_journal(spool.journal_path(tmp_path / "spool", "1733.7"))
    assert "heard" not in turns[0] and turns[0]["interrupted"] is False
    assert turns[1]["interrupted"] is True and turns[1]["text"].startswith("Tenemos cita")
    assert (
        turns[1]["heard"]
        and turns[1]["text"].startswith(turns[1]["heard"])
        and turns[1]["heard"] != turns[1]["text"]
    )


def test_the_drainer_s_figures_belong_to_one_service_run(tmp_path):
    """A drainer restarted within a run resumes its figures; a new run starts from zero."""
    path = figures_path(tmp_path, "main")
    assert path == tmp_path / "run" / "main.drainer.json"
    first = DrainFigures.resume(path, 100.0)
    first.stored, first.alert_batches, first.store_failures = 4, 2, 1
    first.save(path)
    assert DrainFigures.resume(path, 100.0) == first  # the same run, after a drainer restart
    assert DrainFigures.resume(path, 200.0) == DrainFigures(200.0)  # the service started again
    path.write_text("{not json")
    assert DrainFigures.resume(path, 100.0) == DrainFigures(100.0)
    assert not list(path.parent.glob("*.tmp"))  # written by rename: no temp file is left


# --- poison records (issue 22, item 11): one bad record must not stop those after it


def _poison(directory: Path) -> list[str]:
    """Records no database can take, each oldest-first before a good one."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []

    def put(n: int, content: str) -> None:
        name = f"000000000000{n}_poison-{n}.json"
        (directory / name).write_text(content)
        names.append(name)

    put(1, json.dumps(a_record("p1", figures={"frames_in": 2**70})))  # past any BIGINT
    put(2, json.dumps(a_record("p2", turns=[1, "x"])))  # turns that are not objects
    put(3, "[" * 100_000 + "]" * 100_000)  # nested without end: RecursionError
    put(4, json.dumps(a_record("p4", events=["x"])))
    put(5, json.dumps(a_record("p5", duration_s=float("nan"))))
    return names


def test_records_the_database_can_never_take_are_set_aside_and_the_next_is_stored(database, tmp_path):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine)
    directory = tmp_path / "spool"
    set_aside = _poison(directory)
    good = a_record("good-1", caller_name="Ana\x00Marta", turns=[{"side": "caller", "text": "h\x00ola"}])
    good["cost_estimate"] = float("inf")
    spool.write_record(directory, good)
    figures = DrainFigures(service=1.0)
    assert drain_once(engine, directory, figures) == 1
    assert sorted(p.name for p in (directory / "bad").iterdir()) == sorted(set_aside)
    assert figures.set_aside == len(set_aside) and figures.stored == 1
    with engine.connect() as conn:
        row = conn.execute(select(calls).where(calls.c.call_id == "good-1")).mappings().one()
    assert row["caller_name"] == "AnaMarta"  # NUL removed (PostgreSQL refuses it in text)
    assert row["cost_estimate"] is None  # not infinite: no estimate
    assert [t["text"] for t in queries.find_calls(engine, "good-1")[0]["turns"]] == ["hola"]


def test_a_database_that_refuses_every_write_sets_nothing_aside(database, tmp_path):  # noqa: F811
    """Refusing is not the record's fault when the database refuses a plain row too."""
    from sqlalchemy import text

    engine = open_engine(database)
    upgrade(engine)
    directory = tmp_path / "spool"
    spool.write_record(directory, a_record("c1"))
    with engine.begin() as conn:  # the table is gone: every insert fails, as for all records
        conn.execute(text("DROP TABLE turns"))
        conn.execute(text("DROP TABLE events"))
        conn.execute(text("DROP TABLE calls"))
    with pytest.raises(Exception):  # noqa: B017 -- whatever the backend raises: it waits
        drain_once(engine, directory, DrainFigures(service=1.0))
    assert not (directory / "bad").exists() and len(spool.pending_records(directory)) == 1


def test_a_price_table_refuses_numbers_that_are_not_finite():
    from callbridge.prices import PriceTable

    for bad in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match="finite"):
            PriceTable.parse('{"m": {"input_audio": ' + bad + "}}")


# --- durability and retention (issue 22, item 13)


def test_a_spooled_record_s_rename_is_made_durable_with_its_directory(tmp_path, monkeypatch):
    import stat

    synced = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    spool.write_record(tmp_path / "spool", a_record())
    assert synced == [False, True]  # the file, then the directory that holds its new name


def test_retention_removes_old_files_in_call_records_dir_and_bad(tmp_path):
    from records.drainer import sweep_files

    records_dir, bad = tmp_path / "records", tmp_path / "spool" / "bad"
    for directory in (records_dir, bad):
        directory.mkdir(parents=True)
        (directory / "old.json").write_text("{}")
        (directory / "new.json").write_text("{}")
        (directory / "notes.txt").write_text("not ours")
        old = time.time() - 40 * 86400
        os.utime(directory / "old.json", (old, old))
    assert sweep_files([records_dir, bad, tmp_path / "missing"], 30) == 2
    for directory in (records_dir, bad):
        assert sorted(p.name for p in directory.iterdir()) == ["new.json", "notes.txt"]


def test_call_records_dir_files_are_written_whole(calls, tmp_path, monkeypatch):
    """CALL_RECORDS_DIR's file used to be written in place (a reader could see half of it)."""
    records_dir, renames = tmp_path / "records", tmp_path / "renames.txt"
    real_replace = os.replace

    def replace(source, target) -> None:  # the forked worker inherits it
        with open(renames, "a") as out:
            out.write(f"{Path(source).name} {Path(target).name}\n")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    sup = calls(CALL_RECORDS_DIR=str(records_dir))
    call = sup.place([{"say": 400}, {"silence": 600}, {"hangup": True}])
    sup.wait_ended(call)
    files = list(records_dir.iterdir())
    assert [f.name for f in files] == [f"{call.channel_id}.json"]
    assert json.loads(files[0].read_text())["call_id"] == call.channel_id
    assert f"{call.channel_id}.json.tmp {call.channel_id}.json" in renames.read_text().splitlines()
