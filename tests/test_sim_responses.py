"""The simulated Responses API (simulators/responses.py) answers as OpenAI's does: what the
post-call summaries are tested against (issue 29)."""

from __future__ import annotations

import json

import pytest
import requests

from simulators.clients import ResponsesSim

SCHEMA = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "reason": {"type": "string", "enum": ["billing", "outage", "other"]},
        "customer_id": {"type": "string"},
        "callback_needed": {"type": "boolean"},
    },
    "required": ["summary", "reason", "customer_id", "callback_needed"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def sim():
    server = ResponsesSim()
    yield server
    server.stop()


def _post(sim, body: dict, key: str = "sk-sim") -> requests.Response:
    return requests.post(sim.url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_a_structured_answer_follows_the_schema_and_reads_the_transcript(sim):
    transcript = "caller: my internet is down since Monday\nagent: let me check your line"
    reply = _post(
        sim,
        {
            "model": "gpt-5.4-mini",
            "instructions": "Summarise the call.",
            "input": [{"role": "user", "content": transcript}],
            "text": {"format": {"type": "json_schema", "name": "call", "schema": SCHEMA, "strict": True}},
            "store": False,
        },
    )
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "response" and body["status"] == "completed"
    [message] = [item for item in body["output"] if item["type"] == "message"]
    fields = json.loads(message["content"][0]["text"])
    assert set(fields) == set(SCHEMA["required"])
    assert fields["reason"] == "billing" and fields["callback_needed"] is True
    assert fields["summary"].startswith("caller: my internet is down")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert sim.requests()[-1]["model"] == "gpt-5.4-mini"


@pytest.mark.parametrize(
    ("body", "key", "status", "code"),
    [
        ({"model": "gpt-5.4-mini", "input": "x"}, "sk-wrong", 401, "invalid_api_key"),
        ({"model": "gpt-nope", "input": "x"}, "sk-sim", 404, "model_not_found"),
        ({"model": "gpt-5.4-mini", "input": "x", "temperature": 0}, "sk-sim", 400, "unknown_parameter"),
    ],
)
def test_refusals_are_openais_error_objects(sim, body, key, status, code):
    reply = _post(sim, body, key)
    assert reply.status_code == status and reply.json()["error"]["code"] == code


def test_faults_come_in_order_then_it_answers_again(sim):
    sim.fault("rate_limit_exceeded")
    sim.fault("garbage")
    body = {"model": "gpt-5.4-mini", "input": "caller: hello"}
    assert _post(sim, body).status_code == 429
    broken = _post(sim, body)
    assert broken.status_code == 200
    with pytest.raises(ValueError):
        broken.json()
    assert _post(sim, body).json()["status"] == "completed"
