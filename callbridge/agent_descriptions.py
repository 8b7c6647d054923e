"""What `callbridge agents` prints and the dashboard's agents page shows: the agents of the
book, and who answers a number when.

Pure text from an `AgentBook` (callbridge/agents.py); the command is in
callbridge/cli/__init__.py, the page in web/pages.py."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from callbridge.agents import AgentBook


def parse_at(text: str | None, zone_name: str) -> datetime:
    """--at: ISO 8601; without an offset it is RECORDS_TIMEZONE's (else the machine's) local
    time. None: now."""
    if not text:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO time like 2026-03-29T09:30 or 2026-03-29T09:30+02:00"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone_name)) if zone_name else when.astimezone()
    return when


def describe_book(book: AgentBook) -> str:
    lines = [f"agents from {book.source or 'the environment (no AGENTS_FILE)'}:"]
    for agent in book.agents.values():
        lines.append(f"  {agent.name}")
        lines.append(
            f"    numbers:   {', '.join(agent.numbers) or '(none: only as outside_hours of another)'}"
        )
        if agent.hours is not None:
            lines.append(f"    hours:     {agent.hours.describe()}")
            lines.append(f"    outside:   {agent.outside_hours or 'the fallback'}")
        details = [
            f"voice {agent.voice}" if agent.voice else "",
            f"language {agent.language}" if agent.language else "",
        ]
        if any(details):
            lines.append(f"    speaks:    {', '.join(d for d in details if d)}")
        tuning = agent.tuning()
        if tuning:  # what it sets itself; the rest of the voice's tuning is the environment's
            lines.append(f"    tuning:    {', '.join(f'{k} {_shown(v)}' for k, v in tuning.items())}")
        if agent.notice:
            lines.append(f"    notice:    {agent.notice}")
        for dest in agent.transfers.values():
            mode = "blind" if dest.blind else f"attended, {dest.timeout:g} s"
            lines.append(f"    transfer:  {dest.name} -> {dest.target} ({mode}) {dest.description}".rstrip())
        for tool in agent.http_tools.values():
            lines.append(f"    tool:      {tool.describe()}")
        for server in agent.mcp.values():
            lines.append(f"    tools:     {server.describe()}")
        if agent.webhooks:
            lines.append(f"    webhooks:  {', '.join(str(t) for t in agent.webhooks)}")
        if agent.fallback is not None:
            lines.append(f"    fallback:  {agent.fallback}")
        if agent.daily_budget is not None:
            lines.append(f"    budget:    {agent.daily_budget:g} a day")
    lines.append(f"fallback for all: {book.fallback or 'none (busy prompt, then hang-up)'}")
    return "\n".join(lines)


def _shown(value) -> str:
    if isinstance(value, tuple):  # transcription keywords
        return "[" + ", ".join(value) + "]"
    if isinstance(value, str) and " " in value:  # a transcription prompt
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_choice(book: AgentBook, number: str, when: datetime) -> str:
    choice = book.choose(number, when)
    at = when.isoformat(timespec="minutes")
    if choice.agent is not None:
        return f"{number} at {at}: {choice.agent.name} ({choice.how})"
    where = f"fallback {choice.fallback}" if choice.fallback else "busy prompt, then hang-up (no fallback)"
    return f"{number} at {at}: no agent ({choice.how}) -> {where}"
