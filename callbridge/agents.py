"""Agents: who answers which number, how, and where a caller may be handed on.

An agent is the voice, instructions and rules for the numbers it answers (AGENTS_FILE,
docs/agents.md; read by callbridge/agent_file.py). Without the file, today's environment
settings make the one default agent (`default_book`), so nothing changes for existing
set-ups.

The supervisor holds one `AgentBook`, picks an agent at admission (`AgentBook.pick`, or
`AgentBook.choose` for the reason too) and hands it to the worker with the call (the worker
is forked: it gets the object itself, no message). The worker uses `Agent.apply(settings)`
for the session and `Agent.transfers` for its tools. Everything here is pure and
immutable: a reload builds a new book, and live calls keep the agent they started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from callbridge.agent_hours import Hours
from callbridge.agent_keypad import KeyPlan
from callbridge.agent_numbers import NumberPlan
from callbridge.call_webhooks import Target
from callbridge.config import Settings, resolve_api
from callbridge.dialplan import DialplanTarget
from callbridge.http_tools import HttpTool
from callbridge.mcp_servers import McpServer
from callbridge.summary_spec import SummarySpec

__all__ = [
    "Agent",
    "AgentBook",
    "Choice",
    "Destination",
    "DialplanTarget",
    "ToolLimits",
    "Turns",
    "default_agent",
    "default_book",
]

# The notice is said word for word before the greeting: the model is told so in the
# greeting's own instructions (the response.create the worker already sends).
NOTICE_FIRST = 'Begin by saying exactly these words, word for word, with nothing before them: "{notice}"'
NOTICE_THEN = " Then: {greeting}"
NOTICE_ONLY = " Then stop and let the caller speak."


@dataclass(frozen=True)
class Destination:
    """A named transfer destination of an agent (`[agents.NAME.transfer.DEST]`)."""

    name: str
    target: DialplanTarget
    description: str = ""  # what the model is told it is ("the front desk")
    timeout: float = 30.0  # seconds of ringing before it counts as not answered
    blind: bool = False  # ARI continue: cannot report failure (docs/agents.md)


@dataclass(frozen=True)
class ToolLimits:
    """How far the model's tool calls may go in one call (`[agents.NAME.limits]`). A caller
    can talk a model into calling a tool again and again: every error answered asks for a
    new reply (tokens), every transfer attempt rings a line. Past a limit the model is told
    once that the tool is gone (call_worker/tools.py); end_call is never limited."""

    transfer_attempts: int = 3
    tool_errors: int = 10
    tool_calls: int = 30


@dataclass(frozen=True)
class Turns:
    """How the agent hears that the caller's turn is over (`[agents.NAME.turns]`); None:
    the environment's (OPENAI_TURN_DETECTION, OPENAI_VAD_*)."""

    detection: str | None = None  # server_vad | semantic_vad
    eagerness: str | None = None  # semantic_vad
    threshold: float | None = None  # server_vad, and the two below
    silence_ms: int | None = None
    prefix_ms: int | None = None


# An agent's tuning key (as the agents file names it) -> the Settings field it overrides:
# the one table `Agent.apply`, `callbridge agents` and the file's checks read.
TUNING_FIELDS = {
    "turns.detection": "openai_turn_detection",
    "turns.eagerness": "openai_vad_eagerness",
    "turns.threshold": "openai_vad_threshold",
    "turns.silence_ms": "openai_vad_silence_ms",
    "turns.prefix_ms": "openai_vad_prefix_ms",
    "noise_reduction": "openai_noise_reduction",
    "reasoning_effort": "openai_reasoning_effort",
    "speed": "openai_speed",
    "transcription_prompt": "openai_transcription_prompt",
    "transcription_keywords": "openai_transcription_keywords",
}


@dataclass(frozen=True)
class Agent:
    name: str
    numbers: tuple[str, ...] = ("*",)
    instructions: str = ""  # the text itself (an instructions_file is read at load)
    voice: str = ""  # "" = OPENAI_VOICE
    greeting: str = ""  # "" = OPENAI_GREETING
    language: str = ""  # e.g. "es"; "" = OPENAI_LANGUAGE
    notice: str = ""  # said first, word for word (an AI answers; the call is recorded)
    transfers: dict[str, Destination] = field(default_factory=dict)
    fallback: DialplanTarget | None = None  # where a caller goes when we cannot serve
    max_call_seconds: int | None = None  # None = MAX_CALL_SECONDS
    idle_timeout_seconds: int | None = None  # None = IDLE_TIMEOUT_SECONDS
    daily_budget: float | None = None  # estimated cost per day (RECORDS_CURRENCY)
    hours: Hours | None = None  # None: always open
    outside_hours: str = ""  # the agent that answers while this one is closed; "": the fallback
    limits: ToolLimits = field(default_factory=ToolLimits)
    # The voice's tuning (callbridge/voice_tuning.py); None: the environment's.
    turns: Turns = field(default_factory=Turns)
    noise_reduction: str | None = None
    reasoning_effort: str | None = None
    speed: float | None = None
    transcription_prompt: str | None = None
    transcription_keywords: tuple[str, ...] | None = None
    # The business's systems the model may call (callbridge/http_tools.py), by tool name.
    http_tools: dict[str, HttpTool] = field(default_factory=dict)
    # MCP servers whose listed tools the model may call (callbridge/mcp_servers.py), by name.
    mcp: dict[str, McpServer] = field(default_factory=dict)
    keypad: KeyPlan = field(default_factory=KeyPlan)  # what the caller's key presses do
    webhooks: tuple[Target, ...] = ()  # where this agent's calls are told of, besides CALL_WEBHOOKS
    api: str = ""  # "realtime" | "live"; "": by its model's name, else the environment's
    model: str = ""  # "" = OPENAI_REALTIME_MODEL (or, under another api, that api's default)
    record: bool | None = None  # record its calls; None = RECORD_CALLS
    summary: SummarySpec | None = None  # its post-call summaries (callbridge/summary_spec.py)

    def apply(self, settings: Settings) -> Settings:
        """The settings a call of this agent runs with."""
        changes: dict = {}
        if self.instructions:
            changes.update(openai_instructions=self.instructions, openai_instructions_file="")
        if self.voice:
            changes["openai_voice"] = self.voice
        if self.language:
            changes["openai_language"] = self.language
        greeting = self.greeting or settings.openai_greeting
        if self.notice:
            first = NOTICE_FIRST.format(notice=self.notice)
            greeting = first + (NOTICE_THEN.format(greeting=greeting) if greeting else NOTICE_ONLY)
        if greeting != settings.openai_greeting:
            changes["openai_greeting"] = greeting
        if self.max_call_seconds is not None:
            changes["max_call_seconds"] = self.max_call_seconds
        if self.idle_timeout_seconds is not None:
            changes["idle_timeout_seconds"] = self.idle_timeout_seconds
        changes.update({TUNING_FIELDS[key]: value for key, value in self.tuning().items()})
        if self.record is not None:
            changes["record_calls"] = self.record
        if self.api or self.model:
            api, model = resolve_api(
                self.api or ("" if self.model else settings.openai_api),
                self.model or settings.openai_realtime_model,
                model_chosen=bool(self.model),
            )
            changes.update(openai_api=api, openai_realtime_model=model)
        return replace(settings, **changes) if changes else settings

    def tuning(self) -> dict:
        """The voice's tuning this agent sets itself (TUNING_FIELDS' keys); the rest is the
        environment's."""
        values = {
            key: getattr(self.turns, key.removeprefix("turns."))
            if key.startswith("turns.")
            else getattr(self, key)
            for key in TUNING_FIELDS
        }
        return {key: value for key, value in values.items() if value is not None}


def default_agent(settings: Settings) -> Agent:
    """The agent the environment describes (no AGENTS_FILE): every setting its own."""
    return Agent(name="default")


@dataclass(frozen=True)
class Choice:
    """What `AgentBook.choose` found for a number: the agent (None: none can take the
    call), how (for logs and `callbridge agents`), and where the caller goes when the
    call cannot be served (the agent's fallback, else the book's; None: the busy prompt)."""

    agent: Agent | None
    how: str
    fallback: DialplanTarget | None


class AgentBook:
    """Every agent of one agents file (or the environment's one), and the numbers plan."""

    def __init__(
        self, agents: dict[str, Agent], fallback: DialplanTarget | None = None, source: str = ""
    ) -> None:
        self.agents = dict(agents)
        self.fallback = fallback  # the file's [fallback], else FALLBACK_DESTINATION
        self.source = source  # the agents file, "" for the environment's default agent
        self.plan = NumberPlan([(n, a.name) for a in self.agents.values() for n in a.numbers])

    def pick(self, dialled: str, now: datetime) -> Agent | None:
        """The agent that answers `dialled` at `now` (aware), or None: the fallback."""
        return self.choose(dialled, now).agent

    def choose(self, dialled: str, now: datetime) -> Choice:
        name, how = self.plan.lookup(dialled)
        if name is None:
            return Choice(None, how, self.fallback)
        first = agent = self.agents[name]
        closed: list[str] = []
        # outside_hours chains are checked for loops at load; `closed` stops one anyway.
        while agent.hours is not None and not agent.hours.is_open(now) and agent.name not in closed:
            closed.append(agent.name)
            if not agent.outside_hours:
                chain = " -> ".join(closed)
                return Choice(
                    None, f"{how}, outside hours ({chain}), no agent", first.fallback or self.fallback
                )
            agent = self.agents[agent.outside_hours]
        if closed:
            how += f", outside hours of {' -> '.join(closed)} -> {agent.name}"
        return Choice(agent, how, agent.fallback or self.fallback)

    def fallback_of(self, agent: Agent | None) -> DialplanTarget | None:
        return (agent.fallback if agent is not None else None) or self.fallback

    def changes_from(self, old: AgentBook) -> str:
        """One line saying what a reload changed: agents added, removed, changed."""
        added = sorted(set(self.agents) - set(old.agents))
        removed = sorted(set(old.agents) - set(self.agents))
        changed = sorted(n for n in set(self.agents) & set(old.agents) if self.agents[n] != old.agents[n])
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (("added", added), ("removed", removed), ("changed", changed))
            if names
        ]
        if self.fallback != old.fallback:
            parts.append(f"fallback {self.fallback or 'none'}")
        return "; ".join(parts) or "nothing changed"


def default_book(settings: Settings) -> AgentBook:
    """The book without AGENTS_FILE: the environment's agent for every number."""
    agent = default_agent(settings)
    return AgentBook({agent.name: agent}, settings.fallback_destination)


def load_book(settings: Settings) -> AgentBook:
    """AGENTS_FILE's book, else the default one; raises callbridge/agent_file.py's
    AgentFileError (a ConfigError) naming every problem."""
    if not settings.agents_file:
        return default_book(settings)
    from callbridge.agent_file import load_agents_file

    return load_agents_file(settings.agents_file, settings.fallback_destination, settings)
