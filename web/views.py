"""What the pages show, shaped from the records and the supervisor's replies: plain data for
the templates (web/templates/), no HTML here. Times are shown in RECORDS_TIMEZONE (else the
machine's zone), the operator's."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from urllib.parse import urlencode

from callbridge.summary_spec import field_text
from records.privacy import mask_number, number_hash
from records.queries import CallFilter

PAGE_SIZE = 50
HISTORY_FIELDS = ("since", "until", "caller", "number", "agent", "end_reason", "instance", "text")

# The live table's columns: (the status row's key, the heading). live_rows fills them.
LIVE_COLUMNS = [
    ("caller", "Caller"),
    ("dialled", "Number dialled"),
    ("agent", "Agent"),
    ("age", "Age"),
    ("state", "State"),
    ("realtime", "Voice service"),
    ("frames", "Frames in/out"),
    ("fill", "Ring fill"),
    ("underruns", "Underruns"),
    ("barge_ins", "Barge-ins"),
    ("tool_calls", "Tool calls"),
    ("key_presses", "Key presses"),
    ("transfer", "Transfer"),
    ("cpu_percent", "CPU %"),
    ("memory_mb", "Memory MB"),
    ("call_id", "Call"),
]


def duration(seconds) -> str:
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def local(when: datetime | None, zone: tzinfo | None, seconds: bool = False) -> str:
    """A stored (naive UTC) time in the operator's zone."""
    if when is None:
        return "-"
    shown = when.replace(tzinfo=UTC).astimezone(zone)
    return shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def day_start(day: date, zone: tzinfo | None) -> datetime:
    """A local day's midnight in `zone` (None: the machine's), as naive UTC."""
    start = datetime.combine(day, datetime.min.time())
    start = start.replace(tzinfo=zone) if zone is not None else start.astimezone()
    return start.astimezone(UTC).replace(tzinfo=None)


def money(value, currency: str) -> str:
    return "-" if value is None else f"{value:.4f} {currency}".strip()


# --- live


def live_rows(reply: dict, mask_keep: int | None) -> list[dict]:
    """The live page's rows from a `status` reply; callers masked as the records mask them."""
    rows = []
    for call in reply.get("calls") or []:
        caller = call.get("caller") or ""
        memory = call.get("uss_mb") if call.get("uss_mb") is not None else call.get("rss_mb")
        rows.append(
            {
                "call_id": call.get("call_id", ""),
                "caller": mask_number(caller, mask_keep) if mask_keep is not None and caller else caller,
                "dialled": call.get("dialled", ""),
                "agent": call.get("agent", ""),
                "age": duration(call.get("age_s", 0)),
                "state": f"{call.get('phase', '')} / {call.get('worker_state', '')}",
                "realtime": " ".join(
                    p for p in (call.get("api", ""), call.get("realtime", "")) if p
                ),  # "live connected"
                "frames": f"{call.get('frames_in', 0)} / {call.get('frames_out', 0)}",
                "fill": f"{call.get('uplink_fill', 0)} / {call.get('downlink_fill', 0)}",
                "underruns": call.get("underruns", 0),
                "barge_ins": call.get("barge_ins", 0),
                "tool_calls": call.get("tool_calls", 0),
                "key_presses": call.get("key_presses", 0),
                "transfer": call.get("transfer") or "",
                "cpu_percent": call.get("cpu_percent"),
                "memory_mb": memory,
            }
        )
    return rows


# --- history


@dataclass(frozen=True)
class HistoryQuery:
    values: dict  # HISTORY_FIELDS -> the text given ("" when not)
    page: int

    @classmethod
    def parse(cls, params) -> HistoryQuery:
        values = {name: (params.get(name) or "").strip()[:200] for name in HISTORY_FIELDS}
        try:
            page = max(1, min(int(params.get("page") or 1), 100000))
        except ValueError:
            page = 1
        return cls(values, page)

    def day(self, name: str, zone: tzinfo | None, after: bool = False) -> datetime | None:
        """A date field as naive UTC: its local midnight (`after`: the next day's)."""
        text = self.values[name]
        if not text:
            return None
        try:
            return day_start(date.fromisoformat(text) + timedelta(days=1 if after else 0), zone)
        except (ValueError, OverflowError):  # 0001-01-01 in a zone east of UTC, 9999-12-31 + 1
            return None  # an unparseable date filters nothing (the form's date input sends ISO)

    def call_filter(self, zone: tzinfo | None, hash_key: str) -> CallFilter:
        v = self.values
        return CallFilter(
            since=self.day("since", zone),
            until=self.day("until", zone, after=True),  # "to" a day includes that day
            caller=v["caller"] or None,
            caller_hash=number_hash(v["caller"], hash_key) if v["caller"] and hash_key else None,
            number=v["number"] or None,
            end_reason=v["end_reason"] or None,
            instance=v["instance"] or None,
            agent=v["agent"] or None,
            text=v["text"] or None,
        )

    def query(self, page: int | None = None) -> str:
        params = {k: v for k, v in self.values.items() if v}
        if page and page > 1:
            params["page"] = page
        return urlencode(params)


def masked(row: dict, keep: int | None) -> dict:
    """A stored call as this instance shows it: with RECORDS_MASK_CALLERS on, the caller
    masked even where the row was stored unmasked (before masking was on, or by another
    instance of the database), and a caller name that is a number (PBXs often set it so) too."""
    if keep is None:
        return row
    name = row.get("caller_name") or ""
    return {
        **row,
        "caller": mask_number(row["caller"], keep) if row.get("caller") else row.get("caller"),
        "caller_name": mask_number(name, keep) if sum(c.isdigit() for c in name) >= 4 else name,
    }


def history_row(row: dict, zone: tzinfo | None) -> dict:
    return {
        "href": "/calls/" + "/".join(_path(p) for p in (row["instance"], row["call_id"])),
        "started": local(row["started_at"], zone),
        "instance": row["instance"],
        "caller": row["caller"],
        "caller_name": row["caller_name"],
        "dialled": row["dialled"],
        "agent": row["agent"],
        "duration": duration(row["duration_s"]),
        "end_reason": row["end_reason"],
        "cost": money(row["cost_estimate"], row["currency"]),
        "summary": short(row.get("summary") or "", HISTORY_SUMMARY),
    }


HISTORY_SUMMARY = 90  # characters of a summary in the history's table (the call's page has it whole)


def short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def summary_view(call: dict) -> dict | None:
    """The call's post-call summary (summaries/) as its page shows it, or None."""
    if not call.get("summary"):
        return None
    fields = []
    for name, value in (call.get("summary_fields") or {}).items():
        fields.append({"name": name, "value": field_text(value)})
    return {
        "text": call["summary"],
        "fields": fields,
        "model": call.get("summary_model") or "",
        "tokens": (call.get("summary_input_tokens") or 0) + (call.get("summary_output_tokens") or 0),
        "cost": money(call.get("summary_cost"), call.get("currency") or ""),
    }


def _path(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


# --- one call


def _offset(ms) -> str:
    seconds = (ms or 0) / 1000
    return f"{seconds:.2f} s" if seconds < 60 else f"{duration(seconds)} ({seconds:.0f} s)"


def _what(kind: str) -> str:
    return "set-up: " + kind[6:].replace("_", " ") if kind.startswith("setup_") else kind.replace("_", " ")


def _detail(detail) -> str:
    if not detail:
        return ""
    if isinstance(detail, dict):
        return ", ".join(
            f"{k}: {v if not isinstance(v, dict | list) else json.dumps(v)}" for k, v in detail.items()
        )
    return str(detail)


def call_view(call: dict, zone: tzinfo | None) -> dict:
    turns = []
    for turn in call.get("turns") or []:
        text, heard = turn.get("text") or "", turn.get("heard")
        interrupted = bool(turn.get("interrupted"))
        shown_heard = heard if heard is not None else text
        unheard = text[len(shown_heard) :] if interrupted and text.startswith(shown_heard) else ""
        turns.append(
            {
                "side": turn.get("side", ""),
                "at": _offset(turn.get("offset_ms")),
                "text": text,
                "interrupted": interrupted,
                "heard": shown_heard,
                "unheard": unheard if interrupted else "",
                "phase": turn.get("phase") or "",  # "preamble" | "answer" (gpt-realtime-2.x)
            }
        )
    events = sorted(call.get("events") or [], key=lambda e: (e.get("offset_ms") or 0, e.get("seq") or 0))
    timeline = [
        {
            "at": _offset(e.get("offset_ms")),
            "kind": e.get("kind", ""),
            "what": _what(e.get("kind", "")),
            "detail": _detail(e.get("detail")),
        }
        for e in events
    ]
    if not any(e.get("kind", "").startswith("setup_") for e in events):  # older records: the set-up only
        timeline[:0] = [
            {"at": _offset(ms), "kind": f"setup_{name}", "what": _what(f"setup_{name}"), "detail": ""}
            for name, ms in sorted((call.get("setup_ms") or {}).items(), key=lambda kv: kv[1])
        ]
    currency = call.get("currency") or ""
    return {
        **{k: call.get(k) for k in ("instance", "call_id", "caller", "caller_name", "dialled", "agent")},
        **{k: call.get(k) for k in ("end_reason", "model", "failure", "complete")},
        "started": local(call.get("started_at"), zone, seconds=True),
        "duration": duration(call.get("duration_s")),
        "recording": {
            "state": call.get("recording_state") or "",
            "length": duration(call.get("recording_seconds")),
        }
        if call.get("recording_path")
        else None,
        "summary": summary_view(call),
        "turns": turns,
        "timeline": timeline,
        "webhooks": [  # webhooks/sender.py's outcomes; a receiver by its key, never its URL
            {
                "event": w.get("event_type", ""),
                "target": w.get("target", ""),
                "fate": "delivered" if w.get("delivered") else "given up",
                "at": local(w.get("finished_at"), zone, seconds=True),
                "attempts": w.get("attempts", 0),
                "outcome": w.get("outcome", ""),
            }
            for w in call.get("webhooks") or []
        ],
        "audio": [
            ("frames in", call.get("frames_in", 0)),
            ("frames out", call.get("frames_out", 0)),
            ("underruns", call.get("underruns", 0)),
            ("barge-ins", call.get("barge_ins", 0)),
            ("rejected packets", call.get("rejected_packets", 0)),
            ("reconnects", call.get("reconnects", 0)),
            ("bridge retries", call.get("setup_bridge_retries", 0)),
        ],
        "usage": [
            ("input audio tokens", call.get("input_audio_tokens", 0)),
            ("input text tokens", call.get("input_text_tokens", 0)),
            ("cached input tokens", call.get("input_cached_tokens", 0)),
            ("output audio tokens", call.get("output_audio_tokens", 0)),
            ("output text tokens", call.get("output_text_tokens", 0)),
            (
                "transcription",
                f"{call.get('transcription_seconds') or 0:.0f} s {call.get('transcription_model') or ''}",
            ),
            *(
                [("GPT-Live session", f"{call['session_seconds']:.0f} s")]
                if call.get("session_seconds")
                else []
            ),
            ("cost estimate", money(call.get("cost_estimate"), currency)),
        ],
    }


# --- the overview


def bars(title: str, points: list[tuple[str, float]], shown=lambda v: f"{v:g}", every: int = 1) -> dict:
    """A bar chart's geometry (an SVG drawn by the template: no script, no library)."""
    width, height = 300, 80  # drawn about 370 px wide: the ticks' 11 units read as 13 px
    top = max((v for _, v in points), default=0) or 1
    slot = width / max(1, len(points))
    drawn, ticks = [], []
    for n, (label, value) in enumerate(points):
        h = round(height * value / top, 1)
        drawn.append(
            {
                "x": round(n * slot + 1, 1),
                "y": round(height - h, 1),
                "w": round(max(1.0, slot - 2), 1),
                "h": h,
            }
            | {"label": label, "text": shown(value)}
        )
        if n % every == 0:
            ticks.append({"x": round(n * slot + 1, 1), "label": label})
    total = sum(v for _, v in points)
    return {
        "title": title,
        "width": width,
        "height": height,
        "bars": drawn,
        "ticks": ticks,
        "top": shown(max((v for _, v in points), default=0)),
        "total": shown(total),
    }


def overview(rows: list[dict], now: datetime, zone: tzinfo | None) -> dict:
    """Charts and tables of the last 14 days' calls (`rows`: started_at, duration_s,
    end_reason, agent, cost_estimate, currency), in the operator's zone."""
    local_now = now.replace(tzinfo=UTC).astimezone(zone)
    hour0 = local_now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    days = [(local_now - timedelta(days=13 - n)).date() for n in range(14)]
    per_hour, per_day, minutes, cost = Counter(), Counter(), Counter(), Counter()
    reasons = Counter()
    agents: dict[str, dict] = defaultdict(lambda: {"calls": 0, "seconds": 0.0, "cost": 0.0})
    currency = ""
    for row in rows:
        started = row["started_at"].replace(tzinfo=UTC).astimezone(zone)
        day = started.date()
        if day < days[0]:
            continue
        per_day[day] += 1
        minutes[day] += (row["duration_s"] or 0) / 60
        cost[day] += row["cost_estimate"] or 0
        currency = currency or row.get("currency") or ""
        reasons[row["end_reason"]] += 1
        agent = agents[row["agent"] or ""]
        agent["calls"] += 1
        agent["seconds"] += row["duration_s"] or 0
        agent["cost"] += row["cost_estimate"] or 0
        if started >= hour0:
            per_hour[started.replace(minute=0, second=0, microsecond=0)] += 1
    hours = [hour0 + timedelta(hours=n) for n in range(24)]
    return {
        "charts": [
            bars("Calls per hour, last 24 hours", [(h.strftime("%H"), per_hour[h]) for h in hours], every=3),
            bars("Calls per day, last 14 days", [(d.strftime("%d"), per_day[d]) for d in days], every=2),
            bars(
                "Minutes per day, last 14 days",
                [(d.strftime("%d"), minutes[d]) for d in days],
                shown=lambda v: f"{v:.1f}",
                every=2,
            ),
            bars(
                "Cost per day, last 14 days",
                [(d.strftime("%d"), cost[d]) for d in days],
                shown=lambda v: f"{v:.2f} {currency}".strip(),
                every=2,
            ),
        ],
        "reasons": reasons.most_common(),
        "agents": [
            {
                "name": name,
                "calls": a["calls"],
                "minutes": f"{a['seconds'] / 60:.1f}",
                "cost": f"{a['cost']:.2f} {currency}".strip(),
            }
            for name, a in sorted(agents.items(), key=lambda kv: -kv[1]["calls"])
        ],
    }


def health(
    status: dict, totals: dict, grew: dict, waiting: int | None, t, hooks_waiting: int | None = None
) -> list[tuple[str, str, str]]:
    """(label, value, state) rows of the service's health; state is "", "good", "warn" or "bad".
    `hooks_waiting`: call events in the webhook outbox (records/outbox.py); None: no webhooks."""
    sup = status.get("supervisor") if status.get("ok") else None
    if sup is None:
        return [("the supervisor", t("not running") + f" ({status.get('error', '')})", "bad")]
    hour = "" if grew.get("since_s", 3600) >= 3600 else f" ({duration(grew['since_s'])})"
    shutdown = totals.get("model_shutdown_dates") or {}
    rows = [
        ("ARI", sup.get("ari", "-"), "good" if sup.get("ari") == "connected" else "bad"),
        ("version", sup.get("version", "-"), ""),
        ("up for", duration(sup.get("uptime_s", 0)), ""),
        ("live calls", f"{sup.get('calls_live', 0)} / {sup.get('max_concurrent_calls', '-')}", ""),
        ("calls taken", str(sup.get("calls_taken", 0)), ""),
        (
            "Realtime errors, last hour",
            f"{grew.get('realtime_errors', 0)}{hour}",
            "warn" if grew.get("realtime_errors") else "good",
        ),
        (
            "worker crashes, last hour",
            f"{grew.get('worker_crashes', 0)}{hour}",
            "bad" if grew.get("worker_crashes") else "good",
        ),
        ("records waiting", "-" if waiting is None else str(waiting), "warn" if waiting else ""),
        ("records lost", str(totals.get("records_lost", 0)), "bad" if totals.get("records_lost") else "good"),
        # MEDIA_REALTIME_PRIORITY's outcome (supervisor/start_checks.py): refused is worth a look
        (
            "media threads",
            sup.get("media_scheduling", "-"),
            "good"
            if sup.get("media_scheduling", "").startswith("SCHED_FIFO")
            else "warn"
            if "refused" in sup.get("media_scheduling", "")
            else "",
        ),
        *(
            [("webhook events waiting", str(hooks_waiting), "warn" if hooks_waiting else "good")]
            if hooks_waiting is not None
            else []
        ),
        (
            "model shutdown dates",
            ", ".join(f"{m}: {d}" for m, d in shutdown.items()) or "-",
            "warn" if shutdown else "",
        ),
    ]
    return rows
