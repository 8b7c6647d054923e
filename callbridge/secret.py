"""Secrets that cannot leak by accident.

A `Secret` prints as a mask in every repr, str, format and f-string, so a settings
object can be logged, shown by `callbridge config` or put in an exception without
exposing the ARI password or the OpenAI key. Code that really needs the value calls
`reveal()`, which makes every such place easy to find.

`redact()` is the second line of defence: the log formatters run every finished line
(tracebacks included) through it, replacing any registered secret value.
"""

from __future__ import annotations

import threading

MASK = "********"

_registry_lock = threading.Lock()
_registered: set[str] = set()


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
        with _registry_lock:
            _registered.add(value)


def redact(text: str) -> str:
    """Replace every registered secret value in `text` by the mask."""
    if not _registered:
        return text
    for value in _registered:
        if value in text:
            text = text.replace(value, MASK)
    return text
