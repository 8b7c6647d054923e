"""What an agent asks of its calls' post-call summaries: `[agents.NAME.summary]`.

    [agents.support.summary]
    email = ["desk@example.com"]      # who gets each call's summary (the alerts' SMTP server)
    email_batch_minutes = 60          # 0 (the default): one mail per call; else one per N minutes
    instructions = "Say whether the caller was angry."   # added to the summarizer's own
    [agents.support.summary.fields]   # what to pull out of each call: a JSON schema per field
    reason = {type = "string", description = "why they called, in a few words"}
    customer_id = {type = ["string", "null"]}
    callback_needed = {type = "boolean"}

Summaries run only when SUMMARY_MODEL is set; `enabled = false` turns them off for one agent.
The fields become one JSON schema the text model must answer in (`response_schema`): OpenAI's
strict structured outputs want every property required and no others, so that is how it is
built; a field that may be unknown says so with a `"null"` type. The spec travels with the
call (records/spool.py puts it in the call's header), so that what a call gets summarized with
is what its agent said when it was answered, whatever a reload did since.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from callbridge.agent_file_reader import dotted

KEYS = ("enabled", "fields", "email", "email_batch_minutes", "instructions")
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
TYPES = ("string", "number", "integer", "boolean", "array", "object", "null")
SCHEMA_KEYS = ("type", "description", "enum", "items", "properties")
MAX_FIELDS = 40
ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+")
MAX_BATCH_MINUTES = 24 * 60


@dataclass(frozen=True)
class SummarySpec:
    enabled: bool = True
    fields: dict = field(default_factory=dict)  # field name -> its JSON schema
    email: tuple[str, ...] = ()
    email_batch_minutes: int = 0
    instructions: str = ""

    def as_header(self) -> dict:
        """What rides in the call's spool header (records/spool.py)."""
        return {
            "fields": self.fields,
            "email": list(self.email),
            "email_batch_minutes": self.email_batch_minutes,
            "instructions": self.instructions,
        }


def field_text(value) -> str:
    """A field's value as the command line, the dashboard and the e-mail show it: text as
    it is, nothing (null) as "-", anything else as JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def response_schema(fields: dict) -> dict:
    """The JSON schema of the summarizer's answer: a summary and the agent's fields, strict."""
    return {
        "type": "object",
        "properties": {
            "summary": {"type": "string", "description": "what the call was about and how it ended"},
            "fields": _strict({"type": "object", "properties": dict(fields)}),
        },
        "required": ["summary", "fields"],
        "additionalProperties": False,
    }


def _strict(schema: dict) -> dict:
    """Objects as strict structured outputs require them, all the way down."""
    schema = dict(schema)
    if "properties" in schema:
        schema["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
        schema["required"] = list(schema["properties"])
        schema["additionalProperties"] = False
    if isinstance(schema.get("items"), dict):
        schema["items"] = _strict(schema["items"])
    return schema


def field_problem(schema: object, depth: int = 0) -> str:
    """Why `schema` is not a field's schema we send ("" when it is)."""
    if not isinstance(schema, dict):
        return 'must be a table like {type = "string", description = "..."}'
    unknown = sorted(set(schema) - set(SCHEMA_KEYS))
    if unknown:
        return f"unknown key {unknown[0]!r} (known: {', '.join(SCHEMA_KEYS)})"
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds or not all(k in TYPES for k in kinds):
        return f"type must be one of {', '.join(TYPES)}, or a list of them"
    if "description" in schema and not isinstance(schema["description"], str):
        return "description must be text"
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return "enum must be a list of values"
    # strict structured outputs want every object's properties and every array's items named
    if "object" in kinds and not schema.get("properties"):
        return "an object needs its properties (a table of fields)"
    if "array" in kinds and "items" not in schema:
        return "an array needs its items (the schema of one)"
    if depth >= 3 and ("items" in schema or "properties" in schema):
        return "is nested too deep (3 levels at most)"
    if "items" in schema:
        problem = field_problem(schema["items"], depth + 1)
        if problem:
            return f"items: {problem}"
    if "properties" in schema:
        if not isinstance(schema["properties"], dict):
            return "properties must be a table of fields"
        for name, sub in schema["properties"].items():
            problem = "" if FIELD_NAME.fullmatch(name) else "is not a name (letters, digits, _)"
            problem = problem or field_problem(sub, depth + 1)
            if problem:
                return f"properties.{name}: {problem}"
    return ""


def read_summary(r, where: tuple[str, ...], table: object) -> SummarySpec | None:
    """`[agents.NAME.summary]` through the agents file's Reader (callbridge/agent_file_reader.py),
    each problem noted; None when the agent has no such table."""
    if table is None:
        return None
    if not isinstance(table, dict):
        r.problem(dotted(*where), "must be a table [agents.NAME.summary] with " + ", ".join(KEYS))
        return None
    r.unknown(where, table, KEYS)
    fields = table.get("fields", {})
    if not isinstance(fields, dict):
        r.problem(dotted(*where, "fields"), "must be a table of fields, each a JSON schema")
        fields = {}
    if len(fields) > MAX_FIELDS:
        r.problem(dotted(*where, "fields"), f"at most {MAX_FIELDS} fields (got {len(fields)})")
    for name, schema in fields.items():
        problem = "" if FIELD_NAME.fullmatch(name) else "is not a name (letters, digits and _)"
        problem = problem or field_problem(schema)
        if problem:
            r.problem(dotted(*where, "fields", name), problem)
    email = table.get("email", [])
    email = [email] if isinstance(email, str) else email
    if not isinstance(email, list) or not all(
        isinstance(a, str) and ADDRESS.fullmatch(a.strip()) for a in email
    ):
        r.problem(dotted(*where, "email"), 'must be a list of e-mail addresses: ["desk@example.com"]')
        email = []
    return SummarySpec(
        enabled=r.flag(where, table, "enabled") is not False,
        fields=dict(fields),
        email=tuple(dict.fromkeys(a.strip() for a in email)),
        email_batch_minutes=r.number(
            where, table, "email_batch_minutes", 0, MAX_BATCH_MINUTES, whole=True, default=0
        ),
        instructions=r.text(where, table, "instructions"),
    )
