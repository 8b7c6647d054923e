"""HTTP tools (callbridge/http_tools.py, call_worker/http_calls.py): declared in the agents
file, checked at load, their requests built so that the model's arguments cannot change
where they go, and sent to a real HTTP server on loopback (tests/http_services.py) that
answers well, hangs, trickles, sends garbage, 10 MB, an error or a redirect elsewhere. The
same tools through a worker, on the simulated Realtime server, are at the end."""

from __future__ import annotations

import json
import textwrap
import threading
import time

import pytest
from analysis import (
    LOUD,
    agent_said,
    asks,
    assert_paced,
    gaps_ms,
    packets,
    tool_calls_made,
    tool_outputs_sent,
)
from harness import RealtimeSim, last_session, started
from http_services import Services

from call_worker.http_calls import HttpCalls, Outcome
from callbridge import agents
from callbridge import config as cfg
from callbridge.agent_descriptions import describe_book
from callbridge.agent_file import AgentFileError
from callbridge.http_tools import ArgumentError, request_for
from callbridge.secret import redact
from records import spool

TOKEN = "crm-token-3f9a7c1e5d"
BASE = {
    "ASTERISK_HOST": "127.0.0.1",
    "ASTERISK_USERNAME": "u",
    "ASTERISK_PASSWORD": "p",
    "OPENAI_API_KEY": "sk-unit",
}


@pytest.fixture(scope="module")
def services():
    running = Services()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def crm_token(monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)


def agent_toml(base: str, timeout: float = 2.0) -> str:
    return textwrap.dedent(
        f"""
        [agents.isp]
        numbers = ["*"]

        [agents.isp.tools.line_status]
        description = "The state of a customer's line, by customer number"
        url = "{base}/api/lines/{{customer_id}}"
        parameters = {{ customer_id = {{ type = "string", pattern = "^[0-9]{{4,10}}$" }} }}
        headers = {{ Authorization = "Bearer ${{CRM_TOKEN}}" }}
        timeout_seconds = {timeout}
        result = ["status", "since", "line.speed_mbps"]

        [agents.isp.tools.open_ticket]
        description = "Open a support ticket"
        method = "POST"
        url = "{base}/api/tickets"
        parameters = {{ customer_id = {{ type = "string" }}, problem = {{ type = "string", max_length = 200 }}, urgent = {{ type = "boolean" }} }}
        required = ["customer_id", "problem"]

        [agents.isp.tools.lookup]
        description = "Anything at a path"
        url = "{base}/{{what}}?source=callbridge"
        parameters = {{ what = {{ type = "string" }} }}
        timeout_seconds = {timeout}
        max_response_bytes = 4096
        filler = "Un momento, lo compruebo."
        """
    )


def book_of(text: str, tmp_path) -> agents.AgentBook:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    settings = cfg.load(env_file=None, environ=BASE | {"AGENTS_FILE": str(path)}).settings
    return agents.load_book(settings)


@pytest.fixture
def tools(tmp_path, services):
    return book_of(agent_toml(services.base), tmp_path).agents["isp"].http_tools


# --- the request a call makes


def test_arguments_fill_the_path_and_query_percent_encoded_and_never_move_the_host(tools, services):
    line = tools["line_status"]
    assert request_for(line, '{"customer_id": "12345"}').url == f"{services.base}/api/lines/12345"
    lookup = tools["lookup"]
    for hostile in ("@evil.example", "x@evil.example:80/", "http://evil.example/", "a/b?c#d", "%2e%2e/admin"):
        request = request_for(lookup, json.dumps({"what": hostile}))
        assert request.url.startswith(f"{services.base}/") and request.url.endswith("?source=callbridge")
        assert "/" not in request.url.removeprefix(f"{services.base}/")  # one path segment, encoded
    for walk in (".", ".."):
        with pytest.raises(ArgumentError, match="cannot be"):
            request_for(lookup, json.dumps({"what": walk}))


def test_the_models_arguments_are_checked_against_the_declared_parameters(tools):
    line, ticket = tools["line_status"], tools["open_ticket"]
    for arguments, problem in [
        ('{"customer_id": "12ab"}', "does not match"),
        ('{"customer_id": 12345}', "must be a string"),
        ("{}", "customer_id is required"),
        ('{"customer_id": "12345", "host": "evil"}', "unknown argument 'host'"),
        ("[1, 2]", "must be an object"),
        ("{not json", "not JSON"),
    ]:
        with pytest.raises(ArgumentError, match=problem):
            request_for(line, arguments)
    with pytest.raises(ArgumentError, match="longer than 200"):
        request_for(ticket, json.dumps({"customer_id": "1", "problem": "x" * 201}))
    posted = request_for(ticket, json.dumps({"customer_id": "1", "problem": "no sync", "urgent": True}))
    assert posted.method == "POST" and json.loads(posted.body) == {
        "customer_id": "1",
        "problem": "no sync",
        "urgent": True,
    }


@pytest.mark.parametrize(
    ("tool", "problem"),
    [
        ('url = "ftp://crm.example/x"', "must be an http:// or https:// URL"),
        (
            'url = "https://{host}.example/x"\nparameters = { host = { type = "string" } }',
            "never the host or port",
        ),
        ('url = "https://crm.example:{port}/x"\nparameters = { port = { type = "string" } }', "not a URL"),
        ('url = "https://crm.example/{who}"', "{who} is not one of the parameters"),
        ('url = "https://user:pw@crm.example/x"', "must not hold a user or password"),
        ('url = "https://crm.example/x?key=${CRM_TOKEN}"', "secrets go in headers"),
        (
            'url = "https://crm.example/x"\nheaders = { X-Key = "${NOT_SET_ANYWHERE}" }',
            "NOT_SET_ANYWHERE, which is not set",
        ),
        ('url = "https://crm.example/x"\nmethod = "TRACE"', "must be one of GET"),
        ('url = "https://crm.example/x"\ntimeout_seconds = 120', "between 0.5 and 30.0"),
        ('url = "https://crm.example/x"\nretries = 3', "unknown key"),
        ('url = "https://crm.example/x"\nparameters = { id = { type = "date" } }', "must be one of string"),
    ],
    ids=[
        "scheme",
        "host",
        "port",
        "undeclared",
        "userinfo",
        "secret-in-url",
        "unset-variable",
        "method",
        "timeout",
        "unknown-key",
        "type",
    ],
)
def test_a_bad_tool_declaration_is_named_by_its_key(tool, problem, tmp_path):
    text = f'[agents.a]\nnumbers = ["*"]\n[agents.a.tools.t]\ndescription = "d"\n{tool}\n'
    with pytest.raises(AgentFileError) as refused:
        book_of(text, tmp_path)
    assert "agents.a.tools.t" in str(refused.value) and problem in str(refused.value)


def test_a_built_in_tools_name_is_refused(tmp_path):
    text = '[agents.a]\nnumbers = ["*"]\n[agents.a.tools.end_call]\ndescription = "d"\nurl = "https://x.example/"\n'
    with pytest.raises(AgentFileError, match="built-in tool's name"):
        book_of(text, tmp_path)


def test_header_secrets_are_never_shown(tmp_path, services):
    book = book_of(agent_toml(services.base), tmp_path)
    text = describe_book(book)
    assert "line_status: GET" in text and "headers Authorization" in text and TOKEN not in text
    assert TOKEN not in repr(book.agents["isp"]) and redact(f"x {TOKEN} y") == "x ******** y"


# --- sending, against the real server


def send(tool, arguments: str) -> tuple[Outcome, float]:
    done: list[Outcome] = []
    arrived = threading.Event()
    calls = HttpCalls(lambda outcome: (done.append(outcome), arrived.set()))
    started = time.monotonic()
    calls.submit("call_1", tool, request_for(tool, arguments))
    assert arrived.wait(tool.timeout_seconds + 5), "no outcome"
    calls.close()
    return done[0], time.monotonic() - started


def test_an_answer_is_given_as_the_fields_the_tool_names_with_the_secret_header_sent(tools, services):
    outcome, _ = send(tools["line_status"], '{"customer_id": "12345"}')
    assert outcome.output == {
        "status": 200,
        "result": {"status": "up", "since": "2026-12-01", "line.speed_mbps": 600},
    }
    assert (
        outcome.detail["outcome"] == "ok" and outcome.detail["status"] == 200 and outcome.detail["bytes"] > 0
    )
    request = services.got[-1]
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}" and request["path"] == "/api/lines/12345"


@pytest.mark.parametrize(
    ("what", "expected", "outcome"),
    [
        ("hang", "did not answer within 2 s", "timeout"),
        ("trickle", "did not answer within 2 s", "timeout"),
        ("garbage", "sent broken JSON", "error"),
        ("big", "larger than 4096 bytes", "too_large"),
        ("error", "answered HTTP 500", "error"),
        ("redirect", "a redirect, which is not followed", "redirect"),
    ],
)
def test_a_failing_or_hostile_server_is_a_tool_error_within_the_timeout(
    tools, services, what, expected, outcome
):
    result, took = send(tools["lookup"], json.dumps({"what": what}))
    assert expected in result.output["error"] and result.detail["outcome"] == outcome
    assert took < 2.0 + 1.0  # its timeout, and little more
    assert "/api/lines/stolen" not in services.paths()  # the redirect's target was never asked


def test_a_text_answer_is_passed_as_text(tools):
    result, _ = send(tools["lookup"], '{"what": "text"}')
    assert result.output == {"status": 200, "text": "Línea activa desde el lunes"}


def test_an_unreachable_server_is_a_tool_error_that_names_no_url(tmp_path):
    text = textwrap.dedent(
        """
        [agents.a]
        numbers = ["*"]
        [agents.a.tools.t]
        description = "d"
        url = "http://127.0.0.1:9/{id}"
        parameters = { id = { type = "string" } }
        """
    )
    tool = book_of(text, tmp_path).agents["a"].http_tools["t"]
    result, _ = send(tool, '{"id": "secret-customer-42"}')
    assert result.output == {"error": "t could not be reached"}
    assert "secret-customer-42" not in json.dumps(result.detail)


# --- through a worker, on the simulated Realtime server


def _script(realtime, name: str, arguments: dict) -> None:
    import requests

    requests.get(
        f"{realtime.base}/sim/tool-calls",
        params={"name": name, "arguments": json.dumps(arguments), "after_turn": 1},
        timeout=5,
    ).raise_for_status()


def spooled(sup) -> dict:
    """The call's record as the worker spooled it for the history (records/spool.py)."""
    [path] = spool.pending_records(sup.settings.spool_dir)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def realtime():
    """Replies of 600 ms: the reply that makes a call has played before the filler is due."""
    yield from started(RealtimeSim("--reply-ms", "600", "--greeting-ms", "1500"))


@pytest.mark.slow
def test_a_worker_calls_the_business_and_the_model_answers_with_the_result(
    calls, realtime, services, tmp_path, api
):
    path = tmp_path / "agents.toml"
    path.write_text(agent_toml(services.base))
    sup = calls(AGENTS_FILE=str(path), CALL_RECORDS_DIR=str(tmp_path), STATE_DIR=str(tmp_path / "state"))
    _script(realtime, "line_status", {"customer_id": "55501"})
    call = sup.place([{"say": 800}, {"silence": 6000}, {"hangup": True}])
    assert sup.wait_ended(call, 20) == 0
    session = last_session(realtime)
    [output] = session["tools"]["outputs"]
    assert json.loads(output["output"])["result"] == {
        "status": "up",
        "since": "2026-12-01",
        "line.speed_mbps": 600,
    }
    assert services.got[-1]["path"] == "/api/lines/55501"
    said = agent_said(session)
    assert [t for t in said if t.startswith("after tool line_status: ")]  # the model answered with it
    record = spooled(sup)
    [event] = [e for e in record["events"] if e["kind"] == "tool_call"]
    assert event["detail"]["name"] == "line_status" and event["detail"]["status"] == 200
    assert event["detail"]["outcome"] == "ok" and event["detail"]["ms"] < 2000
    assert TOKEN not in json.dumps(record)


@pytest.mark.slow
def test_while_a_tool_hangs_the_caller_hears_a_filler_and_the_model_is_told_at_the_timeout(
    calls, asterisk, realtime, services, tmp_path, api
):
    path = tmp_path / "agents.toml"
    path.write_text(agent_toml(services.base, timeout=3.0))
    sup = calls(AGENTS_FILE=str(path), CALL_RECORDS_DIR=str(tmp_path), STATE_DIR=str(tmp_path / "state"))
    _script(realtime, "lookup", {"what": "hang"})
    call = sup.place([{"say": 800}, {"silence": 7000}, {"hangup": True}])
    assert sup.wait_ended(call, 25) == 0
    session = last_session(realtime)
    [(called_at, _)] = tool_calls_made(session)
    asked = asks(session)
    filler_asked_at, filler = asked[0]
    assert "Un momento, lo compruebo." in filler
    assert filler_asked_at - called_at < 0.5  # asked as soon as the reply with the call was done
    [output] = session["tools"]["outputs"]
    assert "did not answer within 3 s" in output["output"]
    [(output_at, _)] = tool_outputs_sent(session)
    assert 3.0 - 0.1 <= output_at - called_at < 3.0 + 1.0
    assert len(asked) == 2 and asked[1][0] >= output_at  # the answer after the output, once
    # At the caller: the 600 ms reply (30 frames), then the filler with no silence between,
    # heard within 1.5 s of the call, paced while the tool hangs.
    # (GPT-Live's backend calls the tool without a spoken reply first: the filler comes alone.)
    loud = [p for p in packets(asterisk.call(call.channel_id)) if p["level"] >= LOUD]
    said = 30 if api == "realtime" else 0
    reply, filler_frames = loud[:said], loud[said : said + 75]
    assert filler_frames[0]["arrival"] - called_at < 1.5
    if reply:
        assert filler_frames[0]["arrival"] - reply[-1]["arrival"] < 0.1
    assert_paced(gaps_ms(filler_frames), tolerance=2.0)
    record = spooled(sup)
    [event] = [e for e in record["events"] if e["kind"] == "tool_call"]
    assert event["detail"]["outcome"] == "timeout" and event["detail"]["name"] == "lookup"


@pytest.mark.slow
def test_with_a_hold_sound_the_caller_hears_asterisk_play_it_until_the_tool_answers(
    calls, asterisk, realtime, services, tmp_path
):
    path = tmp_path / "agents.toml"
    text = agent_toml(services.base, timeout=3.0).replace(
        'filler = "Un momento, lo compruebo."', 'hold_sound = "sound:custom/one-moment"'
    )
    path.write_text(text)
    sup = calls(AGENTS_FILE=str(path), STATE_DIR=str(tmp_path / "state"))
    _script(realtime, "lookup", {"what": "hang"})
    call = sup.place([{"say": 800}, {"silence": 7000}, {"hangup": True}])
    assert sup.wait_ended(call, 25) == 0
    session = last_session(realtime)
    [(called_at, _)] = tool_calls_made(session)
    asked = asks(session)
    [(_, instructions)] = asked  # only the answer after the output: the sound instead of a filler
    assert instructions == ""
    [(output_at, _)] = tool_outputs_sent(session)
    found = asterisk.state()["bridge_playbacks"]
    [played] = [p for p in found if p["bridge"].endswith(call.channel_id)]
    assert played["media"] == "sound:custom/one-moment"
    # The clocks: the sims' stamps are their own monotonic clocks, one machine: comparable.
    assert played["started"] - called_at < 1.5  # heard within 1.5 s of the call
    assert played["stopped"] is not None and abs(played["stopped"] - output_at) < 0.5  # until answered


def test_a_hold_sound_must_be_an_asterisk_media_uri(tmp_path, services):
    text = agent_toml(services.base).replace(
        'filler = "Un momento, lo compruebo."', 'hold_sound = "http://x/y.wav"'
    )
    with pytest.raises(AgentFileError, match="hold_sound: must be an Asterisk media URI"):
        book_of(text, tmp_path)
