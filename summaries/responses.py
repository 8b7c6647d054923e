"""Asking OpenAI's Responses API (`POST /v1/responses`) for one call's summary and fields.

The request: the summarizer's instructions (and the agent's own, after them), the call's
turns as a transcript, `text.format` a strict `json_schema` (callbridge/summary_spec.py::
response_schema), `store: false` (OpenAI keeps nothing of it). The answer: the message's
`output_text`, which must be JSON in that schema, and `usage` (input, cached, output tokens).

What can go wrong comes back as a `Failure` naming it in a few words (OpenAI's error code, an
HTTP status, a requests exception's type: never the key, never the URL's text), whether
the job itself is at fault (`for_good`: too long for the model, refused or filtered by it,
out of output tokens, answered out of the schema) or something every job shares is
(`service`: no answer, 429, 5xx, the key, the model; the whole queue waits), and what a
billed answer cost even so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import requests

from callbridge.summary_spec import response_schema

TIMEOUT = (5.0, 60.0)  # connect, each read: a reasoning model may think before its first byte
MAX_OUTPUT_TOKENS = 4000  # reasoning included; a summary and a few fields need far fewer
MAX_BODY = 1 << 20  # bytes of an answer read at most
MAX_TOKENS = 10_000_000  # a usage figure above this is not believed (it would blow every budget)
# Refusals of the request itself that no retry can mend: it is too long for the model. Every
# other 4xx is the configuration's (a wrong key, an unknown or retired model, no quota, an
# agent's fields the API will not take) or the moment's (429): retried until
# SUMMARY_RETRY_HOURS, so that mending the setting lets the waiting jobs through.
FOR_GOOD_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
FOR_GOOD_STATUS = frozenset({413})
# Answers that are about every job alike, not this one: the service in trouble (429, 5xx),
# or the configuration (the key, the model): the whole queue waits, one request per delay.
SERVICE_STATUS = frozenset({401, 403, 404, 429, 500, 502, 503, 504})
SERVICE_CODES = frozenset({"model_not_found", "invalid_api_key", "insufficient_quota"})
# Incomplete answers that the same call would get again.
FOR_GOOD_INCOMPLETE = frozenset({"max_output_tokens", "content_filter"})
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
    """`what` in a few words; `for_good`: the request itself is refused (retrying cannot
    help); `service`: the service is in trouble (no answer, 429, 5xx), so every job waits
    (`retry_after` seconds when it said); `usage`: what a billed answer cost all the same."""

    def __init__(
        self,
        what: str,
        for_good: bool = False,
        service: bool = False,
        retry_after: float = 0.0,
        usage: dict | None = None,
    ) -> None:
        super().__init__(what)
        self.what, self.for_good, self.service = what, for_good, service
        self.retry_after = retry_after
        self.usage = usage or {}


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


def ask(session: requests.Session, url: str, api_key: str, job: dict, model: str) -> Summary:
    """One attempt with `model`; raises Failure, whatever the answer is."""
    body = {**request_body(job), "model": model}
    try:
        with session.post(
            url,
            json=body,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "callbridge-summaries"},
            timeout=TIMEOUT,
            allow_redirects=False,
            stream=True,
        ) as reply:
            status, headers = reply.status_code, reply.headers
            raw = b""
            for chunk in reply.iter_content(65536):  # requests' own errors, whatever urllib3 raised
                raw += chunk
                if len(raw) > MAX_BODY:
                    raise Failure("answer too long")
    except requests.RequestException as exc:  # no answer, cut off, undecodable, a stalled read
        raise Failure(type(exc).__name__, service=True) from None
    try:
        answer = json.loads(raw)
    except (ValueError, RecursionError):
        answer = None
    if status != 200:
        raise _refusal(status, answer, headers)
    if not isinstance(answer, dict):
        raise Failure("an answer that is not JSON")
    return parse(answer, model)


def _refusal(status: int, answer, headers) -> Failure:
    error = answer.get("error") if isinstance(answer, dict) else None
    code = str(error.get("code") or error.get("type") or "")[:60] if isinstance(error, dict) else ""
    what = f"HTTP {status}" + (f" {code}" if code else "")
    try:
        retry_after = min(600.0, max(0.0, float(headers.get("Retry-After") or 0)))
    except (TypeError, ValueError, OverflowError):
        retry_after = 0.0
    for_good = status in FOR_GOOD_STATUS or code in FOR_GOOD_CODES
    service = status in SERVICE_STATUS or code in SERVICE_CODES
    return Failure(what, for_good=for_good, service=service, retry_after=retry_after)


def parse(answer: dict, model: str) -> Summary:
    """The summary out of a `response` object; raises Failure (with the answer's usage: a
    completed answer is billed, whatever it holds)."""
    usage = _usage(answer.get("usage"))
    if answer.get("status") not in (None, "completed"):
        details = answer.get("incomplete_details")
        reason = str(details.get("reason") or "")[:60] if isinstance(details, dict) else ""
        raise Failure(
            f"the response is {str(answer.get('status'))[:20]}" + (f" ({reason})" if reason else ""),
            for_good=reason in FOR_GOOD_INCOMPLETE,
            usage=usage,
        )
    text, refused = "", False
    for item in _list(answer.get("output")):
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in _list(item.get("content")):
            if isinstance(part, dict) and part.get("type") == "output_text":
                text += str(part.get("text") or "")
            elif isinstance(part, dict) and part.get("type") == "refusal":
                refused = True
    if refused and not text:
        raise Failure("the model refused to summarize", for_good=True, usage=usage)
    # A completed answer out of the strict schema is billed and would likely come again for
    # the same call: it counts towards the refusals that set a job aside.
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        raise Failure("an answer that is not the schema's JSON", for_good=True, usage=usage) from None
    if not isinstance(found, dict) or not isinstance(found.get("summary"), str):
        raise Failure("an answer without a summary", for_good=True, usage=usage)
    fields = found.get("fields") if isinstance(found.get("fields"), dict) else {}
    return Summary(
        summary=found["summary"].strip(),
        fields=fields,
        usage=usage,
        model=model[:64],  # as asked: the answer names a dated snapshot, which prices do not know
    )


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _usage(usage) -> dict:
    """The answer's usage as callbridge/prices.py prices it (reasoning is billed as output)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("input_tokens_details")
    cached = _tokens(details.get("cached_tokens") if isinstance(details, dict) else 0)
    return {
        "input_text_tokens": max(0, _tokens(usage.get("input_tokens")) - cached),
        "input_cached_tokens": cached,
        "output_text_tokens": _tokens(usage.get("output_tokens")),
    }


def _tokens(value) -> int:
    try:
        return min(MAX_TOKENS, max(0, int(value or 0)))
    except (TypeError, ValueError, OverflowError):
        return 0
