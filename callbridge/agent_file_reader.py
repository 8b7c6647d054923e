"""Reading values out of a parsed agents file (callbridge/agent_file.py), each problem noted
under its dotted key (`agents.clinic.transfer.reception.extension: must be ...`) instead
of stopping at the first: the file's readers for agents, tools and tuning share it.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from callbridge.dialplan import PRIORITY_MAX, DialplanTarget, name_problem

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
TARGET_KEYS = ("context", "extension", "priority")


def dotted(*parts: str) -> str:
    return ".".join(part if NAME.fullmatch(part) else f'"{part}"' for part in parts)


def type_name(value: object) -> str:
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class Reader:
    """Reads values out of the parsed TOML, noting each problem under its dotted key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def problem(self, key: str, text: str) -> None:
        self.problems.append(f"{self.path}: {key}: {text}")

    def unknown(self, where: tuple[str, ...], table: dict, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {near[0]}?)" if near else f" (known: {', '.join(known)})"
                self.problem(dotted(*where, key), f"unknown key{hint}")

    def text(self, where: tuple[str, ...], table: dict, key: str, required: bool = False) -> str:
        value = table.get(key)
        if value is None:
            if required:
                self.problem(dotted(*where, key), "is required")
            return ""
        if not isinstance(value, str):
            self.problem(dotted(*where, key), f"must be text (got {type_name(value)})")
            return ""
        if required and not value.strip():
            self.problem(dotted(*where, key), "is empty")
        return value.strip()

    def number(self, where, table, key, low, high, whole=False, default=None):
        value = table.get(key)
        if value is None:
            return default
        kind = "a whole number" if whole else "a number"
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            self.problem(dotted(*where, key), f"must be {kind} (got {type_name(value)})")
            return default
        if not low <= value <= high:
            self.problem(dotted(*where, key), f"must be {kind} between {low} and {high} (got {value})")
            return default
        return value

    def flag(self, where: tuple[str, ...], table: dict, key: str) -> bool | None:
        """true or false, or None when not set (or wrong: noted)."""
        value = table.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.problem(dotted(*where, key), f"must be true or false (got {type_name(value)})")
        return None

    def choice(self, where: tuple[str, ...], table: dict, key: str, allowed: tuple[str, ...]) -> str | None:
        """One of `allowed`, or None when not set (or wrong: noted)."""
        if key not in table:
            return None
        value = self.text(where, table, key)
        if value not in allowed:
            self.problem(dotted(*where, key), f"must be one of {', '.join(allowed)} (got {value[:30]!r})")
            return None
        return value

    def parsed(self, where, table, key, parse):
        """A text value read by one of the configuration's parsers (its problem noted)."""
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str):
            self.problem(dotted(*where, key), f"must be text (got {type_name(value)})")
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.problem(dotted(*where, key), str(exc))
            return None

    def target(self, where: tuple[str, ...], table: object, known=TARGET_KEYS) -> DialplanTarget | None:
        if not isinstance(table, dict):
            self.problem(dotted(*where), "must be a table with context, extension and priority")
            return None
        before = len(self.problems)
        self.unknown(where, table, known)
        found = []
        for key in ("context", "extension"):
            value = table.get(key)
            problem = "is required" if value is None else name_problem("it", value)
            if problem:
                self.problem(dotted(*where, key), problem.removeprefix("it "))
            found.append(value)
        priority = self.number(where, table, "priority", 1, PRIORITY_MAX, whole=True, default=1)
        if len(self.problems) != before:
            return None
        return DialplanTarget(found[0], found[1], priority)
