"""Secrets that cannot leak by accident.

A `Secret` prints as a mask in every repr, str, format and f-string, so a settings
object can be logged, shown by `callbridge config` or put in an exception without
exposing the ARI password or the OpenAI key. Code that really needs the value calls
`reveal()`, which makes every such place easy to find.

`redact()` is the second line of defence: the log formatters run every message and
traceback through it, replacing any registered secret value, and `redact_values()` does the
same to a structure before it is serialised (the control socket's replies). Redaction works
on values, never on finished JSON or a whole log line: there a secret with a quote or a
backslash is escaped and escapes redaction, and a short one (`1234`) would rewrite
timestamps, numbers and keys, so `status` could not be parsed. Each secret is registered
with the escaped forms it takes in JSON, in a repr and in a URL, so a message that quotes
one is redacted too.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote

MASK = "********"
SHORT = 12  # a password shorter than this is easy to guess: `check` warns (callbridge/cli/check.py)

_registry_lock = threading.Lock()
_registered: set[str] = set()
_longest_first: tuple[str, ...] = ()  # the same, sorted once: an escaped form before its core


class Secret:
    """A string whose value is shown only by `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __reduce__(self):  # pickling would carry the value out of the process
        raise TypeError("a Secret cannot be pickled")


def register(value: str) -> None:
    """Remember a secret value so that `redact()` removes it from any text."""
    # Very short values would make redaction mangle ordinary text; they are also
    # not meaningful secrets, and config validation rejects them where it matters.
    if value and len(value) >= 4:
        forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1], quote(value, safe="")}
        global _longest_first
        with _registry_lock:
            _registered.update(f for f in forms if len(f) >= 4)
            _longest_first = tuple(sorted(_registered, key=len, reverse=True))


def redact(text: str) -> str:
    """Replace every registered secret value in `text` by the mask."""
    if not _registered:
        return text
    if len(_longest_first) != len(_registered):  # changed behind register()'s back (a test)
        _resort()
    for value in _longest_first:
        if value in text:
            text = text.replace(value, MASK)
    return text


def appears_in(text: str) -> bool:
    """Whether any registered secret is in `text`: a few substring checks, so a caller can
    keep the value-by-value redaction for the rare text that needs it."""
    return any(value in text for value in _registered)


def _resort() -> None:
    global _longest_first
    with _registry_lock:
        _longest_first = tuple(sorted(_registered, key=len, reverse=True))


def redact_values(value):
    """`value` with every string in it (keys too) redacted; numbers, booleans and None as
    they are. For a structure about to be serialised."""
    if not _registered:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_values(k): redact_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_values(v) for v in value]
    return value
