"""Asking OpenAI's Responses API (`POST /v1/responses`) for one call's summary and fields.

The request: the summarizer's instructions (and the agent's own, after them), the call's
turns as a transcript, `text.format` a strict `json_schema` (callbridge/summary_spec.py::
response_schema), `store: false` (OpenAI keeps nothing of it). The answer: the message's
`output_text`, which must be JSON in that schema, and `usage` (input, cached, output tokens).

What can go wrong comes back as a `Failure` naming it in a few words (OpenAI's error code, an
HTTP status, a requests exception's type: never the key, never the URL's text) and whether
the job itself is at fault (`for_good`: a 400 for its content, an answer out of the schema
that keeps coming) or the service is (retried).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests

from callbridge.summary_spec import response_schema

TIMEOUT = (5.0, 60.0)  # connect, each read: a reasoning model may think before its first byte
MAX_OUTPUT_TOKENS = 4000  # reasoning included; a summary and a few fields need far fewer
MAX_BODY = 1 << 20  # bytes of an answer read at most
FOR_GOOD = frozenset({400, 413, 422})  # the request itself is refused: retrying cannot help
INSTRUCTIONS = (
    "You read the transcript of a phone call between a caller and an AI phone agent, and "
    "write for the business that runs the agent. `summary`: one or two sentences, in the "
    "language of the call, saying what the caller wanted and how the call ended (solved, "
    "transferred, a callback promised, hung up). `fields`: fill each from what was said; "
    "where the call does not say, use null if the field allows it, else an empty or false "
    "value. Never invent a number, a name or a date."
)


@dataclass(frozen=True)
class Summary:
    summary: str
    fields: dict
    usage: dict  # input_text_tokens, input_cached_tokens, output_text_tokens (callbridge/prices.py)
    model: str


class Failure(Exception):
    """`what` in a few words; `for_good`: the request itself is refused (retrying cannot help)."""

    def __init__(self, what: str, for_good: bool = False, status: int = 0) -> None:
        super().__init__(what)
        self.what, self.for_good, self.status = what, for_good, status


def transcript(job: dict) -> str:
    """The call as the model reads it: a line about the call, then one line per turn."""
    minutes = float(job.get("duration_s") or 0) / 60
    head = (
        f"Call to agent {job.get('agent') or '-'}, {minutes:.1f} minutes, "
        f"ended: {job.get('end_reason') or 'unknown'}"
        + ("" if job.get("complete", True) else " (the call's record is incomplete)")
    )
    lines = [f"{turn['side']}: {turn['text']}" for turn in job.get("turns") or ()]
    return head + "\n\n" + "\n".join(lines)


def request_body(job: dict) -> dict:
    spec = job.get("spec") or {}
    instructions = INSTRUCTIONS + (f"\n\nAlso: {spec['instructions']}" if spec.get("instructions") else "")
    return {
        "model": job.get("model") or spec.get("model"),
        "instructions": instructions,
        "input": [{"role": "user", "content": transcript(job)}],
        "text": {
            "format": {
                "type": "json_schema",
                "name": "call_summary",
                "schema": response_schema(spec.get("fields") or {}),
                "strict": True,
            }
        },
        "store": False,
        "max_output_tokens": MAX_OUTPUT_TOKENS,
    }


def ask(session: requests.Session, url: str, api_key: str, job: dict) -> Summary:
    """One attempt; raises Failure."""
    body = request_body(job)
    try:
        reply = session.post(
            url,
            json=body,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "callbridge-summaries"},
            timeout=TIMEOUT,
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException as exc:
        raise Failure(type(exc).__name__) from None
    with reply:
        try:
            raw = reply.raw.read(MAX_BODY + 1, decode_content=True)
        except (requests.RequestException, OSError) as exc:
            raise Failure(f"answer cut off ({type(exc).__name__})", status=reply.status_code) from None
    status = reply.status_code
    if len(raw) > MAX_BODY:
        raise Failure("answer too long", status=status)
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if status != 200:
        code = ""
        if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
            code = str(answer["error"].get("code") or answer["error"].get("type") or "")[:60]
        raise Failure(f"HTTP {status}" + (f" {code}" if code else ""), status in FOR_GOOD, status)
    if not isinstance(answer, dict):
        raise Failure("an answer that is not JSON", status=status)
    return parse(answer, str(body["model"]))


def parse(answer: dict, model: str) -> Summary:
    """The summary out of a `response` object; raises Failure."""
    if answer.get("status") not in (None, "completed"):
        reason = (
            (answer.get("incomplete_details") or {}).get("reason")
            if isinstance(answer.get("incomplete_details"), dict)
            else ""
        )
        raise Failure(f"the response is {answer.get('status')}" + (f" ({reason})" if reason else ""))
    text, refused = "", ""
    for item in answer.get("output") or ():
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or ():
            if isinstance(part, dict) and part.get("type") == "output_text":
                text += str(part.get("text") or "")
            elif isinstance(part, dict) and part.get("type") == "refusal":
                refused = str(part.get("refusal") or "refused")[:200]
    if refused and not text:
        raise Failure("the model refused to summarize", for_good=True)
    try:
        found = json.loads(text)
    except ValueError:
        raise Failure("an answer that is not the schema's JSON") from None
    if not isinstance(found, dict) or not isinstance(found.get("summary"), str):
        raise Failure("an answer without a summary")
    fields = found.get("fields") if isinstance(found.get("fields"), dict) else {}
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    details = usage.get("input_tokens_details") if isinstance(usage.get("input_tokens_details"), dict) else {}
    cached = _tokens(details.get("cached_tokens"))
    return Summary(
        summary=found["summary"].strip(),
        fields=fields,
        usage={
            "input_text_tokens": max(0, _tokens(usage.get("input_tokens")) - cached),
            "input_cached_tokens": cached,
            "output_text_tokens": _tokens(usage.get("output_tokens")),  # reasoning included: billed so
        },
        model=model[:64],  # as asked: the answer names a dated snapshot, which prices do not know
    )


def _tokens(value) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0
