"""`callbridge db upgrade`, `calls`, `calls show`, `calls export`, `calls import` and
`usage` through typer's CliRunner on a real SQLite file; and a real service whose calls,
one of them crashed, reach the call history through the spool and the drainer."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from records_fixtures import a_record
from typer.testing import CliRunner

from callbridge.cli import app
from callbridge.database_url import DatabaseUrl
from records.migrate import upgrade
from records.store import open_engine, store_record

runner = CliRunner()
ERASED_NUMBER = "+34600999001"


def cli(tmp_path, *args: str, **env: str):
    environ = {"STATE_DIR": str(tmp_path / "state"), "INSTANCE_ID": "clinic", "DATABASE_URL": "", **env}
    return runner.invoke(app, list(args), env=environ, catch_exceptions=False)


@pytest.fixture
def history(tmp_path):
    """A migrated history with three calls: two yesterday-ish, one crashed today."""
    url = DatabaseUrl.sqlite_file(tmp_path / "state" / "callbridge.db")
    (tmp_path / "state").mkdir()
    engine = open_engine(url)
    upgrade(engine)
    now = time.time()
    store_record(engine, a_record("100.1", started_at=now - 30 * 3600, caller="+34911000001"))
    store_record(
        engine,
        a_record("100.2", started_at=now - 26 * 3600, caller="+44207000002", end_reason="idle_timeout"),
    )
    store_record(engine, a_record("100.3", started_at=now - 60, complete=False, end_reason="worker_crashed"))
    engine.dispose()
    return tmp_path


def test_db_upgrade_creates_then_finds_the_schema_up_to_date(tmp_path):
    from records.migrate import head

    first = cli(tmp_path, "db", "upgrade")
    assert first.exit_code == 0 and f"migrated from empty to {head()}" in first.output and head() == "0010"
    again = cli(tmp_path, "db", "upgrade")
    assert again.exit_code == 0 and f"up to date (revision {head()})" in again.output


def test_calls_import_into_a_new_history_makes_it(tmp_path):
    """It said "no call history yet", and `db upgrade` was the only way in."""
    records = tmp_path / "calls"
    records.mkdir()
    (records / "300.1.json").write_text(
        json.dumps({"call_id": "300.1", "caller": "+3493", "end_reason": "caller_hangup", "duration_s": 3.0})
    )
    result = cli(tmp_path, "calls", "import", str(records))
    assert result.exit_code == 0 and "imported 1 calls" in result.stdout, result.output
    assert [c["call_id"] for c in json.loads(cli(tmp_path, "calls", "--json").stdout)] == ["300.1"]


def test_calls_before_any_history_says_so(tmp_path):
    result = cli(tmp_path, "calls")
    assert result.exit_code == 1 and "no call history yet" in result.output


def test_calls_lists_newest_first_and_filters(history):
    result = cli(history, "calls")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[2] for line in lines[1:]] == ["100.3", "100.2", "100.1"]
    # Which database was read, on stderr: stdout stays the data (issue 22, item 19).
    assert result.stderr == f"call history: sqlite:///{history / 'state' / 'callbridge.db'}\n"
    assert "rebuilt after a crash" in lines[1]
    only = json.loads(cli(history, "calls", "--caller", "+44", "--json").stdout)
    assert [c["call_id"] for c in only] == ["100.2"] and only[0]["started_at"].endswith("+00:00")
    recent = json.loads(cli(history, "calls", "--since", "2h", "--json").stdout)
    assert [c["call_id"] for c in recent] == ["100.3"]
    ended = json.loads(cli(history, "calls", "--end-reason", "idle_timeout", "--json").stdout)
    assert [c["call_id"] for c in ended] == ["100.2"]
    assert json.loads(cli(history, "calls", "--number", "999", "--json").stdout) == []
    bad = cli(history, "calls", "--since", "last tuesday")
    assert bad.exit_code == 2 and "not a date" in bad.output


def test_calls_show_prints_the_transcript_with_what_was_heard(history):
    result = cli(history, "calls", "show", "100.1")
    assert result.exit_code == 0, result.output
    assert "+34911000001" in result.output and "61.5 s, worker exit:0" in result.output
    assert "Quiero una cita" in result.output
    assert "[interrupted; heard: 'Claro, tenemos']" in result.output
    data = json.loads(cli(history, "calls", "show", "100.1", "--json").stdout)
    assert len(data[0]["turns"]) == 3 and data[0]["events"][0]["kind"] == "barge_in"
    missing = cli(history, "calls", "show", "nope")
    assert missing.exit_code == 1 and "no call 'nope'" in missing.output


def test_export_as_csv_and_json_lines(history):
    out = cli(history, "calls", "export")
    assert out.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["call_id"] for r in rows] == ["100.1", "100.2", "100.3"]  # oldest first
    assert rows[0]["caller"] == "+34911000001" and json.loads(rows[0]["setup_ms"])["bridged"] == 19.4
    lines = cli(history, "calls", "export", "--format", "jsonl", "--since", "2h").stdout.splitlines()
    assert [json.loads(line)["call_id"] for line in lines] == ["100.3"]
    assert json.loads(lines[0])["turns"][1]["text"] == "Quiero una cita"


def test_import_reads_call_records_dir_files_once(history):
    records = history / "calls"
    records.mkdir()
    legacy = {
        "call_id": "200.1",
        "caller": "+3493",
        "dialled": "100",
        "end_reason": "caller_hangup",
        "duration_s": 12.5,
        "frames_in": 600,
        "frames_out": 300,
        "barge_ins": 0,
        "underruns": 0,
        "setup_ms": {"bridged": 20.0},
        "setup_bridge_retries": 0,
        "usage": {
            "input_tokens": 50,
            "output_tokens": 80,
            "input_audio_tokens": 40,
            "output_audio_tokens": 70,
            "transcription_seconds": 3.0,
        },
        "transcript": [{"role": "caller", "text": "hola", "t": time.time() - 5}],
    }
    (records / "200.1.json").write_text(json.dumps(legacy))
    (records / "broken.json").write_text("{not json")
    first = cli(history, "calls", "import", str(records))
    assert first.exit_code == 1 and "imported 1 calls, 0 were there already, 1 files skipped" in first.output
    again = cli(history, "calls", "import", str(records))
    assert "imported 0 calls, 1 were there already" in again.output
    [call] = json.loads(cli(history, "calls", "show", "200.1", "--json").stdout)
    assert call["instance"] == "clinic" and call["duration_s"] == 12.5
    assert call["input_text_tokens"] == 10 and call["output_audio_tokens"] == 70
    assert call["turns"][0]["text"] == "hola" and call["turns"][0]["side"] == "caller"


def test_usage_per_day_and_month(history):
    days = json.loads(cli(history, "usage", "--json").stdout)
    assert sum(d["calls"] for d in days) == 3 and all(d["minutes"] > 0 for d in days)
    months = json.loads(cli(history, "usage", "--per", "month", "--json").stdout)
    assert sum(m["calls"] for m in months) == 3
    table = cli(history, "usage")
    assert table.exit_code == 0 and table.stdout.startswith("day") and "call history: sqlite:" in table.stderr


def test_calls_show_and_usage_show_the_transcription_minutes_and_their_cost(tmp_path):
    (tmp_path / "state").mkdir()
    engine = open_engine(DatabaseUrl.sqlite_file(tmp_path / "state" / "callbridge.db"))
    upgrade(engine)
    store_record(
        engine,
        a_record(
            "tr.1",
            transcription_model="gpt-transcribe",
            transcription_cost=0.0015,
            cost_estimate=0.1,
            currency="USD",
        ),
    )
    store_record(engine, a_record("tr.2", transcription_model="whisper-x", cost_estimate=0.1, currency="USD"))
    engine.dispose()
    shown = cli(tmp_path, "calls", "show", "tr.1").output
    assert "transcr.  0.33 min (gpt-transcribe): 0.0015 USD, in the cost" in shown
    assert "cost      0.1000 USD" in shown
    unpriced = cli(tmp_path, "calls", "show", "tr.2").output
    assert "0.33 min (whisper-x): not priced (RECORDS_PRICES: transcription_minute)" in unpriced
    table = cli(tmp_path, "usage").stdout.splitlines()
    assert "transcr. min" in table[0] and "transcr. cost" in table[0]
    assert table[1].split()[-4:] == ["0.67", "0.0015", "0.2000", "USD"]
    [day] = json.loads(cli(tmp_path, "usage", "--json").stdout)
    assert day["transcription_minutes"] == 0.67 and day["transcription_cost"] == 0.0015


def test_db_mask_existing_masks_earlier_calls_only_when_masking_is_on(history):
    key = "clinic-hash-key-0123"
    off = cli(history, "db", "mask-existing")
    assert off.exit_code == 2 and "RECORDS_MASK_CALLERS is off" in off.output
    on = {"RECORDS_MASK_CALLERS": "true", "RECORDS_HASH_KEY": key, "RECORDS_MASK_KEEP_DIGITS": "2"}
    done = cli(history, "db", "mask-existing", **on)
    assert done.exit_code == 0 and "masked the caller numbers of 3 calls (last 2 digits kept" in done.output
    listed = json.loads(cli(history, "calls", "--json", **on).stdout)
    assert {c["call_id"]: c["caller"] for c in listed}["100.1"] == "+*********01"
    assert "+34911000001" not in cli(history, "calls", "export", **on).output
    found = json.loads(cli(history, "calls", "--caller", "+34 911 000 001", "--json", **on).stdout)
    assert [c["call_id"] for c in found] == ["100.1"]
    assert "of 0 calls" in cli(history, "db", "mask-existing", **on).output
    assert key not in done.output


def test_the_database_password_never_shows(tmp_path):
    url = "postgresql+psycopg://cb:pw-never-shown@127.0.0.1:1/callbridge"
    result = cli(tmp_path, "calls", DATABASE_URL=url)
    assert result.exit_code == 1 and "cannot read the call history" in result.output
    assert "pw-never-shown" not in result.output and "cb:********@127.0.0.1" in result.output
    shown = cli(
        tmp_path,
        "config",
        "--json",
        DATABASE_URL=url,
        ASTERISK_USERNAME="u",
        ASTERISK_PASSWORD="p4ss",
        OPENAI_API_KEY="sk-x",
    )
    assert "pw-never-shown" not in shown.output and "cb:********@" in shown.output
    bad = cli(tmp_path, "calls", DATABASE_URL="oracle://u:pw-never-shown@h/db")
    assert bad.exit_code == 78 and "not supported" in bad.output and "pw-never-shown" not in bad.output


@pytest.mark.slow
def test_a_services_calls_reach_the_history_even_the_crashed_one(service, asterisk, tmp_path):
    prices = (
        '{"gpt-realtime-2.1": {"input_audio": 32, "input_text": 4, "output_audio": 64},'
        ' "gpt-transcribe": {"transcription_minute": 0.006}}'
    )
    svc = service(RECORDS_PRICES=prices, RECORDS_CURRENCY="EUR", RECORD_CALLS="true")
    done = asterisk.place_call([{"say": 1000}, {"silence": 2500}, {"hangup": True}], caller=ERASED_NUMBER)
    victim = asterisk.place_call([{"say": 1000}, {"silence": 30000}])
    # The victim's first turns are journaled (the simulator transcribes the caller's speech).
    row = svc.wait(lambda: (r := svc.call_row(victim)) and r["frames_out"] >= 25 and r, timeout=20)
    journal = tmp_path / "state" / "spool" / svc.env.get("INSTANCE_ID", "openai-app")
    svc.wait(
        lambda: any(p.name.endswith(".journal") and "turn" in p.read_text() for p in journal.glob("*")),
        timeout=20,
    )
    os.kill(row["pid"], signal.SIGKILL)
    environ = {k: svc.env[k] for k in ("STATE_DIR", "ARI_APP_NAME") if k in svc.env}

    def history() -> dict:
        result = runner.invoke(app, ["calls", "--json"], env=environ, catch_exceptions=False)
        return {c["call_id"]: c for c in json.loads(result.stdout)} if result.exit_code == 0 else {}

    calls = svc.wait(lambda: (h := history()) and {done, victim} <= set(h) and h, timeout=30)
    assert calls[done]["complete"] is True and calls[done]["end_reason"] == "caller_hangup"
    assert calls[done]["caller"] and calls[done]["frames_in"] > 0
    assert calls[done]["cost_estimate"] > 0 and calls[done]["currency"] == "EUR"
    # The caller's speech was transcribed (the simulator reports its seconds): priced per minute.
    assert calls[done]["transcription_model"] == "gpt-transcribe" and calls[done]["transcription_seconds"] > 0
    assert calls[done]["transcription_cost"] == pytest.approx(
        0.006 * calls[done]["transcription_seconds"] / 60
    )
    assert calls[done]["cost_estimate"] > calls[done]["transcription_cost"] > 0
    crashed = calls[victim]
    assert crashed["complete"] is False and crashed["worker_exit"] == "signal:SIGKILL"
    assert crashed["frames_out"] >= 25  # the header's last counters
    assert crashed["transcription_model"] == "gpt-transcribe" and crashed["transcription_cost"] is not None
    [shown] = json.loads(runner.invoke(app, ["calls", "show", victim, "--json"], env=environ).output)
    assert shown["turns"], "the crashed call keeps its turns up to the crash"
    done_turns = json.loads(runner.invoke(app, ["calls", "show", done, "--json"], env=environ).output)[0][
        "turns"
    ]
    assert [t["side"] for t in done_turns][:2] == ["caller", "agent"]
    # The set-up timeline and the end are the call's events, in time order (issue 13).
    events = json.loads(runner.invoke(app, ["calls", "show", done, "--json"], env=environ).output)[0][
        "events"
    ]
    kinds = [e["kind"] for e in events]
    assert (
        kinds[:2] == ["setup_forked", "setup_worker_started"]
        and "setup_answered" in kinds
        and "setup_bridged" in kinds
    )
    assert kinds[-1] == "ended" and events[-1]["detail"]["reason"] == "caller_hangup"
    assert [e["offset_ms"] for e in events] == sorted(e["offset_ms"] for e in events)
    # The crashed call keeps the set-up timeline its worker journaled once media was ready.
    crashed_kinds = [e["kind"] for e in shown["events"]]
    assert crashed_kinds[:2] == ["setup_forked", "setup_worker_started"] and "setup_bridged" in crashed_kinds
    assert crashed_kinds[-1] == "ended" and shown["setup_ms"]["bridged"] > 0
    assert shown["answered_at"] is not None
    _recordings_are_kept_exported_and_erased(svc, environ, calls[done], crashed, tmp_path)


def _recordings_are_kept_exported_and_erased(svc, environ, done: dict, crashed: dict, tmp_path) -> None:
    """Issue 29, on the same service's two calls (recorded: RECORD_CALLS=true): the ended
    call's recording is whole, the killed worker's kept and marked; `calls audio` exports
    one, checked and audited; `calls erase` leaves nothing of a call anywhere."""
    import wave

    from records.recordings import checksum

    recordings = tmp_path / "state" / "recordings" / "openai-app"
    assert done["recording_state"] == "complete" and crashed["recording_state"] == "partial"
    for call in (done, crashed):
        path = Path(call["recording_path"])
        assert path.parent.parent == recordings and checksum(path) == call["recording_sha256"]
        with wave.open(str(path)) as wav:
            assert wav.getnchannels() == 2 and wav.getnframes() / 8000 == pytest.approx(
                call["recording_seconds"], abs=0.01
            )
    assert done["duration_s"] - 1.5 <= done["recording_seconds"] <= done["duration_s"]
    assert crashed["recording_seconds"] >= 0.5  # what its writer had written before the kill
    assert not list((recordings / "partial").iterdir())
    shown = runner.invoke(app, ["calls", "show", done["call_id"]], env=environ)
    assert f"recording {done['recording_seconds']:.1f} s, complete: {done['recording_path']}" in shown.output
    exported = tmp_path / "exported.wav"
    out = runner.invoke(app, ["calls", "audio", done["call_id"], "-o", str(exported)], env=environ)
    assert out.exit_code == 0, out.output
    assert exported.read_bytes() == Path(done["recording_path"]).read_bytes()
    Path(crashed["recording_path"]).write_bytes(b"RIFF changed by hand")
    tampered = runner.invoke(app, ["calls", "audio", crashed["call_id"], "-o", str(exported)], env=environ)
    assert tampered.exit_code == 1 and "does not match its record's SHA-256" in tampered.output
    # Erasure: the record, its turns and events, its recording, and every file of it.
    call_id = done["call_id"]

    def holding() -> list[str]:
        files = (p for p in (tmp_path / "state").rglob("*") if p.is_file() and p.name != "callbridge.log")
        return [p.name for p in files if ERASED_NUMBER.encode() in p.read_bytes()]

    assert holding(), "the history holds the caller's number before the erasure"
    erased = runner.invoke(app, ["calls", "erase", call_id, "--yes"], env=environ)
    assert erased.exit_code == 0, erased.output
    assert "erased the database's record" in erased.output and done["recording_path"] in erased.output
    assert not Path(done["recording_path"]).exists()
    gone = runner.invoke(app, ["calls", "show", call_id], env=environ)
    assert gone.exit_code == 1 and "no call" in gone.output
    # No file keeps the call's number (the log is the log's: it keeps no transcript)
    assert holding() == []
    again = runner.invoke(app, ["calls", "erase", call_id, "--yes"], env=environ)
    assert again.exit_code == 1 and "keeps nothing" in again.output
    from records.accounts import recent_audit

    engine = open_engine(DatabaseUrl.sqlite_file(tmp_path / "state" / "callbridge.db"))
    audit = [(row["action"], row["target"]) for row in recent_audit(engine)]
    assert ("erase", call_id) in audit and ("recording_export", call_id) in audit
    assert ("recording_export", crashed["call_id"]) not in audit  # refused: nothing exported
    engine.dispose()
    assert "RIFF" not in svc.log()


@pytest.mark.slow
def test_masked_callers_leave_no_full_number_in_the_database_or_the_log(service, asterisk, tmp_path):
    key = "clinic-hash-key-never-logged"
    full, masked = "+34600111222", "+********222"
    # At debug level, and with a channel named after the caller (as some dial plans do).
    svc = service(
        RECORDS_MASK_CALLERS="true", RECORDS_MASK_KEEP_DIGITS="3", RECORDS_HASH_KEY=key, LOG_LEVEL="debug"
    )
    named = "Local/34600111222@from-trunk-0000002a;2"
    done = asterisk.place_call([{"say": 1000}, {"silence": 2500}, {"hangup": True}], caller=full, name=named)
    victim = asterisk.place_call([{"say": 1000}, {"silence": 30000}], caller=full)
    row = svc.wait(lambda: (r := svc.call_row(victim)) and r["frames_out"] >= 25 and r, timeout=20)
    assert row["caller"] == masked  # `callbridge status` too
    os.kill(row["pid"], signal.SIGKILL)  # the crashed call's record is made by a helper
    environ = {k: svc.env[k] for k in ("STATE_DIR", "ARI_APP_NAME") if k in svc.env}

    def found(*args: str) -> dict:
        result = runner.invoke(app, ["calls", "--json", *args], env={**environ, "RECORDS_HASH_KEY": key})
        return {c["call_id"]: c for c in json.loads(result.stdout)} if result.exit_code == 0 else {}

    calls = svc.wait(lambda: (h := found()) and {done, victim} <= set(h) and h, timeout=30)
    assert {calls[done]["caller"], calls[victim]["caller"]} == {masked}
    assert calls[done]["caller_hash"] == calls[victim]["caller_hash"] != ""
    # The full number, as typed, finds both calls; another full number finds none.
    assert set(found("--caller", "+34 600 111 222")) == {done, victim}
    assert found("--caller", "+34600111223") == {}
    svc.wait(lambda: "call summary" in svc.log() and svc.log().count("call summary") >= 2, timeout=20)
    log = svc.log()
    assert masked in log and full not in log and key not in log
    assert "600111222" not in log and "Local/********222@from-trunk-0000002a;2" in log
    for path in (tmp_path / "state").rglob("*"):  # the database (and its WAL) and the spool
        if path.is_file():
            assert b"600111222" not in path.read_bytes(), path
            assert key.encode() not in path.read_bytes(), path


def test_records_timezone_sets_the_zone_of_the_dates_shown_read_and_summed(tmp_path):
    (tmp_path / "state").mkdir()
    engine = open_engine(DatabaseUrl.sqlite_file(tmp_path / "state" / "callbridge.db"))
    upgrade(engine)
    late = datetime(2026, 6, 30, 23, 30, tzinfo=UTC).timestamp()  # already July in Madrid (UTC+2)
    store_record(engine, a_record("tz.1", started_at=late))
    engine.dispose()
    madrid = {"RECORDS_TIMEZONE": "Europe/Madrid"}
    assert "2026-07-01 01:30:00" in cli(tmp_path, "calls", **madrid).output
    assert "2026-06-30 23:30:00" in cli(tmp_path, "calls", RECORDS_TIMEZONE="UTC").output
    assert "started   2026-07-01 01:30:00" in cli(tmp_path, "calls", "show", "tz.1", **madrid).output
    assert "tz.1" in cli(tmp_path, "calls", "--since", "2026-07-01", **madrid).output
    assert "no calls" in cli(tmp_path, "calls", "--since", "2026-07-01", RECORDS_TIMEZONE="UTC").output
    [month] = json.loads(cli(tmp_path, "usage", "--per", "month", "--json", **madrid).stdout)
    assert month["period"] == "2026-07"
    bad = cli(tmp_path, "calls", RECORDS_TIMEZONE="Mars/Olympus")
    assert bad.exit_code == 78 and "RECORDS_TIMEZONE" in bad.output and "timezone name" in bad.output
