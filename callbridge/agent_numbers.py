"""The numbers an agent answers: exact numbers, Asterisk extension patterns, and "*".

Patterns are Asterisk's (docs/agents.md): a leading `_`, then `X` (0-9), `Z` (1-9), `N`
(2-9), `[15-7]` (a set, with ranges), `.` (one or more of anything) and `!` (zero or more),
every other character itself. When several match, the most specific wins, as in Asterisk's
own ordering (main/pbx.c, ext_cmp): position by position, the one whose character there
matches fewer digits sorts first; `.` and `!` match more than any class; a pattern that
ends where the other goes on (with `!`) sorts first.

Pure: compiled once when the agents file is loaded, matched at every admission.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT = "*"  # every number no other agent claims
CLASSES = {"X": "0123456789", "Z": "123456789", "N": "23456789"}
LITERAL = re.compile(r"[0-9A-Za-z*#+\-]")
EXACT = re.compile(r"[0-9A-Za-z*#+\-]{1,64}")
ONE_OR_MORE, ZERO_OR_MORE = 1 << 20, 1 << 21  # weights of `.` and `!`: above any class


@dataclass(frozen=True)
class Pattern:
    text: str  # as written, with its `_`
    regex: re.Pattern
    weights: tuple[int, ...]  # per position: how many characters it matches

    def matches(self, number: str) -> bool:
        return self.regex.fullmatch(number) is not None

    def sort_key(self) -> tuple[int, ...]:
        """Smaller is more specific; the end of the pattern weighs 0 (sorts first)."""
        return (*self.weights, 0)


def compile_pattern(text: str) -> Pattern:
    """An Asterisk pattern (with its `_`); raises ValueError(problem)."""
    body = text[1:]
    if not body:
        raise ValueError("a pattern needs something after the _")
    regex, weights, i = [], [], 0
    while i < len(body):
        ch = body[i]
        if ch.upper() in CLASSES:
            regex.append(f"[{CLASSES[ch.upper()]}]")
            weights.append(len(CLASSES[ch.upper()]))
        elif ch == "[":
            end = body.find("]", i)
            if end < 0:
                raise ValueError(f"{text!r}: a [ without its ]")
            chars = _expand_set(text, body[i + 1 : end])
            regex.append("[" + "".join(re.escape(c) for c in sorted(chars)) + "]")
            weights.append(len(chars))
            i = end
        elif ch in ".!":
            if i != len(body) - 1:
                raise ValueError(f"{text!r}: {ch} must end the pattern (it matches the rest)")
            regex.append(".+" if ch == "." else ".*")
            weights.append(ONE_OR_MORE if ch == "." else ZERO_OR_MORE)
        elif LITERAL.fullmatch(ch):
            regex.append(re.escape(ch))
            weights.append(1)
        else:
            raise ValueError(f"{text!r}: {ch!r} cannot be in a pattern")
        i += 1
    return Pattern(text, re.compile("".join(regex)), tuple(weights))


def _expand_set(text: str, inside: str) -> set[str]:
    chars: set[str] = set()
    i = 0
    while i < len(inside):
        if i + 2 < len(inside) and inside[i + 1] == "-":
            low, high = inside[i], inside[i + 2]
            if low > high:
                raise ValueError(f"{text!r}: the range {low}-{high} is backwards")
            chars.update(chr(c) for c in range(ord(low), ord(high) + 1))
            i += 3
        else:
            chars.add(inside[i])
            i += 1
    if not chars:
        raise ValueError(f"{text!r}: an empty []")
    if not all(LITERAL.fullmatch(c) for c in chars):
        raise ValueError(f"{text!r}: a [] may hold only digits, letters, *, # and +")
    return chars


def kind_of(number: str) -> str:
    """ "default", "pattern" or "exact"; raises ValueError(problem) for neither."""
    if number == DEFAULT:
        return "default"
    if number.startswith("_"):
        compile_pattern(number)
        return "pattern"
    if not EXACT.fullmatch(number):
        raise ValueError(
            f"{number[:40]!r} is not a number: digits, letters, *, # and + (at most 64), "
            'a pattern starting with _, or "*"'
        )
    return "exact"


class NumberPlan:
    """Which agent's name answers a dialled number: exact, then the most specific pattern,
    then the default. Built from (number, agent name) pairs already checked for clashes."""

    def __init__(self, claims: list[tuple[str, str]]) -> None:
        self.exact: dict[str, str] = {}
        self.patterns: list[tuple[Pattern, str]] = []
        self.default: str | None = None
        for number, name in claims:
            kind = kind_of(number)
            if kind == "exact":
                self.exact[number] = name
            elif kind == "pattern":
                self.patterns.append((compile_pattern(number), name))
            else:
                self.default = name
        self.patterns.sort(key=lambda item: (item[0].sort_key(), item[0].text))  # ties: stable

    def lookup(self, dialled: str) -> tuple[str | None, str]:
        """(agent name or None, how: "exact 100", "pattern _9XXX", "default", "no agent")."""
        if dialled in self.exact:
            return self.exact[dialled], f"exact {dialled}"
        for pattern, name in self.patterns:
            if pattern.matches(dialled):
                return name, f"pattern {pattern.text}"
        if self.default is not None:
            return self.default, "default"
        return None, "no agent claims it"
