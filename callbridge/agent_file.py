"""Reading AGENTS_FILE (TOML, the standard library's tomllib) into an `AgentBook`.

Every problem is found in one pass and reported at once, each naming the file and the
line (a syntax error) or the dotted key (`agents.clinic.transfer.reception.extension: must
be ...`), so one run of `callbridge check` shows all there is to fix. The keys are those
of docs/agents.md; an unknown key is an error (a typo must not silently mean "not set"),
with the nearest known key as a hint.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path

from callbridge import voice_tuning as tuning
from callbridge.agent_file_reader import NAME, TARGET_KEYS, Reader, dotted, type_name
from callbridge.agent_hours import HoursProblems, parse_hours
from callbridge.agent_keypad import read_keypad
from callbridge.agent_numbers import DEFAULT, kind_of
from callbridge.agents import Agent, AgentBook, Destination, ToolLimits, Turns
from callbridge.call_webhooks import read_agent_webhooks
from callbridge.config import ConfigError, Settings, api_problem
from callbridge.dialplan import DialplanTarget
from callbridge.http_tools import read_tools
from callbridge.mcp_servers import read_servers
from callbridge.summary_spec import read_summary

LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")
TOP_KEYS = ("agents", "fallback")
AGENT_KEYS = (
    "numbers",
    "instructions",
    "instructions_file",
    "voice",
    "greeting",
    "language",
    "notice",
    "hours",
    "outside_hours",
    "transfer",
    "fallback",
    "max_call_seconds",
    "idle_timeout_seconds",
    "daily_budget",
    "limits",
    "tools",
    "mcp",
    "dtmf",
    "turns",
    "noise_reduction",
    "reasoning_effort",
    "speed",
    "transcription_prompt",
    "transcription_keywords",
    "webhooks",
    "api",
    "model",
    "record",
    "summary",
)
TURN_KEYS = ("detection", "eagerness", "threshold", "silence_ms", "prefix_ms")
SERVER_VAD_KEYS = ("threshold", "silence_ms", "prefix_ms")
LIMIT_KEYS = ("transfer_attempts", "tool_errors", "tool_calls")
LIMIT_MAX = 1000
TRANSFER_KEYS = (*TARGET_KEYS, "description", "timeout", "mode")
TRANSFER_MODES = ("attended", "blind")
TIMEOUT_MAX = 600.0


class AgentFileError(ConfigError):
    """Every problem of one agents file; `str()` is one line per problem, each starting
    with the file. A ConfigError (variable AGENTS_FILE), so the CLI reports it like the
    others and exits with EX_CONFIG."""

    def __init__(self, problems: list[str]) -> None:
        Exception.__init__(self, "\n".join(problems))
        self.variable, self.problem = "AGENTS_FILE", problems[0]
        self.problems = list(problems)

    @property
    def errors(self) -> list[ConfigError]:
        return [ConfigError("AGENTS_FILE", problem) for problem in self.problems]


def load_agents_file(
    path: str | Path, env_fallback: DialplanTarget | None = None, settings: Settings | None = None
) -> AgentBook:
    """The book of the agents file at `path`; raises AgentFileError naming every problem.
    With the environment's `settings`, each agent's voice tuning is checked against the
    model too (`tuning_problems`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AgentFileError([f"{path}: cannot read it ({exc.strerror or exc})"]) from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise AgentFileError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise AgentFileError([f"{path}:{_syntax(exc, text)}"]) from None
    except RecursionError:
        raise AgentFileError([f"{path}: nested too deeply to read (TOML syntax)"]) from None
    book = read_agents(data, path, env_fallback)
    problems = (
        [
            *tuning_problems(book, settings),
            *webhook_problems(book, settings),
            *summary_problems(book, settings),
        ]
        if settings is not None
        else []
    )
    if problems:
        raise AgentFileError(problems)
    return book


# tomllib's messages in the words of someone editing the file (line numbers as tomllib's).
_PLAIN = (
    (r"Illegal character '\\n'", 'the string on this line is never closed: a closing " is missing'),
    (
        r"Unterminated string|Expected \"'\"|Expected '\"'",
        "a string is never closed: a closing quote is missing",
    ),
    (
        r"Invalid value",
        'a value must be a number, true or false, a [list], or text in quotes: voice = "marin"',
    ),
    (r"Cannot declare \((.*)\) twice", "the table {0} appears twice"),
    (r"Cannot overwrite a value", "a key is set twice"),
    (r"Expected '=' after a key", "a line must be: key = value"),
    (r"Unclosed array", "a [ list is never closed: a ] is missing"),
    (r"Unclosed inline table", "a { table } is never closed: a } is missing"),
    (r"Invalid initial character for a key part", "a key is missing here (a comma before a closing } or ]?)"),
    (
        r"Expected newline or end of document",
        "something follows the value on the same line (one key = value a line)",
    ),
    (r"Expected ']' at the end of a table declaration", "a [table] header is never closed: a ] is missing"),
)


def _plain(message: str) -> str:
    for pattern, words in _PLAIN:
        found = re.match(pattern, message)
        if found:
            table = "[" + ".".join(re.findall(r"'([^']*)'", found.group(1))) + "]" if found.groups() else ""
            return words.replace("{0}", table)
    return message


def _unclosed_from(text: str) -> int | None:
    """The line a string that is never closed starts on (for an error at the end of the file)."""
    opened = None
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        for quote in ('"""', "'''"):
            if line.count(quote) % 2:
                opened = None if opened else number
    if opened:
        return opened
    for number, line in enumerate(lines, 1):  # a one-line string: an odd number of its quotes
        plain = line.replace('\\"', "")
        if plain.count('"') % 2 or plain.count("'") % 2:
            return number
    return None


def _syntax(exc: tomllib.TOMLDecodeError, text: str = "") -> str:
    """`LINE: what is wrong, in plain words (TOML syntax)`. 3.13 gives lineno and msg; 3.11
    and 3.12 only put "(at line L, column C)" at the end of the message."""
    line, message = getattr(exc, "lineno", None), getattr(exc, "msg", None)
    whole = str(exc)
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", whole)
    if line is None and found:
        line = int(found.group(1))
    if message is None:
        message = whole[: found.start()] if found else whole
    if found is None and re.search(r"\(at end of document\)\s*$", whole):
        message = re.sub(r"\s*\(at end of document\)\s*$", "", message)
        start = _unclosed_from(text) if re.match(r"Unterminated string|Expected", message) else None
        if start:
            return f"{start}: the string that starts on line {start} is never closed (TOML syntax)"
        return f" at the end: {_plain(message)} (TOML syntax)"
    return f"{line}: {_plain(message)} (TOML syntax)" if line else f" {_plain(message)} (TOML syntax)"


def read_agents(data: dict, path: Path, env_fallback: DialplanTarget | None = None) -> AgentBook:
    """The book of an already parsed agents file (`path` names it in the problems)."""
    r = Reader(path)
    r.unknown((), data, TOP_KEYS)
    fallback = env_fallback
    if "fallback" in data:
        fallback = r.target(("fallback",), data["fallback"])
    tables = data.get("agents")
    if not isinstance(tables, dict) or not tables:
        r.problem("agents", "no agent: add at least one [agents.NAME] table (docs/agents.md)")
        raise AgentFileError(r.problems)
    agents: dict[str, Agent] = {}
    for name, table in tables.items():
        if not NAME.fullmatch(name):
            r.problem(dotted("agents", name), "an agent's name is letters, digits, _ and - (at most 64)")
            continue
        if not isinstance(table, dict):
            r.problem(dotted("agents", name), f"must be a table [agents.{name}] (got {type_name(table)})")
            continue
        agents[name] = _agent(r, name, table, path.parent)
    _between_agents(r, tables, agents)
    if r.problems:
        raise AgentFileError(r.problems)
    return AgentBook(agents, fallback, source=str(path))


def _agent(r: Reader, name: str, table: dict, base: Path) -> Agent:
    where = ("agents", name)
    r.unknown(where, table, AGENT_KEYS)
    numbers = table.get("numbers", [])
    if isinstance(numbers, str):
        numbers = [numbers]
    if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
        r.problem(dotted(*where, "numbers"), 'must be a list of numbers: ["100", "_9XXX", "*"]')
        numbers = []
    for number in numbers:
        try:
            kind_of(number)
        except ValueError as exc:
            r.problem(dotted(*where, "numbers"), str(exc))
    instructions = r.text(where, table, "instructions")
    if "instructions_file" in table:
        file_name = r.text(where, table, "instructions_file", required=True)
        if instructions:
            r.problem(dotted(*where, "instructions_file"), "give instructions or instructions_file, not both")
        elif file_name:
            file = Path(file_name) if Path(file_name).is_absolute() else base / file_name
            try:
                instructions = file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                r.problem(dotted(*where, "instructions_file"), f"cannot read {str(file)!r} ({reason})")
    language = r.text(where, table, "language")
    if language and not LANGUAGE.fullmatch(language):
        r.problem(
            dotted(*where, "language"),
            f'must be a language code like "es" or "pt-BR" (got {language[:20]!r})',
        )
    hours = None
    if "hours" in table:
        try:
            hours = parse_hours(table["hours"])
        except HoursProblems as exc:
            for key, problem in exc.problems:
                r.problem(dotted(*where, "hours", *([key] if key else [])), problem)
    transfers: dict[str, Destination] = {}
    destinations = table.get("transfer", {})
    if not isinstance(destinations, dict):
        r.problem(dotted(*where, "transfer"), "must hold tables [agents.NAME.transfer.DESTINATION]")
        destinations = {}
    for dest_name, dest in destinations.items():
        destination = _destination(r, (*where, "transfer", dest_name), dest_name, dest)
        if destination is not None:
            transfers[dest_name] = destination
    fallback = r.target((*where, "fallback"), table["fallback"]) if "fallback" in table else None
    http_tools = read_tools(r, (*where, "tools"), table.get("tools", {}))
    agent = Agent(
        name=name,
        numbers=tuple(numbers),
        instructions=instructions,
        voice=r.text(where, table, "voice"),
        greeting=r.text(where, table, "greeting"),
        language=language,
        notice=r.text(where, table, "notice"),
        transfers=transfers,
        fallback=fallback,
        max_call_seconds=r.number(where, table, "max_call_seconds", 0, 86400, whole=True),
        idle_timeout_seconds=r.number(where, table, "idle_timeout_seconds", 0, 3600, whole=True),
        daily_budget=r.number(where, table, "daily_budget", 0.0, 1e9),
        hours=hours,
        outside_hours=r.text(where, table, "outside_hours"),
        limits=_limits(r, (*where, "limits"), table.get("limits", {})),
        http_tools=http_tools,
        mcp=read_servers(r, (*where, "mcp"), table.get("mcp", {}), set(http_tools)),
        keypad=read_keypad(r, (*where, "dtmf"), table.get("dtmf", {}), transfers),
        webhooks=read_agent_webhooks(r, where, table.get("webhooks")),
        turns=_turns(r, (*where, "turns"), table.get("turns", {})),
        noise_reduction=r.choice(where, table, "noise_reduction", tuning.NOISE_REDUCTIONS),
        reasoning_effort=r.choice(where, table, "reasoning_effort", tuning.EFFORTS),
        speed=r.number(where, table, "speed", tuning.SPEED_MIN, tuning.SPEED_MAX),
        transcription_prompt=r.parsed(where, table, "transcription_prompt", tuning.prompt),
        transcription_keywords=_keywords(r, where, table),
        api=r.choice(where, table, "api", ("realtime", "live")) or "",
        model=r.text(where, table, "model").strip(),
        record=r.flag(where, table, "record"),
        summary=read_summary(r, (*where, "summary"), table.get("summary")),
    )
    return agent  # with its problems noted: the checks between agents still see it


def _turns(r: Reader, where: tuple[str, ...], table: object) -> Turns:
    if not isinstance(table, dict):
        r.problem(dotted(*where), "must be a table: [agents.NAME.turns] with " + ", ".join(TURN_KEYS))
        return Turns()
    r.unknown(where, table, TURN_KEYS)
    return Turns(
        detection=r.choice(where, table, "detection", tuning.DETECTIONS),
        eagerness=r.choice(where, table, "eagerness", tuning.EAGERNESS),
        threshold=r.number(where, table, "threshold", 0.0, 1.0),
        silence_ms=r.number(where, table, "silence_ms", 100, 5000, whole=True),
        prefix_ms=r.number(where, table, "prefix_ms", 0, 2000, whole=True),
    )


def _keywords(r: Reader, where: tuple[str, ...], table: dict) -> tuple[str, ...] | None:
    value = table.get("transcription_keywords")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(word, str) for word in value):
        r.problem(dotted(*where, "transcription_keywords"), 'must be a list of words: ["Movistar", "fibra"]')
        return None
    if any("," in word for word in value):
        r.problem(dotted(*where, "transcription_keywords"), "one word or name per entry (no commas)")
        return None
    try:
        return tuning.keywords(",".join(value))
    except ValueError as exc:
        r.problem(dotted(*where, "transcription_keywords"), str(exc))
        return None


def tuning_problems(book: AgentBook, settings: Settings) -> list[str]:
    """Each agent's voice tuning that its model or API shape lacks (callbridge/voice_tuning.py),
    as the agents file's problems: the tuning the agent sets is named there; one it takes
    from the environment is named by its variable."""
    found, from_env = [], set()
    for name, agent in book.agents.items():
        explicit = agent.tuning()
        applied = agent.apply(settings)
        if agent.api or agent.model:
            problem = api_problem(applied.openai_api, applied.openai_realtime_model, "api")
            if problem is not None:
                found.append(f"{book.source}: {dotted('agents', name, 'model')}: {problem}")
        if applied.openai_api == "live":  # GPT-Live has none of Realtime's tunings
            found += [
                f"{book.source}: {dotted('agents', name, *key.split('.'))}: GPT-Live has no such setting "
                "(the model itself owns turns and voice)"
                for key in explicit
            ]
            continue
        # Numbers of the other kind of detection than the agent ends up with (its own, or
        # OPENAI_TURN_DETECTION's) would be silently unused: say so.
        detection = agent.apply(settings).openai_turn_detection
        source = "" if "turns.detection" in explicit else ", from OPENAI_TURN_DETECTION"
        unused = ("turns.eagerness",) if detection == "server_vad" else ()
        if detection == "semantic_vad":
            unused = tuple(f"turns.{key}" for key in SERVER_VAD_KEYS)
        for key in unused:
            if key in explicit:
                wanted = "semantic_vad" if key == "turns.eagerness" else "server_vad"
                found.append(
                    f"{book.source}: {dotted('agents', name, *key.split('.'))}: is for {wanted} "
                    f"(this agent's detection is {detection}{source})"
                )
        for key, problem in tuning.problems(agent.apply(settings)):
            if key in explicit:
                found.append(f"{book.source}: {dotted('agents', name, *key.split('.'))}: {problem}")
            elif key not in from_env:  # once, not once per agent that inherits it
                from_env.add(key)
                found.append(f"{book.source}: {tuning.ENV_NAMES[key]} (agent {name} uses it): {problem}")
    return found


def webhook_problems(book: AgentBook, settings: Settings) -> list[str]:
    """Agents' webhooks with nothing to sign them: every delivery is signed."""
    if settings.call_webhook_secret:
        return []
    return [
        f"{book.source}: {dotted('agents', name, 'webhooks')}: needs CALL_WEBHOOK_SECRET, which signs every delivery"
        for name, agent in book.agents.items()
        if agent.webhooks
    ]


def summary_problems(book: AgentBook, settings: Settings) -> list[str]:
    """Agents that mail their summaries with no server to send them through."""
    if settings.alert_smtp_url:
        return []
    return [
        f"{book.source}: {dotted('agents', name, 'summary', 'email')}: needs ALERT_SMTP_URL, the server it is sent through"
        for name, agent in book.agents.items()
        if agent.summary is not None and agent.summary.email
    ]


def _limits(r: Reader, where: tuple[str, ...], table: object) -> ToolLimits:
    if not isinstance(table, dict):
        r.problem(dotted(*where), "must be a table: [agents.NAME.limits] with " + ", ".join(LIMIT_KEYS))
        return ToolLimits()
    r.unknown(where, table, LIMIT_KEYS)
    default = ToolLimits()
    return ToolLimits(
        **{
            key: r.number(where, table, key, 0, LIMIT_MAX, whole=True, default=getattr(default, key))
            for key in LIMIT_KEYS
        }
    )


def _destination(r: Reader, where: tuple[str, ...], name: str, table: object) -> Destination | None:
    if not NAME.fullmatch(name):
        r.problem(dotted(*where), "a destination's name is letters, digits, _ and - (at most 64)")
        return None
    before = len(r.problems)
    target = r.target(where, table, TRANSFER_KEYS)
    if not isinstance(table, dict):
        return None
    mode = r.text(where, table, "mode") or "attended"
    if mode not in TRANSFER_MODES:
        r.problem(dotted(*where, "mode"), f"must be attended or blind (got {mode[:20]!r})")
    timeout = r.number(where, table, "timeout", 1, TIMEOUT_MAX, default=30.0)
    description = r.text(where, table, "description")
    if target is None or len(r.problems) != before:
        return None
    return Destination(name, target, description, float(timeout), blind=mode == "blind")


def _between_agents(r: Reader, tables: dict, agents: dict[str, Agent]) -> None:
    """What lies between agents: a number claimed twice, outside_hours naming nobody (or
    going round in a loop), an agent nobody can reach."""
    claimed: dict[str, str] = {}
    for name, agent in agents.items():
        for number in dict.fromkeys(agent.numbers):
            other = claimed.setdefault(number, name)
            if other != name:
                what = "the default" if number == DEFAULT else number
                r.problem(
                    dotted("agents", name, "numbers"), f"{what} is claimed by agents {other} and {name}"
                )
    reached = set()
    for name, agent in agents.items():
        if not agent.outside_hours:
            continue
        target = agent.outside_hours
        where = dotted("agents", name, "outside_hours")
        if target not in tables:
            near = difflib.get_close_matches(target, list(tables), n=1)
            r.problem(where, f"no agent {target!r}" + (f" (did you mean {near[0]}?)" if near else ""))
        elif target == name:
            r.problem(where, "names the agent itself")
        elif agent.hours is None:
            r.problem(where, "the agent has no hours, so it is never outside them")
        reached.add(target)
    for name in agents:  # a chain that comes back to where it started
        chain, step = [name], agents[name].outside_hours
        while step in agents and step not in chain:
            chain.append(step)
            step = agents[step].outside_hours
        if step == name and len(chain) > 1 and name == min(chain):  # once per loop
            r.problem(
                dotted("agents", name, "outside_hours"),
                f"goes round in a loop: {' -> '.join(chain + [name])}",
            )
    for name, agent in agents.items():
        if not agent.numbers and name not in reached:
            r.problem(
                dotted("agents", name, "numbers"),
                "the agent answers no number: give numbers, or name it in another agent's outside_hours",
            )


def problems_of(checked) -> list[str]:
    """The agents file's problems for a configuration check (callbridge/config.py::Checked),
    so that `config` and `check` show them with the environment's in one pass; none when
    AGENTS_FILE is unset or is itself the problem."""
    by_name = {entry.var.name: entry for entry in checked.entries}
    path, fallback = by_name["AGENTS_FILE"], by_name["FALLBACK_DESTINATION"]
    if path.problem is not None or not path.value:
        return []
    settings = _settings_of(checked)
    try:
        load_agents_file(path.value, fallback.value if fallback.problem is None else None, settings)
    except AgentFileError as exc:
        return list(exc.problems)
    return []


def _settings_of(checked) -> Settings | None:
    """The environment's settings, when they are good: agents are checked against its model."""
    from callbridge.config import ConfigErrors, loaded_from

    try:
        return loaded_from(checked).settings
    except ConfigErrors:
        return None
