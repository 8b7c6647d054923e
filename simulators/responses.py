"""A stand-in for OpenAI's Responses API (`POST /v1/responses`), for the post-call summaries:

    python -m simulators.responses --port 0 [--api-key sk-sim]

It answers as the API does: the key in `Authorization: Bearer`, JSON in, a `response`
object out with a reasoning item and one assistant message whose `output_text` is the
answer, `usage` with input, cached, output and reasoning tokens, and OpenAI's error objects
(`invalid_api_key` 401, `model_not_found` 404, `unknown_parameter` 400 naming the field,
`rate_limit_exceeded` 429, `server_error` 500). It is strict about what it is sent: only
the fields a summary request uses are known.

With `text.format` a `json_schema`, the answer is a JSON object that follows the schema
(each property from its type: strings quote the caller's first words, booleans are true,
numbers count the turns, an enum takes its first value); without one, plain text. What the
text says is made from the transcript it is given, so a test can tell which call it read.

It also answers the model lookup (`GET /v1/models/{model}`, no shutdown date) for the
shutdown-date check. Control: `GET /sim/requests` (every request body received, oldest first), `GET /sim/fault
?kind=server_error|rate_limit_exceeded|model_not_found|slow|garbage|cut|hostile|incomplete
&count=N[&seconds=S]` (the next N requests; `slow` waits S seconds, 30 by default; 429
says Retry-After: 7; `cut` closes the connection mid-body),
`GET /sim/reset`. The first line on stdout is `{"port": N}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MODELS = ("gpt-5.4-mini", "gpt-5.4", "gpt-5-mini", "gpt-4.1-mini")
KNOWN_FIELDS = {
    "model",
    "input",
    "instructions",
    "text",
    "store",
    "max_output_tokens",
    "reasoning",
    "metadata",
}
FAULTS = {"server_error": 500, "rate_limit_exceeded": 429}


class State:
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.faults: list[str] = []
        self.slow_seconds = 30.0
        self.served = 0

    def take_fault(self) -> str:
        with self.lock:
            return self.faults.pop(0) if self.faults else ""


def _error(status: int, code: str, message: str, param: str | None = None) -> tuple[int, dict]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _words(request: dict) -> str:
    """The transcript as the request gives it: its input, flattened to text."""
    given = request.get("input")
    if isinstance(given, str):
        return given
    parts = []
    for item in given if isinstance(given, list) else []:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict)]
    return "\n".join(parts)


def _value(schema: dict, transcript: str, turns: int):
    kind = schema.get("type")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return turns
    if kind == "array":
        return [_value(schema.get("items") or {"type": "string"}, transcript, turns)]
    if kind == "object":
        return {
            name: _value(sub, transcript, turns) for name, sub in (schema.get("properties") or {}).items()
        }
    return " ".join(transcript.split()[:8])


def answer(state: State, request: dict) -> tuple[int, dict]:
    unknown = sorted(set(request) - KNOWN_FIELDS)
    if unknown:
        return _error(400, "unknown_parameter", f"Unknown parameter: '{unknown[0]}'.", unknown[0])
    model = request.get("model")
    if model not in MODELS:
        return _error(
            404, "model_not_found", f"The model `{model}` does not exist or you do not have access to it."
        )
    transcript = _words(request)
    turns = sum(1 for line in transcript.splitlines() if ":" in line)
    first = " ".join(transcript.split()[:12])
    form = ((request.get("text") or {}).get("format")) or {"type": "text"}
    if form.get("type") == "json_schema":
        schema = form.get("schema") or {}
        text = json.dumps(_value(schema, transcript, turns), ensure_ascii=False)
    else:
        text = f"The caller called about: {first}. ({turns} turns)"
    state.served += 1
    usage_in, usage_out = max(1, len(transcript) // 4), max(1, len(text) // 4)
    return 200, {
        "id": f"resp_sim{state.served}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": [
            {"type": "reasoning", "id": f"rs_sim{state.served}", "summary": []},
            {
                "type": "message",
                "id": f"msg_sim{state.served}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            },
        ],
        "usage": {
            "input_tokens": usage_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage_out + 16,
            "output_tokens_details": {"reasoning_tokens": 16},
            "total_tokens": usage_in + usage_out + 16,
        },
    }


def handler_for(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            pass

        def _send(self, status: int, body: dict | bytes) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path.startswith("/v1/models/"):  # the shutdown-date check's lookup
                model = url.path.removeprefix("/v1/models/")
                if model not in MODELS:
                    return self._send(*_error(404, "model_not_found", f"The model `{model}` does not exist."))
                return self._send(200, {"id": model, "object": "model", "created": 0, "owned_by": "system"})
            if url.path == "/sim/requests":
                with state.lock:
                    return self._send(200, list(state.requests))
            if url.path == "/sim/fault":
                with state.lock:
                    state.faults += [query.get("kind", "server_error")] * int(query.get("count", "1"))
                    state.slow_seconds = float(query.get("seconds", state.slow_seconds))
                return self._send(200, {"ok": True})
            if url.path == "/sim/reset":
                with state.lock:
                    state.requests.clear()
                    state.faults.clear()
                return self._send(200, {"ok": True})
            return self._send(404, {"error": {"message": "not found", "code": None}})

        def do_POST(self) -> None:  # noqa: N802
            if urlsplit(self.path).path != "/v1/responses":
                return self._send(404, {"error": {"message": "not found", "code": None}})
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Authorization", "") != f"Bearer {state.api_key}":
                return self._send(*_error(401, "invalid_api_key", "Incorrect API key provided."))
            try:
                request = json.loads(body)
                assert isinstance(request, dict)
            except (ValueError, AssertionError):
                return self._send(
                    *_error(400, "invalid_json", "We could not parse the JSON body of your request.")
                )
            with state.lock:
                state.requests.append(request)
            fault = state.take_fault()
            if fault == "slow":
                time.sleep(state.slow_seconds)
            if fault == "garbage":
                return self._send(200, b'{"id": "resp_broken", "output": [')
            if fault == "cut":  # the headers promise more than comes: the connection closes
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "5000")
                self.end_headers()
                self.wfile.write(b'{"id": "resp_cut", "output": [{"type": "mess')
                self.wfile.flush()
                self.close_connection = True
                return None
            if fault == "hostile":  # shapes no answer has, and a number no float holds
                return self._send(
                    200, b'{"status": "completed", "output": "x", "usage": {"output_tokens": 1e999}}'
                )
            if fault == "incomplete":  # out of output tokens: billed all the same
                return self._send(
                    200,
                    {
                        "status": "incomplete",
                        "incomplete_details": {"reason": "max_output_tokens"},
                        "output": [],
                        "usage": {"input_tokens": 900, "output_tokens": 4000},
                    },
                )
            if fault == "model_not_found":  # as the API answers a model it does not know
                return self._send(*_error(400, fault, "The requested model does not exist."))
            if fault == "rate_limit_exceeded":
                status, body = _error(429, fault, "simulated rate limit")
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Retry-After", "7")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            if fault in FAULTS:
                return self._send(*_error(FAULTS[fault], fault, f"simulated {fault}"))
            return self._send(*answer(state, request))

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A simulated OpenAI Responses API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-sim")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(State(args.api_key)))
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
