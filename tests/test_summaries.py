"""Post-call summaries (issue 29): from a call's spooled record to a summary and fields on its
row, a `call.summary` webhook event and an e-mail, against the simulated Responses API
(simulators/responses.py), a real SQLite database and a real SMTP server (aiosmtpd); what
is sent (only what the record keeps), what a failure does (retried from the spool, the
record never touched), and what an agents file may say."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from smtp_server import smtp_channel, smtp_server
from testenv import self_signed_certificate

from callbridge.agent_file import AgentFileError, load_agents_file
from callbridge.database_url import DatabaseUrl
from callbridge.prices import DEFAULTS, PriceTable
from callbridge.summary_spec import response_schema
from records import outbox, queries, spool, summary_queue
from records.drainer import drain_once
from records.migrate import upgrade
from records.store import RecordRefused, open_engine, store_summary
from records.summary_queue import SummaryFigures
from simulators.clients import ResponsesSim
from summaries import responses
from summaries.summarizer import Summarizer
from supervisor.budgets import SummarySpend

MODEL = "gpt-5.4-mini"
FIELDS = {
    "reason": {"type": "string", "enum": ["outage", "billing", "other"]},
    "customer_id": {"type": ["string", "null"], "description": "the customer number, if given"},
    "callback_needed": {"type": "boolean"},
}
SPEC = {"fields": FIELDS, "email": [], "email_batch_minutes": 0, "instructions": "", "model": MODEL}
HOOK = "ab12cd34ef56ab78"  # a webhook target key (callbridge/call_webhooks.py::target_key)


@pytest.fixture(scope="module")
def sim():
    server = ResponsesSim()
    yield server
    server.stop()


@pytest.fixture
def place(tmp_path, sim):
    sim.reset()
    engine = open_engine(DatabaseUrl.sqlite_file(tmp_path / "calls.db"))
    upgrade(engine)
    yield tmp_path / "spool", engine
    engine.dispose()


def _record(call_id: str, **changes) -> dict:
    now = time.time()
    record = {
        "instance": "main",
        "call_id": call_id,
        "caller": "+3460****222",  # as masked by RECORDS_MASK_CALLERS
        "caller_name": "Ana",
        "dialled": "100",
        "started_at": now - 60,
        "ended_at": now,
        "duration_s": 60.0,
        "agent": "support",
        "model": "gpt-realtime-2.1",
        "end_reason": "caller_hangup",
        "currency": "USD",
        "cost_estimate": 0.05,
        "complete": True,
        "turns": [
            {
                "side": "caller",
                "offset_ms": 900,
                "text": "My internet is down since Monday",
                "interrupted": False,
            },
            {
                "side": "agent",
                "offset_ms": 2500,
                "text": "Let me check the line in your area.",
                "interrupted": True,
                "heard": "Let me check",
            },
            {
                "side": "caller",
                "offset_ms": 4000,
                "text": "Customer 4471, please call me back",
                "interrupted": False,
            },
        ],
        "events": [{"offset_ms": 3000, "kind": "dtmf", "detail": {"digits": 4, "secret": True}}],
        spool.WEBHOOKS: [HOOK],
        summary_queue.HEADER: SPEC,
    }
    record.update(changes)
    return record


def _summarizer(spool_dir: Path, sim: ResponsesSim, **kwargs) -> Summarizer:
    return Summarizer(
        "main", spool_dir, sim.url, sim.api_key, PriceTable().with_defaults("USD"), 24.0, **kwargs
    )


def _stored(engine, call_id: str) -> dict:
    [call] = queries.find_calls(engine, call_id)
    return call


def test_a_call_gets_its_summary_fields_cost_and_webhook_event(place, sim):
    spool_dir, engine = place
    spool.write_record(spool_dir, _record("1733.1"))
    drain_once(engine, spool_dir)  # the record first, as the drainer takes files in time order
    assert _stored(engine, "1733.1")["summary"] == ""
    figures = SummaryFigures(1.0)
    assert _summarizer(spool_dir, sim, figures=figures).pass_once() == 1
    drain_once(engine, spool_dir)
    call = _stored(engine, "1733.1")
    # the simulator quotes the transcript's first words: it read this call
    assert call["summary"].startswith("Call to agent support"), call["summary"]
    assert set(call["summary_fields"]) == set(FIELDS)
    assert call["summary_fields"]["reason"] == "outage" and call["summary_fields"]["callback_needed"] is True
    assert call["summary_model"] == MODEL
    assert call["summary_input_tokens"] > 0 and call["summary_output_tokens"] > 16
    prices = DEFAULTS[MODEL]
    expected = (
        call["summary_input_tokens"] * prices["input_text"]
        + call["summary_output_tokens"] * prices["output_text"]
    ) / 1e6
    assert call["summary_cost"] == pytest.approx(expected, rel=1e-3)
    assert call["cost_estimate"] == pytest.approx(
        0.05 + expected, rel=1e-6
    )  # the call's estimate includes it
    assert call["summarized_at"] is not None
    assert figures.summarized == 1 and figures.spent == {"support": pytest.approx(expected, rel=1e-3)}
    # What was sent: the turns (what the caller heard of the cut reply), a strict schema, not stored.
    [sent] = sim.requests()
    said = sent["input"][0]["content"]
    assert "caller: My internet is down since Monday" in said and "agent: Let me check\n" in said
    assert "in your area" not in said  # not heard by the caller, so not what happened
    assert "+3460" not in json.dumps(sent) and "Ana" not in json.dumps(sent)  # no number, no name
    assert sent["store"] is False and sent["model"] == MODEL
    form = sent["text"]["format"]
    assert form["type"] == "json_schema" and form["strict"] is True
    assert form["schema"]["properties"]["fields"]["required"] == list(FIELDS)
    # The call's webhooks hear of it, after call.ended.
    [queue] = outbox.queues(spool_dir, "main")
    events = [json.loads(p.read_text()) for p in outbox.waiting(queue)]
    assert [e["type"] for e in events] == ["call.ended", "call.summary"]
    assert (
        events[1]["data"]["fields"] == call["summary_fields"]
        and events[1]["data"]["cost"] == call["summary_cost"]
    )
    assert summary_queue.waiting(summary_queue.queue_dir(spool_dir, "main")) == []  # the job is gone


def test_nothing_is_sent_when_the_record_keeps_no_text(place, sim):
    """RECORDS_TRANSCRIPTS=false: the record's turns have no text, so there is no job at all."""
    spool_dir, engine = place
    silent = [{**turn, "text": ""} for turn in _record("x")["turns"]]
    for turn in silent:
        turn.pop("heard", None)
    spool.write_record(spool_dir, _record("1733.2", turns=silent))
    spool.write_record(spool_dir, _record("1733.3", **{summary_queue.HEADER: None}))  # summaries off
    assert summary_queue.waiting(summary_queue.queue_dir(spool_dir, "main")) == []
    assert _summarizer(spool_dir, sim).pass_once() == 0
    assert sim.requests() == []
    drain_once(engine, spool_dir)
    assert _stored(engine, "1733.2")["summary"] == "" and _stored(engine, "1733.2")["summary_cost"] is None


def test_a_failing_model_is_retried_from_the_spool_and_the_record_is_never_touched(place, sim):
    spool_dir, engine = place
    spool.write_record(spool_dir, _record("1733.4"))
    drain_once(engine, spool_dir)
    before = _stored(engine, "1733.4")
    summarizer = _summarizer(spool_dir, sim)
    now = time.time()
    for kind in ("server_error", "rate_limit_exceeded", "garbage"):
        sim.fault(kind)
        assert summarizer.pass_once(now) == 0
        [path] = summary_queue.waiting(summarizer.queue)
        job = json.loads(path.read_text())
        assert job["next_at"] > now and job["last_failure"]  # waits its own back-off
        assert summarizer.pass_once(now) == 0 and len(sim.requests()) == job["attempts"]  # not before it
        now = job["next_at"] + 0.1
    assert job["attempts"] == 3 and job["last_failure"] == "an answer that is not JSON"
    assert summarizer.figures.failures == 3
    drain_once(engine, spool_dir)
    assert _stored(engine, "1733.4") == before  # three failures changed nothing of the record
    assert summarizer.pass_once(now) == 1
    drain_once(engine, spool_dir)
    assert _stored(engine, "1733.4")["summary"]


def test_an_unknown_model_makes_the_queue_wait_until_the_setting_is_mended(place, sim):
    spool_dir, engine = place
    spool.write_record(spool_dir, _record("1733.5"))
    spool.write_record(spool_dir, _record("1733.6"))
    summarizer = _summarizer(spool_dir, sim, model="gpt-retired")  # SUMMARY_MODEL wrong (or retired)
    assert summarizer.pass_once() == 0
    assert len(sim.requests()) == 1  # one request: the model is every job's, so the queue waits
    sim.fault("model_not_found", 2)  # as the API says it: a 400, still the configuration's
    for _ in range(4):
        now = summarizer.paused_until + 0.1
        summarizer.pass_once(now)
    assert len(sim.requests()) == 5 and summarizer.figures.given_up == 0  # retried, never given up
    [first, _second] = summary_queue.waiting(summarizer.queue)
    job = json.loads(first.read_text())
    assert job["last_failure"] == "HTTP 404 model_not_found" and job["refusals"] == 0
    mended = _summarizer(spool_dir, sim, model=MODEL)  # SUMMARY_MODEL mended, the service restarted
    assert mended.pass_once(now + 3600) == 2
    assert sim.requests()[-1]["model"] == MODEL
    # A failure of one job's own (an answer out of the schema) holds up no other.
    spool.write_record(spool_dir, _record("1733.7"))
    spool.write_record(spool_dir, _record("1733.8"))
    sim.fault("hostile")
    assert mended.pass_once(now + 3600) == 1
    # Past SUMMARY_RETRY_HOURS a job is set aside, logged and counted.
    summarizer.pass_once(time.time() + 25 * 3600)
    assert summarizer.figures.given_up == 1
    assert [p.name.endswith("_1733.7.json") for p in (summarizer.queue / "bad").iterdir()] == [True]
    # A refusal by the model is for good.
    refusal = {
        "status": "completed",
        "output": [{"type": "message", "content": [{"type": "refusal", "refusal": "no"}]}],
    }
    with pytest.raises(responses.Failure) as caught:
        responses.parse(refusal, MODEL)
    assert caught.value.for_good


def test_broken_answers_and_broken_files_are_failures_never_a_crash(place, sim):
    spool_dir, _engine = place
    spool.write_record(spool_dir, _record("1733.16"))
    summarizer = _summarizer(spool_dir, sim)
    now = time.time()
    for kind, said in (
        ("cut", "ChunkedEncodingError"),
        ("hostile", "an answer that is not the schema's JSON"),
    ):
        sim.fault(kind)
        assert summarizer.pass_once(now) == 0
        [path] = summary_queue.waiting(summarizer.queue)
        job = json.loads(path.read_text())
        assert said in job["last_failure"], job["last_failure"]
        now = job["next_at"] + 0.1
    # Out of output tokens: billed, so counted; three answers that refuse the call set it aside.
    sim.fault("incomplete", 3)
    for _ in range(3):
        summarizer.pass_once(now)
        jobs = summary_queue.waiting(summarizer.queue)
        if jobs:
            now = json.loads(jobs[0].read_text())["next_at"] + 0.1
    assert summary_queue.waiting(summarizer.queue) == [] and summarizer.figures.given_up == 1
    [kept] = (summarizer.queue / "bad").iterdir()
    # set aside after two of them: the hostile answer was out of the schema, a refusal too
    billed = 2 * (900 * 0.75 + 4000 * 4.5) / 1e6
    assert json.loads(kept.read_text())["spent"] == pytest.approx(billed)
    assert summarizer.figures.spent["support"] == pytest.approx(billed)  # in the agent's budget
    # Job files of the wrong shape are set aside, mail entries of the wrong shape removed.
    for name, text in (
        ("1_a.json", '{"call_id": "a", "next_at": "soon", "turns": []}'),
        ("2_b.json", '{"call_id": "b", "turns": [1]}'),
    ):
        (summarizer.queue / name).write_text(text)
    batch = summary_queue.mail_dir(spool_dir, "main") / "x"
    batch.mkdir(parents=True)
    (batch / "3_c.json").write_text('{"addresses": ["a@b.c"], "queued_at": "yesterday"}')
    summarizer.pass_once(now + 1000)  # past the outage's pause (the cut answer's)
    assert summarizer.figures.given_up == 3 and summary_queue.waiting(batch) == []


def test_an_outage_makes_the_whole_queue_wait_not_each_call(place, sim):
    spool_dir, _engine = place
    for call_id in ("1733.17", "1733.18", "1733.19"):
        spool.write_record(spool_dir, _record(call_id))
    summarizer = _summarizer(spool_dir, sim)
    sim.fault("rate_limit_exceeded")
    now = time.time()
    assert summarizer.pass_once(now) == 0
    assert len(sim.requests()) == 1  # one request, not one per call
    assert summarizer.paused_until == pytest.approx(now + 7)  # its Retry-After
    assert summarizer.pass_once(now + 6) == 0 and len(sim.requests()) == 1
    assert summarizer.pass_once(now + 7.1) == 3 and len(sim.requests()) == 4  # then all go


def test_a_call_erased_while_its_summary_is_asked_for_is_not_written_posted_or_mailed(place, sim, tmp_path):
    import threading

    from records.erasure import Places, erase_call

    spool_dir, engine = place
    mailed = {**SPEC, "email": ["desk@example.org"]}
    spool.write_record(spool_dir, _record("1733.20", **{summary_queue.HEADER: mailed}))
    drain_once(engine, spool_dir)
    summarizer = _summarizer(spool_dir, sim)
    sim.fault("slow", seconds=1.5)
    seen = []

    def erase_when_asked() -> None:  # `calls erase`, while the model thinks
        deadline = time.monotonic() + 10
        while not list(summarizer.queue.glob("*.working")) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(bool(list(summarizer.queue.glob("*.working"))))
        erase_call(engine, Places(spool_dir, tmp_path / "recordings"), "main", "1733.20")

    eraser = threading.Thread(target=erase_when_asked)
    eraser.start()
    summarizer.pass_once()  # the summarizer's main thread: its deadline is SIGALRM's
    eraser.join(10)
    assert seen == [True], "the job was not being asked about"
    assert summarizer.figures.summarized == 0
    left = [p for p in spool_dir.rglob("*") if p.is_file() and "1733.20" in p.read_text(errors="replace")]
    assert left == [], left


def test_a_recipient_the_server_refuses_does_not_make_the_others_get_it_again(place, sim, tmp_path):
    spool_dir, _engine = place
    (tmp_path / "tls").mkdir()
    certificate = self_signed_certificate(tmp_path / "tls")
    controller, inbox = smtp_server(certificate)
    try:
        spec = {**SPEC, "email": ["desk@example.org", "nobody@example.org"]}
        spool.write_record(spool_dir, _record("1733.21", **{summary_queue.HEADER: spec}))
        summarizer = _summarizer(spool_dir, sim, mail_server=smtp_channel(controller.port, certificate[0]))
        summarizer.pass_once(), summarizer.pass_once(), summarizer.pass_once(time.time() + 3600)
        [(_sender, to, _text)] = inbox.messages
        assert to == ["desk@example.org"] and summarizer.figures.mails_sent == 1
    finally:
        controller.stop()


def test_the_budgets_seed_leaves_out_summaries_this_run_counts_itself(place):
    from datetime import UTC, datetime, timedelta

    from records.queries import cost_by_agent

    spool_dir, engine = place
    spool.write_record(spool_dir, _record("1733.22", cost_estimate=0.05))
    drain_once(engine, spool_dir)
    run_start = datetime.now(UTC).replace(tzinfo=None)
    result = {
        "instance": "main",
        "call_id": "1733.22",
        "summary": "s",
        "cost": 0.002,
        "summarized_at": time.time() + 1,
    }
    store_summary(engine, result)  # made by this run, after its start
    day = (run_start - timedelta(days=1), run_start + timedelta(days=1))
    assert cost_by_agent(engine, *day, "main")["support"] == pytest.approx(0.052)
    assert cost_by_agent(engine, *day, "main", run_start=run_start)["support"] == pytest.approx(0.05)


def test_store_summary_is_idempotent_and_refuses_a_call_it_does_not_have(place):
    _spool, engine = place
    result = {
        "instance": "main",
        "call_id": "nope",
        "summary": "s",
        "fields": {},
        "summarized_at": time.time(),
    }
    with pytest.raises(RecordRefused):
        store_summary(engine, result)
    spool.write_record(_spool, _record("1733.7"))
    drain_once(engine, _spool)
    result = {**result, "call_id": "1733.7", "cost": 0.001, "input_tokens": 10, "output_tokens": 5}
    assert store_summary(engine, result) is True
    assert store_summary(engine, result) is False  # stored twice: once
    assert _stored(engine, "1733.7")["cost_estimate"] == pytest.approx(0.051)


def test_summaries_are_mailed_per_call_and_in_batches(place, sim, tmp_path):
    spool_dir, _engine = place
    (tmp_path / "tls").mkdir()
    certificate = self_signed_certificate(tmp_path / "tls")
    controller, inbox = smtp_server(certificate)
    try:
        server = smtp_channel(controller.port, certificate[0])
        per_call = {**SPEC, "email": ["desk@example.org"]}
        batched = {**SPEC, "email": ["boss@example.org", "desk@example.org"], "email_batch_minutes": 30}
        spool.write_record(spool_dir, _record("1733.8", **{summary_queue.HEADER: per_call}))
        spool.write_record(spool_dir, _record("1733.9", **{summary_queue.HEADER: batched}))
        spool.write_record(spool_dir, _record("1733.10", **{summary_queue.HEADER: batched}))
        summarizer = _summarizer(spool_dir, sim, mail_server=server)
        assert summarizer.pass_once() == 3
        summarizer.pass_once()  # the mail goes first in a pass
        [(sender, to, text)] = inbox.messages  # the per-call one at once; the batch waits
        assert sender == "callbridge@example.org" and to == ["desk@example.org"]
        assert "1733.8" in text and "customer_id" in text and "+3460****222" in text
        assert "My internet is down" not in text  # the summary, never the transcript
        summarizer.pass_once(time.time() + 31 * 60)  # the batch's half hour is over
        assert len(inbox.messages) == 2
        _sender, to, text = inbox.messages[1]
        assert sorted(to) == ["boss@example.org", "desk@example.org"]
        assert "1733.9" in text and "1733.10" in text and "2 calls summarized" in text
        assert summarizer.figures.mails_sent == 2
    finally:
        controller.stop()
    # The server is gone: the next mail waits in the spool and is retried, nothing is lost.
    spool.write_record(spool_dir, _record("1733.11", **{summary_queue.HEADER: per_call}))
    summarizer.pass_once(), summarizer.pass_once()
    assert summarizer.figures.mail_failures == 1
    [batch] = [d for d in summary_queue.mail_dir(spool_dir, "main").iterdir() if summary_queue.waiting(d)]
    assert [p.name for p in summary_queue.waiting(batch)][0].endswith("_1733.11.json")


def test_the_budget_counts_what_the_summaries_cost(tmp_path):
    path = tmp_path / "main.summaries.json"
    spend = SummarySpend(path, 5.0)
    assert spend.grown() == {}
    figures = SummaryFigures(5.0, summarized=1, spent={"support": 0.002})
    figures.save(path)
    assert spend.grown() == {"support": 0.002}
    assert spend.grown() == {}  # unchanged file: nothing read
    figures.spent = {"support": 0.005, "sales": 0.001}
    time.sleep(0.01)
    figures.save(path)
    path.touch()
    assert spend.grown() == pytest.approx({"support": 0.003, "sales": 0.001})
    SummaryFigures(6.0, spent={"support": 9.0}).save(path)  # another run's file: not ours
    assert spend.grown() == {}


def test_the_schema_is_strict_all_the_way_down():
    schema = response_schema(
        {"items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}}
    )
    fields = schema["properties"]["fields"]
    assert schema["required"] == ["summary", "fields"] and schema["additionalProperties"] is False
    assert fields["required"] == ["items"] and fields["additionalProperties"] is False
    inner = fields["properties"]["items"]["items"]
    assert inner["required"] == ["sku"] and inner["additionalProperties"] is False


def test_an_agents_file_declares_fields_and_addresses_and_its_mistakes_are_named(tmp_path):
    good = tmp_path / "agents.toml"
    good.write_text(
        """
[agents.support]
numbers = ["*"]
[agents.support.summary]
email = ["desk@example.org"]
email_batch_minutes = 60
[agents.support.summary.fields]
reason = {type = "string", description = "why they called"}
customer_id = {type = ["string", "null"]}
[agents.quiet]
numbers = ["200"]
summary = {enabled = false}
"""
    )
    book = load_agents_file(good)
    spec = book.agents["support"].summary
    assert spec.email == ("desk@example.org",) and spec.email_batch_minutes == 60
    assert set(spec.fields) == {"reason", "customer_id"}
    assert book.agents["quiet"].summary.enabled is False
    bad = tmp_path / "bad.toml"
    bad.write_text(
        """
[agents.support]
numbers = ["*"]
[agents.support.summary]
email = ["not an address"]
email_batch_minutes = -1
colour = "blue"
[agents.support.summary.fields]
reason = {type = "text"}
"bad name" = {type = "string"}
address = {type = "object"}
"""
    )
    with pytest.raises(AgentFileError) as caught:
        load_agents_file(bad)
    text = str(caught.value)
    for expected in (
        "summary.email: must be a list of e-mail addresses",
        "summary.email_batch_minutes: must be a whole number between 0",
        "summary.colour: unknown key",
        "summary.fields.reason: type must be one of",
        'summary.fields."bad name": is not a name',
        "summary.fields.address: an object needs its properties",
    ):
        assert expected in text, text


def test_an_erased_call_leaves_no_summary_job_result_or_mail_behind(place, sim, tmp_path):
    from records.erasure import Places, erase_call

    spool_dir, engine = place
    mailed = {**SPEC, "email": ["desk@example.org"], "email_batch_minutes": 60}
    spool.write_record(spool_dir, _record("1733.12", **{summary_queue.HEADER: mailed}))
    spool.write_record(spool_dir, _record("1733.13", **{summary_queue.HEADER: mailed}))
    drain_once(engine, spool_dir)
    summarizer = _summarizer(spool_dir, sim)
    summarizer.one(summary_queue.waiting(summarizer.queue)[0], time.time())  # 1733.12: summarized, mail waits
    assert list(spool_dir.glob("*_+summary-1733.12.json")) and summary_queue.call_files(spool_dir, "1733.12")
    assert summary_queue.call_files(spool_dir, "1733.13")  # its job waits
    for call_id in ("1733.12", "1733.13"):
        erase_call(engine, Places(spool_dir, tmp_path / "recordings"), "main", call_id)
        assert summary_queue.call_files(spool_dir, call_id) == []
    leftovers = [p for p in spool_dir.rglob("*") if p.is_file() and "1733.1" in p.read_text(errors="replace")]
    assert leftovers == [], leftovers


def test_the_supervisor_adds_the_summaries_cost_to_the_agents_budget(tmp_path):
    """supervisor/agents_side.py::AgentsSide.count_summaries, from the summarizer's figures file:
    an agent over its daily budget because of its summaries gets no new calls."""
    from callbridge import config as cfg
    from callbridge.agents import Agent, AgentBook
    from supervisor.agents_side import AgentsSide
    from supervisor.stopping import Stopping

    environ = {
        "ASTERISK_USERNAME": "u",
        "ASTERISK_PASSWORD": "p",
        "OPENAI_API_KEY": "sk-test",
        "STATE_DIR": str(tmp_path),
        "SUMMARY_MODEL": MODEL,
    }
    settings = cfg.load(env_file=None, environ=environ).settings
    started = time.time()
    book = AgentBook({"support": Agent(name="support", daily_budget=0.001)})
    side = AgentsSide(settings, book, started, lambda *a: None, lambda f, *a: f(*a), Stopping(30))
    path = summary_queue.figures_path(settings.state_dir, settings.instance)
    SummaryFigures(round(started, 3), summarized=3, spent={"support": 0.0012}).save(path)
    side.count_summaries(time.monotonic())
    assert side.summary()["support"]["spent_today"] == pytest.approx(0.0012)
    assert side.budgets.over("support", 0.001, time.time())
    side.count_summaries(time.monotonic())  # within SPEND_LOOK: not looked at again, not counted twice
    side.next_spend_look = 0.0
    side.count_summaries(time.monotonic())  # unchanged file: nothing added
    assert side.summary()["support"]["spent_today"] == pytest.approx(0.0012)


def test_the_metrics_count_summaries_mails_and_the_waiting_jobs(place, tmp_path):
    import shutil
    import subprocess

    from prometheus_client import CollectorRegistry, generate_latest

    from metrics.collector import SupervisorCollector, summary_families

    spool_dir, _engine = place
    spool.write_record(spool_dir, _record("1733.14"))
    path = tmp_path / "main.summaries.json"
    SummaryFigures(7.0, summarized=4, failures=2, given_up=1, mails_sent=3, mail_failures=1).save(path)
    collector = SupervisorCollector("/nonexistent", "main", spool_dir=spool_dir, summary_figures_file=path)
    figures = collector.summaries(7.0)
    assert (figures["summarized"], figures["given_up"], figures["waiting"]) == (4, 1, 1)

    class Fixed:
        def collect(self):
            return summary_families({"instance": "main"}, figures)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    assert 'callbridge_summaries_total{instance_id="main",outcome="failed"} 2.0' in text
    assert 'callbridge_summaries_mailed_total{instance_id="main",outcome="sent"} 3.0' in text
    assert 'callbridge_summaries_waiting{instance_id="main"} 1.0' in text
    if shutil.which("promtool"):  # the names and help as Prometheus's own linter reads them
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_summaries_given_up_are_an_alert():
    from alerts.watch import Recent, holding

    recent = Recent()
    recent.summaries_failed(100.0, 2)
    found = holding(100.0, True, recent, {})
    assert found["summaries_given_up"].text.startswith(
        "2 post-call summaries or their e-mails were given up within"
    )
    recent.prune(100.0 + 3600)
    assert "summaries_given_up" not in holding(100.0 + 3600, True, recent, {})


@pytest.mark.slow
def test_a_services_calls_are_summarized_even_a_crashed_one_and_mailed(service, asterisk, realtime, tmp_path):
    """The whole path on a running service: a finished call and one whose worker is killed
    (its record rebuilt from the journal) both get their summary in the history, the agent's
    e-mail reaches a real SMTP server, and `cb-summaries` ends with the service."""
    import os
    import signal
    import subprocess
    import sys
    from urllib.parse import quote

    import psutil
    from smtp_server import PASSWORD, USER

    (tmp_path / "tls").mkdir()
    certificate = self_signed_certificate(tmp_path / "tls")
    controller, inbox = smtp_server(certificate)
    model = ResponsesSim(api_key=realtime.api_key)
    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[agents.desk]\nnumbers = ["*"]\n[agents.desk.summary]\nemail = ["desk@example.org"]\n'
        '[agents.desk.summary.fields]\nreason = {type = "string"}\ncallback_needed = {type = "boolean"}\n'
    )
    try:
        svc = service(
            AGENTS_FILE=str(agents),
            SUMMARY_MODEL=MODEL,
            OPENAI_RESPONSES_URL=model.url,
            ALERT_SMTP_URL=f"smtp://{quote(USER)}:{quote(PASSWORD)}@127.0.0.1:{controller.port}",
            ALERT_EMAIL_TO="ops@example.org",
            ALERT_SMTP_CA_FILE=str(certificate[0]),
        )
        done = asterisk.place_call([{"say": 1000}, {"silence": 2500}, {"hangup": True}])
        victim = asterisk.place_call([{"say": 1000}, {"silence": 30000}])
        row = svc.wait(lambda: (r := svc.call_row(victim)) and r["frames_out"] >= 25 and r, timeout=20)
        journal = tmp_path / "state" / "spool" / svc.env.get("INSTANCE_ID", "openai-app")
        svc.wait(
            lambda: any(p.name.endswith(".journal") and "turn" in p.read_text() for p in journal.glob("*")),
            timeout=20,
        )
        os.kill(row["pid"], signal.SIGKILL)

        def summarized() -> dict:
            shown = subprocess.run(
                [sys.executable, "-m", "callbridge.cli", "calls", "--json"],
                env=svc.env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if shown.returncode != 0:
                return {}
            calls = {c["call_id"]: c for c in json.loads(shown.stdout) if c["summary"]}
            return calls if {done, victim} <= set(calls) else {}

        calls = svc.wait(summarized, timeout=40)
        assert calls[victim]["complete"] is False  # rebuilt after the crash, and summarized all the same
        for call in calls.values():
            assert call["summary_fields"] == {
                "reason": call["summary_fields"]["reason"],
                "callback_needed": True,
            }
            assert call["summary_model"] == MODEL and call["summary_cost"] > 0
        mailed = svc.wait(
            lambda: len(m := [m for m in inbox.messages if m[1] == ["desk@example.org"]]) == 2 and m
        )
        assert done in "".join(m[2] for m in mailed) and victim in "".join(m[2] for m in mailed)
        helpers = [p for p in psutil.Process(svc.proc.pid).children() if p.name() == "cb-summaries"]
        assert len(helpers) == 1
        assert svc.stop() == 0
        psutil.wait_procs(helpers, timeout=10)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in helpers)
        assert PASSWORD not in svc.log() and realtime.api_key not in svc.log()
    finally:
        model.stop()
        controller.stop()
