"""The questions the CLI (and later the web pages) ask of the call history, one function
each, next to the tables (records/schema.py). Times in and out are naive UTC."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.engine import Engine

from records.privacy import mask_number, number_hash
from records.schema import alerts, calls, events, turns, webhook_deliveries

TOKEN_COLUMNS = (
    "input_audio_tokens",
    "input_text_tokens",
    "input_cached_tokens",
    "output_audio_tokens",
    "output_text_tokens",
)


@dataclass(frozen=True)
class CallFilter:
    since: datetime | None = None
    until: datetime | None = None
    caller: str | None = None  # a part of the caller's number (as stored: masked, maybe)
    caller_hash: str | None = None  # or, with it, the full number's hash (records/privacy.py)
    number: str | None = None  # a part of the number dialled
    end_reason: str | None = None
    instance: str | None = None
    agent: str | None = None
    text: str | None = None  # a part of what either side said (or the caller heard)

    def where(self, query):
        c = calls.c
        if self.since is not None:
            query = query.where(c.started_at >= self.since)
        if self.until is not None:
            query = query.where(c.started_at < self.until)
        if self.caller and self.caller_hash:
            query = query.where(
                or_(c.caller.contains(self.caller, autoescape=True), c.caller_hash == self.caller_hash)
            )
        elif self.caller:
            query = query.where(c.caller.contains(self.caller, autoescape=True))
        if self.number:
            query = query.where(c.dialled.contains(self.number, autoescape=True))
        if self.end_reason:
            query = query.where(c.end_reason == self.end_reason)
        if self.instance:
            query = query.where(c.instance == self.instance)
        if self.agent:
            query = query.where(c.agent == self.agent)
        if self.text:
            t = turns.c
            said = or_(
                t.text.contains(self.text, autoescape=True), t.heard.contains(self.text, autoescape=True)
            )
            in_turns = exists().where(t.instance == c.instance, t.call_id == c.call_id, said)
            # ... or its summary and fields (a field's value: "callback_needed": true is found by "callback")
            summarized = or_(
                c.summary.contains(self.text, autoescape=True),
                c.summary_fields.contains(self.text, autoescape=True),
            )
            query = query.where(or_(in_turns, summarized))
        return query


def _row(row) -> dict:
    out = dict(row._mapping)
    if "setup_ms" in out:
        out["setup_ms"] = json.loads(out["setup_ms"] or "{}")
    if "summary" in out:  # NULL until summarized (records/schema.py): "" and {} to a reader
        out["summary"] = out["summary"] or ""
        try:
            fields = json.loads(out.get("summary_fields") or "{}")
        except ValueError:
            fields = {}
        out["summary_fields"] = fields if isinstance(fields, dict) else {}
    return out


def recent_calls(
    engine: Engine, where: CallFilter = CallFilter(), limit: int = 50, offset: int = 0
) -> list[dict]:
    """The newest calls first; `offset` skips that many (a page of the dashboard's history)."""
    query = where.where(select(calls)).order_by(calls.c.started_at.desc(), calls.c.call_id)
    with engine.connect() as conn:
        return [_row(row) for row in conn.execute(query.limit(limit).offset(offset))]


def count_calls(engine: Engine, where: CallFilter = CallFilter()) -> int:
    with engine.connect() as conn:
        return conn.execute(where.where(select(func.count()).select_from(calls))).scalar_one()


def recent_alerts(engine: Engine, limit: int = 20) -> list[dict]:
    """The alerts sent lately, newest first, one row per channel (alerts/send.py)."""
    query = select(alerts).order_by(alerts.c.sent_at.desc(), alerts.c.seq).limit(limit)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def distinct_values(engine: Engine, column: str, limit: int = 200) -> list[str]:
    """The values one column of `calls` holds (agents, instances, end reasons): filter choices."""
    col = calls.c[column]
    with engine.connect() as conn:
        return [v for (v,) in conn.execute(select(col).distinct().order_by(col).limit(limit)) if v]


def iter_calls(engine: Engine, where: CallFilter = CallFilter()) -> Iterator[dict]:
    """Every matching call, oldest first, streamed (for export)."""
    query = where.where(select(calls)).order_by(calls.c.started_at, calls.c.call_id)
    with engine.connect() as conn:
        for row in conn.execution_options(stream_results=True).execute(query):
            yield _row(row)


def find_calls(engine: Engine, call_id: str, instance: str | None = None) -> list[dict]:
    """The call(s) with this id (one per instance that saw it), each with turns, events and
    its webhook deliveries (`webhooks`)."""
    query = select(calls).where(calls.c.call_id == call_id)
    if instance:
        query = query.where(calls.c.instance == instance)
    found = []
    with engine.connect() as conn:
        for row in conn.execute(query.order_by(calls.c.instance)):
            call = _row(row)
            for name, table in (("turns", turns), ("events", events)):
                key = (table.c.instance == call["instance"]) & (table.c.call_id == call_id)
                children = [_row(r) for r in conn.execute(select(table).where(key).order_by(table.c.seq))]
                for child in children:
                    child.pop("instance"), child.pop("call_id")
                    if "detail" in child:
                        child["detail"] = json.loads(child["detail"] or "{}")
                call[name] = children
            w = webhook_deliveries.c
            key = (w.instance == call["instance"]) & (w.call_id == call_id)
            query = select(webhook_deliveries).where(key).order_by(w.created_at, w.target)
            call["webhooks"] = [dict(r._mapping) for r in conn.execute(query)]
            found.append(call)
    return found


def usage(
    engine: Engine, per: str = "day", where: CallFilter = CallFilter(), zone: tzinfo | None = None
) -> list[dict]:
    """Calls, minutes, tokens by kind and cost per day or month in `zone` (local by default).

    Summed here rather than in SQL: grouping by a local day is spelled differently by
    each database, and a period's calls are few enough to read."""
    columns = [calls.c.started_at, calls.c.duration_s, calls.c.cost_estimate, calls.c.currency]
    columns += [calls.c.transcription_seconds, calls.c.transcription_cost]
    columns += [calls.c[name] for name in TOKEN_COLUMNS]
    query = where.where(select(*columns)).order_by(calls.c.started_at)
    fmt = "%Y-%m" if per == "month" else "%Y-%m-%d"
    periods: OrderedDict[str, dict] = OrderedDict()
    with engine.connect() as conn:
        for row in conn.execute(query):
            local = row.started_at.replace(tzinfo=UTC).astimezone(zone)
            period = periods.setdefault(
                local.strftime(fmt),
                {
                    "period": local.strftime(fmt),
                    "calls": 0,
                    "minutes": 0.0,
                    **dict.fromkeys(TOKEN_COLUMNS, 0),
                    "transcription_minutes": 0.0,
                    "transcription_cost": None,  # the part of `cost` that is transcription
                    "cost": None,
                    "currency": "",
                },
            )
            period["calls"] += 1
            period["minutes"] += (row.duration_s or 0.0) / 60
            for name in TOKEN_COLUMNS:
                period[name] += getattr(row, name) or 0
            period["transcription_minutes"] += (row.transcription_seconds or 0.0) / 60
            if row.cost_estimate is not None:
                period["cost"] = (period["cost"] or 0.0) + row.cost_estimate
                period["currency"] = row.currency
                if row.transcription_cost is not None:
                    period["transcription_cost"] = (
                        period["transcription_cost"] or 0.0
                    ) + row.transcription_cost
    for period in periods.values():
        period["minutes"] = round(period["minutes"], 1)
        period["transcription_minutes"] = round(period["transcription_minutes"], 2)
        for name in ("cost", "transcription_cost"):
            if period[name] is not None:
                period[name] = round(period[name], 4)
    return list(periods.values())


def delete_before(engine: Engine, cutoff: datetime, batch: int = 500) -> int:
    """RECORDS_RETENTION_DAYS: remove calls started before `cutoff`, with their turns and
    events, a batch per transaction (a long delete would hold SQLite's write lock); alerts
    sent before it go too."""
    with engine.begin() as conn:
        conn.execute(delete(alerts).where(alerts.c.sent_at < cutoff))
        conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.finished_at < cutoff))
    removed = 0
    while True:
        with engine.begin() as conn:
            keys = conn.execute(
                select(calls.c.instance, calls.c.call_id).where(calls.c.started_at < cutoff).limit(batch)
            ).all()
            for instance, call_id in keys:
                for table in (turns, events, calls):
                    conn.execute(
                        delete(table).where((table.c.instance == instance) & (table.c.call_id == call_id))
                    )
        removed += len(keys)
        if len(keys) < batch:
            return removed


def mask_callers(engine: Engine, keep: int, key: str, instance: str | None = None, batch: int = 500) -> int:
    """`callbridge db mask-existing`: the calls stored before RECORDS_MASK_CALLERS was on get
    their number masked as the service masks new ones, and the keyed hash of the full
    number, so `calls --caller FULL` still finds them. A number with a '*' is masked
    already (mask_number always leaves one) and is left alone, so running it again changes
    nothing. A batch per transaction, like `delete_before`."""
    c = calls.c
    masked = 0
    last: tuple[str, str] = ("", "")
    while True:
        query = select(c.instance, c.call_id, c.caller, c.caller_hash).where(
            c.caller != "",
            ~c.caller.contains("*", autoescape=True),
            (c.instance > last[0]) | ((c.instance == last[0]) & (c.call_id > last[1])),
        )
        if instance:
            query = query.where(c.instance == instance)
        with engine.begin() as conn:
            rows = conn.execute(query.order_by(c.instance, c.call_id).limit(batch)).all()
            for row in rows:
                conn.execute(
                    update(calls)
                    .where((c.instance == row.instance) & (c.call_id == row.call_id))
                    .values(
                        caller=mask_number(row.caller, keep)[:64],
                        caller_hash=row.caller_hash or number_hash(row.caller, key),
                    )
                )
        masked += len(rows)
        if len(rows) < batch:
            return masked
        last = (rows[-1].instance, rows[-1].call_id)


def cost_by_agent(
    engine: Engine, since: datetime, until: datetime, instance: str, run_start: datetime | None = None
) -> dict[str, float]:
    """Each agent's estimated cost of the calls `instance` started in [since, until) (naive
    UTC): the supervisor's daily budgets start from it (supervisor/budgets.py). A call
    without an estimate (no price known) adds nothing. A summary made since `run_start`
    is left out of its call's estimate: the run that made it counts it itself
    (supervisor/budgets.py::SummarySpend)."""
    c = calls.c
    query = select(c.agent, c.cost_estimate, c.summary_cost, c.summarized_at).where(
        c.instance == instance, c.started_at >= since, c.started_at < until, c.cost_estimate.is_not(None)
    )
    spent: dict[str, float] = {}
    with engine.connect() as conn:
        for agent, cost, summary_cost, summarized_at in conn.execute(query):
            cost = float(cost)
            if run_start is not None and summarized_at is not None and summarized_at >= run_start:
                cost -= float(summary_cost or 0.0)
            spent[agent or ""] = spent.get(agent or "", 0.0) + cost
    return spent
