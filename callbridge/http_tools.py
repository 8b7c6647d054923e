"""HTTP tools: an agent's own lookups and actions on the business's systems, declared in the
agents file (`[agents.NAME.tools.TOOL]`, docs/agents.md) and called by the model.

What is here is pure: the declaration (`HttpTool`), reading it from the file with every
problem named, the function the model is offered (`spec`), the request one call makes
(`request_for`) and what of the answer the model is given (`answer_of`). Sending it is
call_worker/http_calls.py's, on threads of its own, never the media loop's.

The model's arguments fill the URL's path and query only (each value percent-encoded, so a
`/`, `?`, `#` or `@` in it stays data) and, for POST, PUT and PATCH, a JSON body: they can
never change the scheme, the host or the port, and `request_for` checks the URL it built
against the declared one before anything is sent. Header values may name environment
variables (`${CRM_TOKEN}`), read when the file is loaded and kept as `Secret`s: they are
never logged, shown or put in an error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

from callbridge.agent_file_reader import NAME, Reader, dotted, type_name
from callbridge.secret import Secret, register

TOOL_KEYS = (
    "description",
    "method",
    "url",
    "parameters",
    "required",
    "headers",
    "timeout_seconds",
    "max_response_bytes",
    "result",
    "filler",
    "hold_sound",
)
PARAMETER_KEYS = ("type", "description", "pattern", "enum", "max_length", "minimum", "maximum")
TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
WITH_BODY = ("POST", "PUT", "PATCH")
RESERVED = ("end_call", "transfer_call")  # the built-in tools' names
TIMEOUT_DEFAULT, TIMEOUT_MAX = 5.0, 30.0
SIZE_DEFAULT, SIZE_MAX = 65536, 1024 * 1024
ANSWER_CHARS = 4000  # of a text (non-JSON) answer the model is given
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]{0,127})\}")
HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str = "string"
    description: str = ""
    pattern: str = ""
    enum: tuple = ()
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None

    def schema(self) -> dict:
        schema: dict = {"type": self.type}
        for key, value in (
            ("description", self.description),
            ("pattern", self.pattern),
            ("enum", list(self.enum)),
            ("maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
        ):
            if value not in ("", [], None):
                schema[key] = value
        return schema

    def problem(self, value) -> str:
        """What is wrong with the model's `value` for it, or ""."""
        kind = TYPES[self.type]
        if isinstance(value, bool) and self.type != "boolean" or not isinstance(value, kind):
            return f"{self.name} must be a {self.type}"
        if self.enum and value not in self.enum:
            return f"{self.name} must be one of {', '.join(map(str, self.enum))}"
        if isinstance(value, str):
            if self.max_length is not None and len(value) > self.max_length:
                return f"{self.name} is longer than {self.max_length} characters"
            if self.pattern and re.search(self.pattern, value) is None:
                return f"{self.name} does not match {self.pattern}"
        elif self.type in ("integer", "number"):
            if self.minimum is not None and value < self.minimum:
                return f"{self.name} must be at least {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"{self.name} must be at most {self.maximum:g}"
        return ""


@dataclass(frozen=True)
class HttpTool:
    name: str
    description: str
    url: str  # the template: {parameter} in its path and query
    method: str = "GET"
    parameters: tuple[Parameter, ...] = ()
    required: tuple[str, ...] = ()
    headers: tuple[tuple[str, Secret], ...] = ()  # values resolved from the environment
    timeout_seconds: float = TIMEOUT_DEFAULT
    max_response_bytes: int = SIZE_DEFAULT
    result: tuple[str, ...] = ()  # dotted fields of a JSON answer; (): all of it
    filler: str = ""  # what the agent says while it runs, when the model says no preamble
    hold_sound: str = ""  # instead of the filler: an Asterisk sound on the bridge until it answers
    origin: tuple[str, str, int | None] = field(default=("", "", None), compare=False)

    def describe(self) -> str:
        """For `callbridge agents`: no header value, no secret."""
        headers = f", headers {', '.join(name for name, _ in self.headers)}" if self.headers else ""
        return f"{self.name}: {self.method} {self.url} ({self.timeout_seconds:g} s{headers})"


class ArgumentError(ValueError):
    """The model's arguments for a tool cannot make a request (told to the model)."""


def spec_parameters(tool: HttpTool) -> dict:
    """The JSON schema of the tool's arguments, as the model is offered it."""
    return {
        "type": "object",
        "properties": {p.name: p.schema() for p in tool.parameters},
        "required": list(tool.required),
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes | None


def request_for(tool: HttpTool, arguments_text: str, limit: int = 2000) -> Request:
    """The request one call makes; raises ArgumentError (its text is for the model)."""
    try:
        arguments = json.loads(arguments_text[:limit] or "{}")
    except (ValueError, RecursionError):
        raise ArgumentError("the arguments are not JSON") from None
    if not isinstance(arguments, dict):
        raise ArgumentError("the arguments must be an object")
    known = {p.name: p for p in tool.parameters}
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ArgumentError(f"unknown argument {unknown[0][:64]!r}; known: {', '.join(known) or 'none'}")
    missing = [name for name in tool.required if name not in arguments]
    if missing:
        raise ArgumentError(f"{missing[0]} is required")
    for name, value in arguments.items():
        problem = known[name].problem(value)
        if problem:
            raise ArgumentError(problem)
    used: set[str] = set()

    def fill(match: re.Match) -> str:
        name = match.group(1)
        used.add(name)
        if name not in arguments:
            return ""
        value = _text(arguments[name])
        if value in (".", ".."):  # a path segment that would walk up the path
            raise ArgumentError(f"{name} cannot be {value!r}")
        return quote(value, safe="")  # data, never a / ? # @ or : of the URL

    url = PLACEHOLDER.sub(fill, tool.url)
    rest = {name: value for name, value in arguments.items() if name not in used}
    body = None
    if tool.method in WITH_BODY:
        body = json.dumps(rest, ensure_ascii=False).encode() if rest else None
    elif rest:
        url += ("&" if urlsplit(url).query else "?") + urlencode({k: _text(v) for k, v in rest.items()})
    parts = urlsplit(url)
    if (parts.scheme, parts.hostname or "", parts.port) != tool.origin:  # cannot happen: checked
        raise ArgumentError("the arguments would change where the request goes")
    return Request(tool.method, url, body)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def answer_of(tool: HttpTool, status: int, body: bytes, content_type: str) -> dict:
    """What the model is told of an answer: its JSON (or the fields `result` names), else its
    text, cut; an HTTP error status is an error."""
    text = body.decode("utf-8", errors="replace")
    if status >= 400:
        return {"error": f"{tool.name} answered HTTP {status}", "detail": text[:300]}
    try:
        data = json.loads(text) if text.strip() else None
    except (ValueError, RecursionError):
        if "json" in content_type:
            return {"error": f"{tool.name} sent broken JSON"}
        return {"status": status, "text": text[:ANSWER_CHARS]}
    if tool.result:
        data = {name: _field(data, name) for name in tool.result}
    return {"status": status, "result": data}


def _field(data, dotted_name: str):
    for part in dotted_name.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


# --- reading [agents.NAME.tools] (callbridge/agent_file.py calls it)


def read_tools(
    r: Reader, where: tuple[str, ...], table: object, environ: Mapping[str, str] | None = None
) -> dict:
    environ = os.environ if environ is None else environ
    if not isinstance(table, dict):
        r.problem(dotted(*where), "must hold tables [agents.NAME.tools.TOOL]")
        return {}
    tools = {}
    for name, body in table.items():
        at = (*where, name)
        if not NAME.fullmatch(name) or name in RESERVED:
            why = "is a built-in tool's name" if name in RESERVED else "letters, digits, _ and - only"
            r.problem(dotted(*at), f"bad tool name: {why}")
            continue
        if not isinstance(body, dict):
            r.problem(dotted(*at), "must be a table")
            continue
        tool = _tool(r, at, name, body, environ)
        if tool is not None:
            tools[name] = tool
    return tools


def _tool(r: Reader, at: tuple[str, ...], name: str, body: dict, environ) -> HttpTool | None:
    before = len(r.problems)
    r.unknown(at, body, TOOL_KEYS)
    description = r.text(at, body, "description", required=True)
    method = (r.text(at, body, "method") or "GET").upper()
    if method not in METHODS:
        r.problem(dotted(*at, "method"), f"must be one of {', '.join(METHODS)}")
    parameters = _parameters(r, at, body.get("parameters", {}))
    names = [p.name for p in parameters]
    url = r.text(at, body, "url", required=True)
    origin = _origin(r, at, url, names)
    required = body.get("required", names)
    if not isinstance(required, list) or not all(isinstance(n, str) and n in names for n in required):
        r.problem(dotted(*at, "required"), f"must list some of the parameters ({', '.join(names) or 'none'})")
        required = []
    timeout = r.number(at, body, "timeout_seconds", 0.5, TIMEOUT_MAX, default=TIMEOUT_DEFAULT)
    size = r.number(at, body, "max_response_bytes", 256, SIZE_MAX, whole=True, default=SIZE_DEFAULT)
    result = body.get("result", [])
    if not isinstance(result, list) or not all(isinstance(f, str) and f for f in result):
        r.problem(dotted(*at, "result"), 'must be a list of field names: ["status", "line.since"]')
        result = []
    headers = read_headers(r, at, body.get("headers", {}), environ)
    filler = r.text(at, body, "filler")
    hold = hold_sound(r, at, body)
    if len(r.problems) != before:
        return None
    return HttpTool(
        name,
        description,
        url,
        method,
        tuple(parameters),
        tuple(required),
        headers,
        float(timeout),
        size,
        tuple(result),
        filler,
        hold,
        origin,
    )


def _parameters(r: Reader, at: tuple[str, ...], table: object) -> list[Parameter]:
    where = (*at, "parameters")
    if not isinstance(table, dict):
        r.problem(dotted(*where), 'must be a table: { customer_id = { type = "string" } }')
        return []
    found = []
    for name, body in table.items():
        key = (*where, name)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
            r.problem(dotted(*key), "bad parameter name: a letter or _, then letters, digits, _")
            continue
        if not isinstance(body, dict):
            r.problem(dotted(*key), f"must be a table with type (got {type_name(body)})")
            continue
        r.unknown(key, body, PARAMETER_KEYS)
        kind = r.choice(key, body, "type", tuple(TYPES)) or "string"
        pattern = r.text(key, body, "pattern")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                r.problem(dotted(*key, "pattern"), f"not a regular expression: {exc}")
        enum = body.get("enum", [])
        if not isinstance(enum, list):
            r.problem(dotted(*key, "enum"), "must be a list")
            enum = []
        found.append(
            Parameter(
                name,
                kind,
                r.text(key, body, "description"),
                pattern,
                tuple(enum),
                r.number(key, body, "max_length", 1, 10000, whole=True),
                r.number(key, body, "minimum", -1e15, 1e15),
                r.number(key, body, "maximum", -1e15, 1e15),
            )
        )
    return found


def _origin(r: Reader, at: tuple[str, ...], url: str, names: list[str]) -> tuple[str, str, int | None]:
    """The scheme, host and port every request of the tool must go to."""
    key = dotted(*at, "url")
    if not url:
        return ("", "", None)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        r.problem(key, f"not a URL: {exc}")
        return ("", "", None)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problem(key, "must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        r.problem(key, "must not hold a user or password: put credentials in headers")
    if PLACEHOLDER.search(parts.netloc) or "{" in parts.scheme:
        r.problem(key, "arguments may fill the path and query only, never the host or port")
    if parts.fragment:
        r.problem(key, "must not have a #fragment")
    if VARIABLE.search(url):
        r.problem(key, "must not name environment variables: secrets go in headers")
    for placeholder in PLACEHOLDER.findall(url):
        if placeholder not in names:
            r.problem(key, f"{{{placeholder}}} is not one of the parameters ({', '.join(names) or 'none'})")
    return (parts.scheme, parts.hostname or "", port)


HOLD_SCHEMES = ("sound:", "tone:", "recording:")  # ARI's media URIs that play from Asterisk itself


def hold_sound(r: Reader, at: tuple[str, ...], body: dict) -> str:
    """A tool's `hold_sound`: an ARI media URI ("sound:custom/one-moment", "tone:ring"), or ""."""
    media = r.text(at, body, "hold_sound")
    if media and (
        not media.startswith(HOLD_SCHEMES) or not re.fullmatch(r"[A-Za-z0-9:/_.,;=|-]{1,200}", media)
    ):
        r.problem(
            dotted(*at, "hold_sound"),
            'must be an Asterisk media URI: "sound:NAME" (a file in its sounds), "tone:ring", "recording:NAME"',
        )
        return ""
    return media


def read_headers(r: Reader, at: tuple[str, ...], table: object, environ) -> tuple[tuple[str, Secret], ...]:
    where = (*at, "headers")
    if not isinstance(table, dict):
        r.problem(dotted(*where), 'must be a table: { Authorization = "Bearer ${CRM_TOKEN}" }')
        return ()
    headers = []
    for name, value in table.items():
        key = dotted(*where, name)
        if not HEADER_NAME.fullmatch(name):
            r.problem(key, "bad header name")
            continue
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            r.problem(key, "must be one line of text")
            continue
        expanded = expand(r, key, value, environ)
        if expanded is not None:
            headers.append((name, expanded))
    return tuple(headers)


def expand(r: Reader, key: str, value: str, environ) -> Secret | None:
    """`value` with each `${VARIABLE}` replaced by the environment's, as a Secret (None, with
    the problem noted, when one is not set). Each variable's value is registered for
    redaction: the token itself never reaches a log line either."""
    missing = [v for v in VARIABLE.findall(value) if v not in environ]
    if missing:
        r.problem(key, f"names {missing[0]}, which is not set in the environment")
        return None
    for variable in VARIABLE.findall(value):
        register(environ[variable])
    return Secret(VARIABLE.sub(lambda m: environ[m.group(1)], value))
