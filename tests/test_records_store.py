"""The call history's store on SQLite, MariaDB and PostgreSQL: migrations from an empty
database, one row per call exactly once, its turns and events, and the CLI's queries."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from records_fixtures import a_record, database, db_servers  # noqa: F401 -- the parametrized fixture
from sqlalchemy import column, func, inspect, select, table, text

from records import queries
from records.migrate import current, head, upgrade
from records.privacy import mask_number, number_hash
from records.schema import calls, metadata, turns
from records.store import call_row as store_call_row
from records.store import open_engine, store_record, store_summary, turn_rows, utc


@pytest.fixture
def engine(database):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_migrating_an_empty_database_gives_exactly_the_declared_tables(database):  # noqa: F811
    engine = open_engine(database)
    assert current(engine) is None
    upgrade(engine)
    assert current(engine) == head() == "0010"
    assert {"calls", "turns", "events", "users", "web_sessions", "audit"} <= set(
        inspect(engine).get_table_names()
    )
    with engine.connect() as conn:  # what the migrations built is what records/schema.py says
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    upgrade(engine)  # again: nothing to do, nothing fails
    assert current(engine) == head()
    engine.dispose()


def test_migrating_from_the_first_schema_keeps_its_calls_without_a_caller_hash(database):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        _insert_call_before("0002", conn, a_record("old.1"))
    upgrade(engine)
    assert current(engine) == head()
    [old] = queries.recent_calls(engine)
    assert old["call_id"] == "old.1" and old["caller"] == "+34600111222" and old["caller_hash"] == ""
    engine.dispose()


def test_migrating_from_the_second_schema_keeps_its_calls_with_no_transcription_cost(database):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine, "0002")
    with engine.begin() as conn:
        _insert_call_before("0003", conn, a_record("old.2", cost_estimate=0.5))
    upgrade(engine)
    assert current(engine) == head()
    [old] = queries.recent_calls(engine)
    assert old["call_id"] == "old.2" and old["cost_estimate"] == 0.5 and old["transcription_seconds"] == 20.0
    assert old["transcription_model"] == "" and old["transcription_cost"] is None
    engine.dispose()


# calls' columns each later migration adds: a row of an older schema has none of them
ADDED = {
    "0002": ("caller_hash",),
    "0003": ("transcription_model", "transcription_cost"),
    "0008": ("session_seconds",),
    "0009": tuple(f"recording_{n}" for n in ("path", "bytes", "seconds", "sha256", "state")),
}


def _insert_call_before(revision: str, conn, record: dict) -> None:
    later = {name for added, names in ADDED.items() if added >= revision for name in names}
    row = {k: v for k, v in store_call_row(record).items() if k not in later}
    conn.execute(table("calls", *(column(name) for name in row)).insert().values(**row))


def test_migrating_from_the_ninth_schema_gives_its_calls_no_summary_and_then_takes_one(database):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine, "0009")
    with engine.begin() as conn:
        _insert_call_before("0010", conn, {**a_record("old.9"), "cost_estimate": 0.25})
    upgrade(engine)
    [old] = queries.find_calls(engine, "old.9")
    assert (old["summary"], old["summary_fields"], old["summary_cost"], old["summarized_at"]) == (
        "",
        {},
        None,
        None,
    )
    result = {
        "instance": old["instance"],
        "call_id": "old.9",
        "summary": "Internet down since Monday; a callback was promised. \u00f1",
        "fields": {"reason": "outage", "customer_id": None, "callback_needed": True},
        "model": "gpt-5.4-mini",
        "input_tokens": 812,
        "output_tokens": 96,
        "cost": 0.001041,
        "summarized_at": 1765100000.5,
    }
    assert store_summary(engine, result) is True and store_summary(engine, result) is False
    [new] = queries.find_calls(engine, "old.9")
    engine.dispose()
    assert new["summary"] == result["summary"] and new["summary_fields"] == result["fields"]
    assert (new["summary_model"], new["summary_input_tokens"], new["summary_output_tokens"]) == (
        "gpt-5.4-mini",
        812,
        96,
    )
    assert new["summary_cost"] == pytest.approx(0.001041) and new["cost_estimate"] == pytest.approx(0.251041)
    assert new["summarized_at"] is not None


def test_migrating_from_the_eighth_schema_gives_its_calls_no_recording(database):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine, "0008")
    with engine.begin() as conn:
        _insert_call_before("0009", conn, a_record("old.8"))
    upgrade(engine)
    [old] = queries.find_calls(engine, "old.8")
    assert (old["recording_path"], old["recording_bytes"], old["recording_state"]) == ("", 0, "")
    recorded = {
        "path": "/r/2026-12-07/new.9.wav",
        "bytes": 44 + 64000,
        "seconds": 2.0,
        "sha256": "ab" * 32,
        "state": "complete",
    }
    assert store_record(engine, a_record("new.9", recording=recorded))
    [new] = queries.find_calls(engine, "new.9")
    assert new["recording_path"] == recorded["path"] and new["recording_seconds"] == 2.0
    assert new["recording_bytes"] == 64044 and new["recording_sha256"] == "ab" * 32
    engine.dispose()


def test_migrating_from_the_seventh_schema_gives_its_calls_no_session_time(database):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine, "0007")
    with engine.begin() as conn:
        _insert_call_before("0008", conn, a_record("old.7", cost_estimate=0.5))
    upgrade(engine)
    [old] = queries.find_calls(engine, "old.7")
    assert old["session_seconds"] == 0.0 and old["cost_estimate"] == 0.5
    engine.dispose()


def test_migrating_from_the_fifth_schema_keeps_its_turns_without_a_phase(database):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine, "0005")
    record = a_record("old.5")
    with engine.begin() as conn:
        _insert_call_before("0008", conn, record)
        for row in turn_rows(record):
            row.pop("phase")  # 0006 adds it
            conn.execute(table("turns", *(column(name) for name in row)).insert().values(**row))
    upgrade(engine)
    assert current(engine) == head()
    [old] = queries.find_calls(engine, "old.5")
    assert [t["phase"] for t in old["turns"]] == [None, None, None]
    assert old["turns"][2]["heard"] == "Claro, tenemos"
    assert store_record(engine, a_record("new.6"))
    [new] = queries.find_calls(engine, "new.6")
    assert [t["phase"] for t in new["turns"]] == [None, None, "answer"]
    engine.dispose()


def test_a_record_is_stored_once_with_its_turns_and_events(engine):
    record = a_record()
    assert store_record(engine, record) is True
    assert store_record(engine, record) is False  # the drainer sent it again: no change
    assert store_record(engine, a_record(caller="+1999")) is False  # same key: the first one stays
    [call] = queries.find_calls(engine, record["call_id"])
    assert call["caller"] == "+34600111222" and call["caller_name"] == "Ana"
    assert call["instance"] == "clinic" and call["end_reason"] == "caller_hangup"
    assert call["duration_s"] == 61.5 and call["complete"] is True
    assert call["setup_ms"] == {"answered": 9.3, "bridged": 19.4}
    assert call["frames_in"] == 3000 and call["underruns"] == 2 and call["barge_ins"] == 1
    assert call["input_cached_tokens"] == 64 and call["output_audio_tokens"] == 1200
    assert abs((call["started_at"] - utc(record["started_at"])).total_seconds()) < 1e-3
    assert [t["text"] for t in call["turns"]] == [
        t["text"] for t in record["turns"]
    ]  # in order, UTF-8 intact
    interrupted = call["turns"][2]
    assert interrupted["interrupted"] is True and interrupted["heard"] == "Claro, tenemos"
    assert interrupted["phase"] == "answer"
    assert call["turns"][0]["heard"] is None and call["turns"][0]["phase"] is None  # no phase given
    assert call["events"] == [{"seq": 0, "offset_ms": 4100, "kind": "barge_in", "detail": {"heard_ms": 700}}]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(calls)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(turns)).scalar() == 3


def test_two_instances_keep_their_own_call_of_the_same_id(engine):
    assert store_record(engine, a_record(instance="clinic"))
    assert store_record(engine, a_record(instance="shop", caller="+1555"))
    found = queries.find_calls(engine, "1733412345.42")
    assert [(c["instance"], c["caller"]) for c in found] == [("clinic", "+34600111222"), ("shop", "+1555")]
    assert [c["instance"] for c in queries.find_calls(engine, "1733412345.42", "shop")] == ["shop"]


def test_a_record_that_is_not_a_call_is_refused_and_changes_nothing(engine):
    with pytest.raises(ValueError):
        store_record(engine, {"call_id": "x"})  # no instance, no start
    with pytest.raises(ValueError):
        store_record(engine, {**a_record(), "started_at": "yesterday"})
    assert queries.recent_calls(engine) == []


def test_recent_calls_filter_by_time_caller_number_and_end_reason(engine):
    now = time.time()
    store_record(engine, a_record("a", started_at=now - 3 * 86400, caller="+34911000001", dialled="100"))
    store_record(
        engine,
        a_record("b", started_at=now - 3600, caller="+34911000002", dialled="200", end_reason="idle_timeout"),
    )
    store_record(engine, a_record("c", started_at=now - 60, caller="+44207000003", dialled="100_%"))
    ids = lambda rows: [r["call_id"] for r in rows]  # noqa: E731
    assert ids(queries.recent_calls(engine)) == ["c", "b", "a"]  # newest first
    since = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)
    assert ids(queries.recent_calls(engine, queries.CallFilter(since=since))) == ["c", "b"]
    assert ids(queries.recent_calls(engine, queries.CallFilter(until=since))) == ["a"]
    assert ids(queries.recent_calls(engine, queries.CallFilter(caller="+34911"))) == ["b", "a"]
    assert ids(queries.recent_calls(engine, queries.CallFilter(number="_%"))) == ["c"]  # no wildcards
    assert ids(queries.recent_calls(engine, queries.CallFilter(end_reason="idle_timeout"))) == ["b"]
    assert ids(queries.recent_calls(engine, limit=1)) == ["c"]
    assert ids(queries.iter_calls(engine)) == ["a", "b", "c"]  # export: oldest first


def test_a_masked_caller_is_found_by_the_hash_of_the_full_number(engine):
    key = "k" * 16
    full = "+34600111222"
    masked = a_record("m", caller=mask_number(full, 3), caller_hash=number_hash(full, key))
    store_record(engine, masked)
    store_record(
        engine, a_record("other", caller="+34600999888", caller_hash=number_hash("+34600999888", key))
    )
    [row] = [r for r in queries.recent_calls(engine) if r["call_id"] == "m"]
    assert row["caller"] == "+********222" and full not in str(row)
    query = "+34 600 111 222"  # as typed
    found = queries.recent_calls(
        engine, queries.CallFilter(caller=query, caller_hash=number_hash(query, key))
    )
    assert [r["call_id"] for r in found] == ["m"]
    by_digits = queries.recent_calls(
        engine, queries.CallFilter(caller="222", caller_hash=number_hash("222", key))
    )
    assert [r["call_id"] for r in by_digits] == ["m"]  # the visible digits still match


def test_a_channel_name_holding_the_callers_number_is_masked_there_only():
    from records.privacy import mask_within

    assert mask_within("Local/34600111222@from-trunk-0000002a;2", "+34600111222", 3) == (
        "Local/********222@from-trunk-0000002a;2"
    )
    assert mask_within("PJSIP/600111222-00000001", "+34 600 111 222", 2) == "PJSIP/*******22-00000001"
    assert mask_within("PJSIP/trunk-00000001", "+34600111222", 3) == "PJSIP/trunk-00000001"
    assert mask_within("SIP/1001-0000000b", "", 3) == "SIP/1001-0000000b"  # anonymous


def test_masking_existing_calls_masks_each_number_once_and_the_full_number_still_finds_it(engine):
    key = "k" * 16
    store_record(engine, a_record("old.1", caller="+34600111222"))  # stored before masking
    store_record(engine, a_record("old.2", caller="+34 600-999 888", instance="branch"))
    store_record(engine, a_record("anon", caller=""))  # anonymous: nothing to mask
    already = a_record(
        "new", caller=mask_number("+34600555444", 3), caller_hash=number_hash("+34600555444", key)
    )
    store_record(engine, already)
    assert queries.mask_callers(engine, 3, key, instance="clinic", batch=1) == 1  # one instance only
    assert queries.mask_callers(engine, 3, key, batch=1) == 1  # then the other's
    assert queries.mask_callers(engine, 3, key) == 0  # again: nothing left to mask
    rows = {r["call_id"]: r for r in queries.recent_calls(engine)}
    assert rows["old.1"]["caller"] == "+********222" and rows["old.2"]["caller"] == "+********888"
    assert rows["old.1"]["caller_hash"] == number_hash("+34600111222", key)
    assert rows["anon"]["caller"] == "" and rows["new"] == {**rows["new"], "caller": already["caller"]}
    assert rows["new"]["caller_hash"] == already["caller_hash"]  # never re-hashed from the mask
    assert "600111222" not in str(rows) and "600-999" not in str(rows)
    found = queries.recent_calls(
        engine, queries.CallFilter(caller="+34600999888", caller_hash=number_hash("+34600999888", key))
    )
    assert [r["call_id"] for r in found] == ["old.2"]


def test_usage_sums_calls_minutes_and_tokens_per_day_and_month(engine):
    base = datetime(2026, 3, 30, 12, 0).timestamp()
    for n, day in enumerate((0, 0, 1, 3)):
        store_record(engine, a_record(f"c{n}", started_at=base + day * 86400, duration_s=90.0))
    days = queries.usage(engine, "day")
    assert [(d["period"], d["calls"], d["minutes"]) for d in days] == [
        ("2026-03-30", 2, 3.0),
        ("2026-03-31", 1, 1.5),
        ("2026-04-02", 1, 1.5),
    ]
    assert days[0]["input_audio_tokens"] == 1600 and days[0]["cost"] is None
    months = queries.usage(engine, "month")
    assert [(m["period"], m["calls"]) for m in months] == [("2026-03", 3), ("2026-04", 1)]


def test_sqlite_runs_in_wal_mode(tmp_path):
    from callbridge.database_url import DatabaseUrl

    engine = open_engine(DatabaseUrl.sqlite_file(tmp_path / "h.db"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_retention_deletes_old_calls_with_their_turns_and_keeps_the_rest(engine):
    from records.drainer import sweep_old

    now = time.time()
    for n in range(3):
        store_record(engine, a_record(f"old.{n}", started_at=now - 40 * 86400))
    store_record(engine, a_record("new", started_at=now - 86400))
    assert sweep_old(engine, 30) == 3
    assert [c["call_id"] for c in queries.recent_calls(engine)] == ["new"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(turns)).scalar() == 3  # the new call's
    assert sweep_old(engine, 30) == 0


def test_a_price_table_gives_each_call_its_cost_and_usage_sums_it():
    from callbridge.prices import PriceTable

    table = PriceTable.parse('{"gpt-realtime-2.1": {"input_audio": 32, "input_text": 4, "output_audio": 64}}')
    usage = a_record()["usage"]  # 800 audio in, 300 text in, 1200 audio out
    assert table.estimate("gpt-realtime-2.1", usage) == pytest.approx((800 * 32 + 300 * 4 + 1200 * 64) / 1e6)
    assert table.estimate("another-model", usage) is None  # no guess
    assert table.transcription("gpt-transcribe", usage) is None  # not priced here: adds nothing
    assert table.estimate("gpt-realtime-2.1", usage, "gpt-transcribe") == table.estimate(
        "gpt-realtime-2.1", usage
    )
    for bad, problem in (
        ("[1]", "JSON object"),
        ('{"m": {"audio": 1}}', "unknown kind"),
        ('{"m": {"input_text": -1}}', ">= 0"),
    ):
        with pytest.raises(ValueError, match=problem):
            PriceTable.parse(bad)


def test_transcription_is_priced_per_minute_of_audio_with_a_default_for_gpt_transcribe():
    from callbridge.prices import DEFAULTS, PriceTable

    usage = a_record()["usage"]  # 20 s of the caller's speech transcribed
    tokens = PriceTable(DEFAULTS).estimate("gpt-realtime-2.1", usage)
    defaults = PriceTable().with_defaults("USD")
    assert defaults.transcription("gpt-transcribe", usage) == pytest.approx(0.0045 * 20 / 60)
    assert defaults.estimate("gpt-realtime-2.1", usage, "gpt-transcribe") == pytest.approx(
        tokens + 0.0045 * 20 / 60
    )
    # The operator's price, in the same form as the others, wins over the default.
    mine = PriceTable.parse('{"gpt-transcribe": {"transcription_minute": 0.006}}').with_defaults("usd")
    assert mine.transcription("gpt-transcribe", usage) == pytest.approx(0.002)
    assert mine.estimate("gpt-realtime-2.1", usage, "gpt-transcribe") == pytest.approx(tokens + 0.002)
    # In another currency the dollar defaults are not used, the operator's price is.
    euros = PriceTable.parse('{"m": {"input_audio": 10}, "t": {"transcription_minute": 0.01}}')
    assert euros.with_defaults("EUR").transcription("gpt-transcribe", usage) is None
    assert euros.with_defaults("EUR").transcription("t", usage) == pytest.approx(0.01 / 3, abs=1e-6)
    assert euros.transcription("", usage) is None  # transcription off
    with pytest.raises(ValueError, match="transcription_minute"):
        PriceTable.parse('{"t": {"per_minute": 0.01}}')  # the error names the kinds, this one too


def test_usage_adds_up_the_costs_in_their_currency(engine):
    store_record(engine, a_record("p1", cost_estimate=0.25, currency="EUR"))
    store_record(engine, a_record("p2", cost_estimate=0.5, currency="EUR"))
    store_record(engine, a_record("p3", cost_estimate=0.5, currency="EUR", transcription_cost=0.125))
    [day] = queries.usage(engine, "day")
    assert day["cost"] == 1.25 and day["currency"] == "EUR"
    assert day["transcription_minutes"] == 1.0 and day["transcription_cost"] == 0.125  # 3 x 20 s


def test_an_alerts_batch_is_stored_once_per_channel_and_notice(engine):
    from records.schema import alerts
    from records.store import store_alerts

    batch = {
        "kind": "alerts",
        "instance": "main",
        "batch_id": "b" * 32,
        "sent_at": 1764633600.25,
        "alerts": [
            {
                "key": "worker_crashes",
                "kind": "firing",
                "severity": "critical",
                "text": "3 crashed",
                "channel": "webhook 1 (slack)",
                "delivered": True,
                "how": "HTTP 200",
            },
            {
                "key": "worker_crashes",
                "kind": "firing",
                "severity": "critical",
                "text": "3 crashed",
                "channel": "mail to ops",
                "delivered": False,
                "how": "connection refused",
            },
        ],
    }
    assert store_alerts(engine, batch) is True
    assert store_alerts(engine, batch) is False  # a drainer killed before the unlink sends it again
    with engine.connect() as conn:
        rows = list(conn.execute(select(alerts).order_by(alerts.c.seq)).mappings())
    assert [(r["channel"], r["delivered"], r["outcome"]) for r in rows] == [
        ("webhook 1 (slack)", True, "HTTP 200"),
        ("mail to ops", False, "connection refused"),
    ]
    assert rows[0]["sent_at"].microsecond == 250000  # microseconds kept on every backend
    with pytest.raises(ValueError):
        store_alerts(engine, {"kind": "alerts", "instance": "main"})  # set aside, not retried


def test_a_server_that_stops_answering_is_an_outage_not_a_hang(database):  # noqa: F811
    """Issue 22, item 11: MySQL had read and write timeouts; PostgreSQL had none but the
    connect's, so a statement a server never answered held the drainer for ever."""
    from records.store import PG_LOCK_TIMEOUT_MS, PG_STATEMENT_TIMEOUT_MS, open_engine

    engine = open_engine(database)
    if database.backend == "postgresql":
        with engine.connect() as conn:
            assert (
                conn.execute(text("SHOW statement_timeout")).scalar() == f"{PG_STATEMENT_TIMEOUT_MS // 1000}s"
            )
            assert conn.execute(text("SHOW lock_timeout")).scalar() == f"{PG_LOCK_TIMEOUT_MS // 1000}s"
            params = conn.connection.dbapi_connection.info.get_parameters()
            assert params.get("tcp_user_timeout") == "30000" and params.get("keepalives") == "1", params
    elif database.backend == "mysql":
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert (raw._read_timeout, raw._write_timeout) == (30, 30)
    engine.dispose()
