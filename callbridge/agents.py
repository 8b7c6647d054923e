"""Agents: who answers which number, how, and where a caller may be handed on.

An agent is the voice, instructions and rules for the numbers it answers (AGENTS_FILE,
docs/agents.md). Without the file, today's environment settings make the one default
agent (`default_book`), so nothing changes for existing set-ups.

The supervisor holds one `AgentBook`, picks an agent at admission (`AgentBook.pick`) and
hands it to the worker with the call (the worker is forked: it gets the object itself, no
message). The worker uses `Agent.apply(settings)` for the session and `Agent.transfers`
for its tools. Everything here is pure and immutable: a reload builds a new book, and live
calls keep the agent they started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from callbridge.config import Settings


@dataclass(frozen=True)
class DialplanTarget:
    """A place in the Asterisk dialplan (ARI `continue` and originate take these three)."""

    context: str
    extension: str
    priority: int = 1

    def __str__(self) -> str:
        return f"{self.extension}@{self.context}:{self.priority}"


@dataclass(frozen=True)
class Destination:
    """A named transfer destination of an agent (`[agents.NAME.transfer.DEST]`)."""

    name: str
    target: DialplanTarget
    description: str = ""  # what the model is told it is ("the front desk")
    timeout: float = 30.0  # seconds of ringing before it counts as not answered
    blind: bool = False  # ARI continue: cannot report failure (docs/agents.md)


@dataclass(frozen=True)
class Agent:
    name: str
    numbers: tuple[str, ...] = ("*",)
    instructions: str = ""
    voice: str = ""  # "" = OPENAI_VOICE
    greeting: str = ""  # "" = OPENAI_GREETING
    language: str = ""  # e.g. "es"; "" = as the instructions say
    notice: str = ""  # said first, word for word (an AI answers; the call is recorded)
    transfers: dict[str, Destination] = field(default_factory=dict)
    fallback: DialplanTarget | None = None  # where a caller goes when we cannot serve
    max_call_seconds: int | None = None  # None = MAX_CALL_SECONDS
    idle_timeout_seconds: int | None = None  # None = IDLE_TIMEOUT_SECONDS
    daily_budget: float | None = None  # estimated cost per day (RECORDS_CURRENCY)

    def apply(self, settings: Settings) -> Settings:
        """The settings a call of this agent runs with."""
        changes: dict = {}
        if self.instructions:
            changes.update(openai_instructions=self.instructions, openai_instructions_file="")
        if self.voice:
            changes["openai_voice"] = self.voice
        if self.greeting:
            changes["openai_greeting"] = self.greeting
        if self.max_call_seconds is not None:
            changes["max_call_seconds"] = self.max_call_seconds
        if self.idle_timeout_seconds is not None:
            changes["idle_timeout_seconds"] = self.idle_timeout_seconds
        return replace(settings, **changes) if changes else settings


def default_agent(settings: Settings) -> Agent:
    """The agent the environment describes (no AGENTS_FILE)."""
    return Agent(name="default")
