"""An agent's business hours: a timezone and weekly ranges of local time (docs/agents.md).

    hours = { timezone = "Europe/Madrid", mon-fri = "08:00-14:00,16:00-19:00",
              sat = "09:00-13:00", closed = ["2026-12-25"] }

A key is a day (`mon` ... `sun`) or a span of days (`mon-fri`; `fri-mon` wraps); its value
is comma-separated `HH:MM-HH:MM` ranges of that day's local wall-clock time (the end may be
`24:00`; a range that goes past midnight is written as two, one per day), or "" for closed.
Days not given are closed; `closed` lists dates that are closed whatever the day. Local time
is the timezone's (zoneinfo), so a range means the same hour on both sides of a DST change.

Pure: parsed once when the agents file is loaded; `is_open` is a few comparisons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")


class HoursProblems(Exception):
    """Every problem of one `hours` table: (key inside it, or "", problem) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(p for _, p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Hours:
    timezone: str
    week: tuple[tuple[tuple[int, int], ...], ...]  # per weekday (Monday first): (start, end) minutes
    closed: frozenset[date] = frozenset()

    def is_open(self, now: datetime) -> bool:
        """`now` is aware (a naive one is taken as UTC)."""
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        local = now.astimezone(ZoneInfo(self.timezone))
        if local.date() in self.closed:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.week[local.weekday()])

    def describe(self) -> str:
        """One line for `callbridge agents`: `mon-fri 08:00-14:00,16:00-19:00; sat ...`."""
        parts, day = [], 0
        while day < 7:
            last = day
            while last + 1 < 7 and self.week[last + 1] == self.week[day]:
                last += 1
            if self.week[day]:
                span = DAYS[day] if last == day else f"{DAYS[day]}-{DAYS[last]}"
                parts.append(f"{span} {','.join(_hhmm(s) + '-' + _hhmm(e) for s, e in self.week[day])}")
            day = last + 1
        return f"{'; '.join(parts) or 'never open'} ({self.timezone})"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days(key: str) -> list[int] | None:
    first, sep, last = key.partition("-")
    if first not in DAYS or (sep and last not in DAYS):
        return None
    start, end = DAYS.index(first), DAYS.index(last if sep else first)
    return [(start + i) % 7 for i in range((end - start) % 7 + 1)]


def _ranges(text: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = RANGE.fullmatch(part)
        if not match:
            raise ValueError(f"{part[:30]!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"{part!r} is not a time of day")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise ValueError(f"{part!r} ends before it starts (past midnight: one range per day)")
        ranges.append((start, end))
    ranges.sort()
    for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
        if start < end:
            raise ValueError(f"{text!r} has overlapping ranges")
    return tuple(ranges)


def parse_hours(table: object) -> Hours:
    """An `hours` table; raises HoursProblems listing each problem with its key."""
    if not isinstance(table, dict):
        raise HoursProblems([("", 'must be a table: { timezone = ..., mon-fri = "09:00-17:00" }')])
    problems: list[tuple[str, str]] = []
    zone = table.get("timezone")
    if not isinstance(zone, str) or not zone:
        problems.append(("timezone", "is required: a timezone name like Europe/Madrid or UTC"))
    else:
        try:
            ZoneInfo(zone)
        except (ValueError, ZoneInfoNotFoundError):
            problems.append(
                ("timezone", f"must be a timezone name like Europe/Madrid or UTC (got {zone[:60]!r})")
            )
    week: list[tuple[tuple[int, int], ...] | None] = [None] * 7
    given_by: dict[int, str] = {}
    closed: set[date] = set()
    for key, value in table.items():
        if key == "timezone":
            continue
        if key == "closed":
            closed |= _closed_dates(value, problems)
            continue
        days = _days(key)
        if days is None:
            problems.append((key, "is not a day (mon ... sun), a span of days (mon-fri), timezone or closed"))
            continue
        if not isinstance(value, str):
            problems.append((key, 'must be text: "HH:MM-HH:MM[,HH:MM-HH:MM...]", or "" for closed'))
            continue
        try:
            ranges = _ranges(value)
        except ValueError as exc:
            problems.append((key, str(exc)))
            continue
        for day in days:
            if day in given_by:
                problems.append((key, f"{DAYS[day]} is given twice ({given_by[day]} and {key})"))
            given_by[day] = key
            week[day] = ranges
    if problems:
        raise HoursProblems(problems)
    return Hours(zone, tuple(day or () for day in week), frozenset(closed))


def _closed_dates(value: object, problems: list[tuple[str, str]]) -> set[date]:
    if not isinstance(value, list):
        problems.append(("closed", 'must be a list of dates: ["2026-12-25", ...]'))
        return set()
    dates = set()
    for item in value:
        if isinstance(item, date) and not isinstance(item, datetime):  # TOML's own date
            dates.add(item)
            continue
        try:
            dates.add(date.fromisoformat(str(item)))
        except ValueError:
            problems.append(("closed", f"{str(item)[:30]!r} is not a date (YYYY-MM-DD)"))
    return dates
