"""A place in the Asterisk dialplan: where a caller is sent (ARI `continue`) or dialled
(originate). Its own module because the configuration (FALLBACK_DESTINATION) and the agents
file (callbridge/agents.py) both make them, and the agents module imports the configuration."""

from __future__ import annotations

from dataclasses import dataclass

PRIORITY_MAX = 100000


@dataclass(frozen=True)
class DialplanTarget:
    """A place in the Asterisk dialplan (ARI `continue` and originate take these three)."""

    context: str
    extension: str
    priority: int = 1

    def __str__(self) -> str:
        return f"{self.extension}@{self.context}:{self.priority}"


def name_problem(what: str, value: object) -> str | None:
    """Why `value` cannot be a context or an extension (None: it can). Asterisk takes
    nearly any text, but a comma, a space or a control character is always a mistake here:
    they would split or break the ARI query and the dialplan application's arguments."""
    if not isinstance(value, str):
        return f"{what} must be text (got {type(value).__name__})"
    if not value:
        return f"{what} is empty"
    if len(value) > 80 or any(ch in value for ch in ", \t\r\n") or not value.isprintable():
        return f"{what} must be a dialplan name without spaces or commas (got {value[:40]!r})"
    return None


def parse_target(text: str) -> DialplanTarget | None:
    """`context,extension[,priority]` (FALLBACK_DESTINATION); "" is None. Raises
    ValueError(problem)."""
    value = text.strip()
    if not value:
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError(f"must be CONTEXT,EXTENSION[,PRIORITY] (got {value[:60]!r})")
    for what, part in (("the context", parts[0]), ("the extension", parts[1])):
        problem = name_problem(what, part)
        if problem:
            raise ValueError(problem)
    priority = 1
    if len(parts) == 3:
        try:
            priority = int(parts[2])
        except ValueError:
            raise ValueError(f"the priority must be a whole number (got {parts[2][:20]!r})") from None
        if not 1 <= priority <= PRIORITY_MAX:
            raise ValueError(f"the priority must be between 1 and {PRIORITY_MAX} (got {priority})")
    return DialplanTarget(parts[0], parts[1], priority)
