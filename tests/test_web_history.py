"""The dashboard's history on SQLite, MariaDB and PostgreSQL, with two instances sharing the
database: each instance's calls are shown with its name, found by every filter, paged and
exported as CSV; a call's page shows its conversation (what an interrupted caller heard),
its timeline and its cost; the users the two instances share."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
import requests
from records_fixtures import a_record, database, db_servers  # noqa: F401 -- fixtures
from webtest import ADMIN, WebServe, add_user, login

from records.migrate import upgrade
from records.store import open_engine, store_delivery, store_record, store_summary

pytestmark = pytest.mark.slow


def _history(engine) -> None:
    now = time.time()
    store_record(
        engine,
        a_record(
            "1733.1",
            "clinic",
            agent="citas",
            events=[
                {"offset_ms": 1500, "kind": "tool_call", "detail": {"name": "lookup", "ms": 120}},
                {"offset_ms": 4000, "kind": "dtmf", "detail": {"digits": 4, "secret": True}},
                {"offset_ms": 9000, "kind": "transferred", "detail": {"destination": "front desk"}},
            ],
        ),
    )
    for target, delivered, outcome in (
        ("0b7b37fc22236cd4", True, "HTTP 204"),
        ("9f0744b75a58331c", False, "retried for too long"),
    ):
        store_delivery(
            engine,
            {
                "instance": "clinic",
                "event_id": "e" * 32,
                "target": target,
                "call_id": "1733.1",
                "type": "call.ended",
                "created_at": now,
                "finished_at": now + 5,
                "delivered": delivered,
                "attempts": 1 if delivered else 40,
                "outcome": outcome,
            },
        )
    store_record(
        engine,
        a_record(
            "1733.2",
            "isp",
            caller="+34911000333",
            dialled="200",
            agent="soporte",
            end_reason="agent_hangup",
            turns=[
                {"side": "caller", "offset_ms": 900, "text": "Mi fibra no funciona", "interrupted": False},
                # a phased reply (gpt-realtime-2.x) whose answer a barge-in dropped unheard
                {"side": "agent", "offset_ms": 2000, "text": "Déjeme comprobarlo.", "phase": "preamble"},
                {
                    "side": "agent",
                    "offset_ms": 2600,
                    "text": "Su línea está activa.",
                    "interrupted": True,
                    "heard": "",
                    "phase": "answer",
                },
            ],
        ),
    )
    store_summary(  # issue 29: a summary and fields, on the page and in the table, searchable
        engine,
        {
            "instance": "isp",
            "call_id": "1733.2",
            "summary": "La fibra del cliente no funciona; se le llamará.",
            "fields": {"reason": "outage", "customer_id": None, "callback_needed": True},
            "model": "gpt-5.4-mini",
            "input_tokens": 700,
            "output_tokens": 90,
            "cost": 0.000930,
            "summarized_at": now,
        },
    )
    for n in range(55):  # more than a page of one instance's older calls
        store_record(
            engine, a_record(f"1700.{n}", "isp", started_at=now - 3 * 86400 - n * 60, agent="soporte")
        )


def test_two_instances_share_the_history_and_its_users(database, tmp_path):  # noqa: F811
    engine = open_engine(database)
    upgrade(engine)
    _history(engine)
    engine.dispose()
    shared = {"DATABASE_URL": database.url.render_as_string(hide_password=False)}
    (tmp_path / "clinic").mkdir(), (tmp_path / "isp").mkdir()
    clinic = WebServe(tmp_path / "clinic", INSTANCE_ID="clinic", **shared).start()
    isp = WebServe(tmp_path / "isp", INSTANCE_ID="isp", **shared).start()
    try:
        add_user(clinic.env, *ADMIN, "admin")  # made through one instance's settings...
        for web in (clinic, isp):
            s = login(web.base, *ADMIN)  # ...it logs in on both
            everything = s.get(web.base + "/calls", timeout=10).text
            assert "57 calls" in everything and "page 1 of 2" in everything
            assert ">clinic<" in everything and ">isp<" in everything  # every instance, by name
            assert "/calls/clinic/1733.1" in everything and "/calls/isp/1733.2" in everything
        s = login(clinic.base, *ADMIN)

        def found(**params) -> str:
            reply = s.get(clinic.base + "/calls", params=params, timeout=10)
            assert reply.status_code == 200
            return reply.text

        assert "1 call<" in found(instance="clinic") and "/calls/clinic/1733.1" in found(instance="clinic")
        assert "/calls/isp/1733.2" in found(caller="911000")
        assert "1 call<" in found(number="200")
        assert "1 call<" in found(agent="citas")
        assert "1 call<" in found(end_reason="agent_hangup")
        assert "/calls/isp/1733.2" in found(text="fibra") and "1 call<" in found(text="fibra")
        assert "/calls/clinic/1733.1" in found(text="Claro, tenemos")  # heard: an interrupted turn
        today = time.strftime("%Y-%m-%d")
        assert "2 calls" in found(since=today, until=today)
        older = found(page="2")
        assert "page 2 of 2" in older and "Newer" in older and "Older" not in older
        export = s.get(clinic.base + "/calls.csv", params={"instance": "isp"}, timeout=10)
        assert export.headers["content-type"].startswith("text/csv")
        assert "attachment" in export.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert len(rows) == 56 and {r["instance"] for r in rows} == {"isp"}
        assert {"call_id", "caller", "cost_estimate", "setup_ms"} <= set(rows[0])
        [summarized] = [r for r in rows if r["call_id"] == "1733.2"]  # the export's summary columns
        assert summarized["summary"] == "La fibra del cliente no funciona; se le llamará."
        assert json.loads(summarized["summary_fields"])["callback_needed"] is True

        call = s.get(clinic.base + "/calls/clinic/1733.1", timeout=10).text
        assert "Quiero una cita" in call  # the caller's turn
        assert (
            '<span class="heard">Claro, tenemos</span><del class="unheard"> el lunes o el martes</del>'
            in call
        )
        assert "tool call" in call and "name: lookup" in call and "destination: front desk" in call
        assert "set-up: answered" in call and "set-up: bridged" in call
        assert "digits: 4, secret: True" in call  # a secret's count, never its digits
        assert '<tr class="webhook-delivered">' in call and "0b7b37fc22236cd4" in call and "HTTP 204" in call
        assert '<tr class="webhook-given-up">' in call and "retried for too long" in call
        assert "input audio tokens" in call
        spanish = s.get(
            clinic.base + "/calls/clinic/1733.1", headers={"Accept-Language": "es"}, timeout=10
        ).text
        assert "Conversación" in spanish and "llamada a herramienta" in spanish
        phased = s.get(clinic.base + "/calls/isp/1733.2", timeout=10).text
        assert phased.count('<span class="phase">preamble</span>') == 1  # the answer is not marked
        assert "interrupted before its first word" in phased and "Su línea está activa." in phased
        assert '<p id="summary">La fibra del cliente no funciona; se le llamará.</p>' in phased
        assert (
            "<dt>callback_needed</dt><dd>true</dd>" in phased and "<dt>customer_id</dt><dd>-</dd>" in phased
        )
        assert "gpt-5.4-mini · 790 tokens · 0.0009" in phased
        table = found(instance="isp")
        assert (
            '<td data-label="Summary" class="summary">La fibra del cliente no funciona; se le llamará.</td>'
            in table
        )
        assert "/calls/isp/1733.2" in found(text="callback_needed") and "1 call<" in found(
            text="se le llamará"
        )
        assert s.get(clinic.base + "/calls/clinic/no.such", timeout=10).status_code == 404
    finally:
        clinic.stop(), isp.stop()


def test_a_database_that_is_down_is_a_message_not_an_error_page(tmp_path):
    web = WebServe(
        tmp_path, DATABASE_URL="postgresql+psycopg://cb:db-sekret-77@127.0.0.1:9/callbridge"
    ).start()
    try:
        page = requests.get(web.base + "/login", timeout=30)
        assert page.status_code == 200 and "cannot be read: OperationalError" in page.text
        assert "db-sekret-77" not in page.text and "db-sekret-77" not in web.log()
    finally:
        web.stop()
