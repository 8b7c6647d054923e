"""The agents file (callbridge/agent_file.py), numbers and patterns (agent_numbers.py), hours
(agent_hours.py), choosing the agent (agents.py `AgentBook.choose`), what an agent changes
in the call's settings, daily budgets (supervisor/budgets.py) and the CLI's `agents` and
`check`. Pure: no service, no network."""

from __future__ import annotations

import textwrap
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from call_worker import realtime_protocol as proto
from callbridge import config as cfg
from callbridge.agent_file import AgentFileError, load_agents_file
from callbridge.agent_numbers import NumberPlan, compile_pattern
from callbridge.agents import Agent, default_book, load_book
from callbridge.cli import app
from callbridge.dialplan import DialplanTarget, parse_target
from supervisor.budgets import Budgets, day_bounds
from supervisor.turn_away import fallback_mark, marked_fallback

REPO = Path(__file__).resolve().parents[1]
BASE = {"ASTERISK_USERNAME": "asterisk", "ASTERISK_PASSWORD": "secret-pass", "OPENAI_API_KEY": "sk-test"}
MADRID = "Europe/Madrid"


def settings(**extra: str) -> cfg.Settings:
    return cfg.load(env_file=None, environ={**BASE, **extra}).settings


def agents_file(tmp_path: Path, text: str, name: str = "agents.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = agents_file(tmp_path, text)
    with pytest.raises(AgentFileError) as caught:
        load_agents_file(path)
    prefix = f"{path}: "
    assert all(p.startswith(f"{path}") for p in caught.value.problems)
    return [p.removeprefix(prefix) for p in caught.value.problems]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the example and the issue's shape


def test_the_documented_example_loads_and_answers_as_documented():
    book = load_agents_file(REPO / "docs" / "agents.example.toml")
    assert set(book.agents) == {"clinic", "night", "extensions"}
    clinic = book.agents["clinic"]
    assert clinic.transfers["reception"].target == DialplanTarget("from-internal", "200", 1)
    assert clinic.transfers["reception"].timeout == 25 and not clinic.transfers["reception"].blind
    assert clinic.fallback == DialplanTarget("from-internal", "*97100", 1)
    assert book.fallback == DialplanTarget("from-internal", "*98", 1)
    assert "front desk" in clinic.instructions and clinic.daily_budget == 25.0
    tuesday_morning = at("2026-03-24T09:30:00+01:00")
    tuesday_lunch = at("2026-03-24T15:00:00+01:00")
    assert book.pick("100", tuesday_morning).name == "clinic"
    assert book.pick("+34910000100", tuesday_lunch).name == "night"
    assert book.pick("9123", tuesday_lunch).name == "extensions"
    christmas = book.choose("100", at("2026-12-25T10:00:00+01:00"))
    assert christmas.agent.name == "night" and "outside hours of clinic -> night" in christmas.how
    nobody = book.choose("555", tuesday_morning)
    assert nobody.agent is None and nobody.fallback == book.fallback


def test_the_issues_shape_loads(tmp_path):
    path = agents_file(
        tmp_path,
        """
        [agents.default]
        numbers = ["*"]                      # "*" = every number no other agent claims
        instructions = "You answer for the clinic's front desk."
        [agents.default.transfer.reception]  # a destination named "reception"
        context = "from-internal"
        extension = "100"
        priority = 1
        """,
    )
    book = load_agents_file(path)
    assert book.pick("anything", datetime.now(UTC)).transfers["reception"].target == DialplanTarget(
        "from-internal", "100", 1
    )


# --- errors: all at once, by file and line or dotted key


def test_every_problem_is_named_by_its_dotted_key_at_once(tmp_path):
    found = problems(
        tmp_path,
        """
        [fallback]
        context = "from-internal"

        [agents.clinic]
        numbers = ["100", "_9[5-1]", "*"]
        voise = "marin"
        max_call_seconds = "long"
        language = "Spanish"
        hours = { timezone = "Mars/Base", mon-fri = "08:00-25:00", someday = "09:00-10:00" }
        outside_hours = "nigth"

        [agents.clinic.transfer.reception]
        context = "from internal"
        priority = 0
        mode = "warm"
        timeout = 0

        [agents.other]
        numbers = ["100", "*"]

        [agents.night]
        numbers = ["200"]
        """,
    )
    assert found == [
        "fallback.extension: is required",
        "agents.clinic.voise: unknown key (did you mean voice?)",
        "agents.clinic.numbers: '_9[5-1]': the range 5-1 is backwards",
        'agents.clinic.language: must be a language code like "es" or "pt-BR" (got \'Spanish\')',
        "agents.clinic.hours.timezone: must be a timezone name like Europe/Madrid or UTC (got 'Mars/Base')",
        "agents.clinic.hours.mon-fri: '08:00-25:00' is not a time of day",
        "agents.clinic.hours.someday: is not a day (mon ... sun), a span of days (mon-fri), timezone or closed",
        "agents.clinic.transfer.reception.context: must be a dialplan name without spaces or commas "
        "(got 'from internal')",
        "agents.clinic.transfer.reception.extension: is required",
        "agents.clinic.transfer.reception.priority: must be a whole number between 1 and 100000 (got 0)",
        "agents.clinic.transfer.reception.mode: must be attended or blind (got 'warm')",
        "agents.clinic.transfer.reception.timeout: must be a number between 1 and 600.0 (got 0)",
        "agents.clinic.max_call_seconds: must be a whole number (got text)",
        "agents.other.numbers: 100 is claimed by agents clinic and other",
        "agents.other.numbers: the default is claimed by agents clinic and other",
        "agents.clinic.outside_hours: no agent 'nigth' (did you mean night?)",
    ]


def test_outside_hours_must_name_another_agent_with_hours_and_never_loop(tmp_path):
    found = problems(
        tmp_path,
        """
        [agents.a]
        numbers = ["1"]
        hours = { timezone = "UTC", mon = "09:00-10:00" }
        outside_hours = "b"
        [agents.b]
        hours = { timezone = "UTC", tue = "09:00-10:00" }
        outside_hours = "c"
        [agents.c]
        hours = { timezone = "UTC", wed = "09:00-10:00" }
        outside_hours = "a"
        [agents.d]
        numbers = ["4"]
        outside_hours = "d"
        [agents.e]
        numbers = ["5"]
        outside_hours = "a"
        [agents.lonely]
        instructions = "Nobody reaches me."
        """,
    )
    assert found == [
        "agents.d.outside_hours: names the agent itself",
        "agents.e.outside_hours: the agent has no hours, so it is never outside them",
        "agents.a.outside_hours: goes round in a loop: a -> b -> c -> a",
        "agents.lonely.numbers: the agent answers no number: give numbers, or name it in another "
        "agent's outside_hours",
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[agents.x]\nnumbers = ["1"\nvoice = "a"\n', 3),
        ('[agents.x]\nnumbers = ["1"]\nnumbers = ["2"]\n', 3),
        ("[agents.x]\nvoice = marin\n", 2),
    ],
)
def test_a_syntax_error_names_the_file_and_the_line(tmp_path, text, line):
    path = tmp_path / "agents.toml"
    path.write_text(text)
    with pytest.raises(AgentFileError) as caught:
        load_agents_file(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:{line}: ") and problem.endswith("(TOML syntax)")
    assert "(at line" not in problem


def test_syntax_errors_as_each_python_words_them(tmp_path):
    """3.11 and 3.12 put "(at line L, column C)" in the message; 3.13 adds lineno and msg."""
    from callbridge.agent_file import _syntax

    old = tomllib.TOMLDecodeError("Unclosed array (at line 7, column 1)")
    assert _syntax(old) == "7: a [ list is never closed: a ] is missing (TOML syntax)"
    new = tomllib.TOMLDecodeError("Unclosed array (at line 7, column 1)")
    new.lineno, new.msg = 7, "Unclosed array"
    assert _syntax(new) == "7: a [ list is never closed: a ] is missing (TOML syntax)"
    end = tomllib.TOMLDecodeError("Invalid value (at end of document)")
    assert _syntax(end).startswith(" at the end: a value must be a number")
    assert (
        _syntax(tomllib.TOMLDecodeError("Something new (at line 2, column 1)"))
        == "2: Something new (TOML syntax)"
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('a = 1\n\nb = 2\nvoice = """marin\n', "4: the string that starts on line 4 is never closed"),
        ("[agents.x]\nvoice = 'marin\n", "2: the string that starts on line 2 is never closed"),
        (
            '[agents.x]\nvoice = "marin\nb = 1\n',
            '2: the string on this line is never closed: a closing " is missing',
        ),
        (
            "[agents.x]\nvoice = marin\n",
            "2: a value must be a number, true or false, a [list], or text in quotes",
        ),
        ("[agents.a]\n[agents.a]\n", "2: the table [agents.a] appears twice"),
        ("[agents.a]\nvoice\n", "2: a line must be: key = value"),
    ],
)
def test_toml_syntax_errors_are_said_in_plain_words(tmp_path, text, words):
    path = tmp_path / "agents.toml"
    path.write_text(text)
    with pytest.raises(AgentFileError) as caught:
        load_agents_file(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}:{words}"), problem


def test_unreadable_files_and_an_empty_file_are_problems_too(tmp_path):
    with pytest.raises(AgentFileError, match="cannot read it"):
        load_agents_file(tmp_path / "missing.toml")
    assert problems(tmp_path, "") == [
        "agents: no agent: add at least one [agents.NAME] table (docs/agents.md)"
    ]
    assert (
        problems(tmp_path, '[agentz.x]\nnumbers = ["1"]\n')[0] == "agentz: unknown key (did you mean agents?)"
    )


def test_instructions_file_is_relative_to_the_agents_file_and_read_at_load(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "desk.txt").write_text("From the file.\n")
    path = agents_file(tmp_path, '[agents.a]\nnumbers = ["*"]\ninstructions_file = "prompts/desk.txt"\n')
    assert load_agents_file(path).agents["a"].instructions == "From the file."
    found = problems(tmp_path, '[agents.a]\nnumbers = ["*"]\ninstructions_file = "prompts/none.txt"\n')
    assert found == [
        f"agents.a.instructions_file: cannot read '{tmp_path / 'prompts' / 'none.txt'}' (No such file or directory)"
    ]


# --- numbers and patterns


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("_9XXX", ["9000", "9123"], ["912", "91234", "8123"]),
        ("_NXX", ["200", "999"], ["100", "099", "20"]),
        ("_ZX", ["10", "99"], ["01", "1"]),
        ("_1[2-46]X", ["120", "149", "169"], ["150", "110"]),
        ("_0.", ["01", "0123456"], ["0", "10"]),
        ("_0!", ["0", "0123"], ["1"]),
        ("_+34X.", ["+3491", "+34910000100"], ["34910", "+349"]),
        ("_*9X", ["*90"], ["990"]),
        ("_nxx", ["234"], ["134"]),
    ],
)
def test_asterisk_patterns_match_what_asterisk_matches(pattern, yes, no):
    compiled = compile_pattern(pattern)
    assert all(compiled.matches(n) for n in yes), pattern
    assert not any(compiled.matches(n) for n in no), pattern


@pytest.mark.parametrize("bad", ["_", "_9.X", "_1[", "_1[]", "_9 X", "_9[a-]x?"])
def test_patterns_asterisk_would_not_take_are_refused(bad):
    with pytest.raises(ValueError):
        compile_pattern(bad)


def test_exact_beats_patterns_the_most_specific_pattern_wins_and_the_default_comes_last():
    plan = NumberPlan(
        [
            ("_X.", "any"),
            ("_9XXX", "nines"),
            ("_91XX", "nine-one"),
            ("_9[0-5]XX", "low-nines"),
            ("9100", "exact"),
            ("_9!", "nine-bang"),
            ("_9", "nine-alone"),
            ("*", "default"),
        ]
    )
    assert plan.lookup("9100") == ("exact", "exact 9100")
    assert plan.lookup("9101") == ("nine-one", "pattern _91XX")  # 1 beats [0-5] beats X
    assert plan.lookup("9201") == ("low-nines", "pattern _9[0-5]XX")
    assert plan.lookup("9601") == ("nines", "pattern _9XXX")
    assert plan.lookup("96011") == ("nine-bang", "pattern _9!")  # ! is last but matches
    assert plan.lookup("9") == ("nine-alone", "pattern _9")  # the end sorts before !
    assert plan.lookup("123") == ("any", "pattern _X.")
    assert plan.lookup("s") == ("default", "default")
    assert NumberPlan([("100", "a")]).lookup("101") == (None, "no agent claims it")


# --- hours, across a DST change


def hours_book(tmp_path: Path) -> object:
    return load_agents_file(
        agents_file(
            tmp_path,
            f"""
            [agents.desk]
            numbers = ["100"]
            hours = {{ timezone = "{MADRID}", mon-fri = "08:00-14:00,16:00-19:00", sat = "09:00-13:00", closed = ["2026-04-03"] }}
            outside_hours = "evening"
            [agents.evening]
            hours = {{ timezone = "{MADRID}", mon-sat = "06:00-23:00" }}
            outside_hours = "night"
            [agents.night]
            instructions = "We are closed."
            """,
        )
    )


@pytest.mark.parametrize(
    ("utc", "agent"),
    [
        # Friday 27 March 2026: Madrid is UTC+1.
        ("2026-03-27T07:30:00", "desk"),  # 08:30 local
        ("2026-03-27T06:30:00", "evening"),  # 07:30 local: before opening
        ("2026-03-27T13:30:00", "evening"),  # 14:30: lunch
        ("2026-03-27T17:59:00", "desk"),  # 18:59
        ("2026-03-27T18:00:00", "evening"),  # 19:00: the end is not included
        ("2026-03-27T22:30:00", "night"),  # 23:30
        # Saturday 28 March, still UTC+1.
        ("2026-03-28T08:30:00", "desk"),  # 09:30
        ("2026-03-28T12:00:00", "evening"),  # 13:00
        # Sunday 29 March: clocks go 02:00 -> 03:00; the evening agent is closed all Sunday.
        ("2026-03-29T10:00:00", "night"),
        # Monday 30 March: Madrid is UTC+2, the same local hours are an hour earlier in UTC.
        ("2026-03-30T06:30:00", "desk"),  # 08:30 local (a week before, 07:30 UTC was)
        ("2026-03-30T05:30:00", "evening"),  # 07:30 local
        ("2026-03-30T16:59:00", "desk"),  # 18:59
        ("2026-03-30T17:00:00", "evening"),  # 19:00
        # Good Friday is closed, whatever the weekday says.
        ("2026-04-03T08:00:00", "evening"),
    ],
)
def test_hours_follow_local_time_across_a_dst_change(tmp_path, utc, agent):
    book = hours_book(tmp_path)
    assert book.pick("100", datetime.fromisoformat(utc).replace(tzinfo=UTC)).name == agent


def test_outside_hours_without_another_agent_is_no_agent_and_the_fallback(tmp_path):
    book = load_agents_file(
        agents_file(
            tmp_path,
            """
            [fallback]
            context = "default"
            extension = "queue"
            [agents.desk]
            numbers = ["*"]
            hours = { timezone = "UTC", sun = "10:00-11:00" }
            [agents.desk.fallback]
            context = "from-internal"
            extension = "vm"
            priority = 3
            """,
        )
    )
    choice = book.choose("100", at("2026-03-29T12:00:00+00:00"))
    assert choice.agent is None and choice.how == "default, outside hours (desk), no agent"
    assert choice.fallback == DialplanTarget("from-internal", "vm", 3)  # the agent's own first
    assert book.pick("100", at("2026-03-29T10:30:00+00:00")).name == "desk"


def test_hours_problems_each_name_their_key(tmp_path):
    found = problems(
        tmp_path,
        """
        [agents.a]
        numbers = ["1"]
        hours = { mon-fri = "09:00-12:00,11:00-13:00", wed = "10:00-11:00", sat = "18:00-02:00", closed = ["someday"] }
        """,
    )
    assert found == [
        "agents.a.hours.timezone: is required: a timezone name like Europe/Madrid or UTC",
        "agents.a.hours.mon-fri: '09:00-12:00,11:00-13:00' has overlapping ranges",
        "agents.a.hours.sat: '18:00-02:00' ends before it starts (past midnight: one range per day)",
        "agents.a.hours.closed: 'someday' is not a date (YYYY-MM-DD)",
    ]


def test_a_span_of_days_may_wrap_and_a_day_given_twice_is_an_error(tmp_path):
    book = load_agents_file(
        agents_file(
            tmp_path, '[agents.a]\nnumbers = ["1"]\nhours = { timezone = "UTC", fri-mon = "10:00-24:00" }\n'
        )
    )
    hours = book.agents["a"].hours
    assert hours.describe() == "mon 10:00-24:00; fri-sun 10:00-24:00 (UTC)"
    assert hours.is_open(at("2026-03-30T23:59:00+00:00"))  # Monday
    assert not hours.is_open(at("2026-03-31T12:00:00+00:00"))  # Tuesday
    twice = problems(
        tmp_path, '[agents.a]\nnumbers = ["1"]\nhours = { timezone = "UTC", mon-fri = "", wed = "" }\n'
    )
    assert twice == ["agents.a.hours.wed: wed is given twice (mon-fri and wed)"]


# --- what an agent changes in the call


def test_apply_sets_the_agents_settings_and_says_the_notice_first_word_for_word():
    base = settings(OPENAI_GREETING="Greet the caller.")
    agent = Agent(
        "clinic",
        instructions="Front desk.",
        voice="cedar",
        language="es",
        notice="Le atiende una IA; la llamada se graba.",
        max_call_seconds=120,
        idle_timeout_seconds=0,
    )
    applied = agent.apply(base)
    assert (
        applied.openai_voice == "cedar"
        and applied.max_call_seconds == 120
        and applied.idle_timeout_seconds == 0
    )
    assert applied.instructions().startswith("Front desk.\n\nSpeak Spanish with the caller")
    assert applied.openai_greeting.startswith(
        'Begin by saying exactly these words, word for word, with nothing before them: "Le atiende una IA; '
        'la llamada se graba." Then: Greet the caller.'
    )
    update = proto.session_update(applied)["session"]
    assert update["audio"]["input"]["transcription"] == {"model": "gpt-transcribe", "language": "es"}
    assert update["audio"]["output"]["voice"] == "cedar"
    no_greeting = Agent("a", notice="Recorded.").apply(settings(OPENAI_GREETING=""))
    assert no_greeting.openai_greeting.endswith('"Recorded." Then stop and let the caller speak.')
    assert Agent("default").apply(base) is base  # the environment's agent changes nothing


def test_openai_language_alone_reaches_the_transcription_and_the_instructions():
    plain = settings(OPENAI_LANGUAGE="pt-BR", OPENAI_INSTRUCTIONS="Help.")
    assert (
        plain.instructions()
        == "Help.\n\nSpeak Portuguese with the caller, unless they speak another language."
    )
    beta = proto.session_update(settings(OPENAI_LANGUAGE="pt-BR", OPENAI_API_SHAPE="beta"))["session"]
    assert beta["input_audio_transcription"]["language"] == "pt"
    assert "language" not in proto.session_update(settings())["session"]["audio"]["input"]["transcription"]
    assert cfg.check(environ={**BASE, "OPENAI_LANGUAGE": "Spanish"}).errors()[0].variable == "OPENAI_LANGUAGE"


def test_without_a_file_the_environment_is_the_default_agent_and_fallback_destination_applies():
    book = load_book(settings())
    assert list(book.agents) == ["default"] and book.fallback is None and book.source == ""
    assert book.pick("whatever", datetime.now(UTC)) == Agent("default")
    with_fallback = default_book(settings(FALLBACK_DESTINATION=" from-internal , 600 , 2 "))
    assert with_fallback.choose("1", datetime.now(UTC)).fallback == DialplanTarget("from-internal", "600", 2)


@pytest.mark.parametrize("bad", ["just-one", "a,b,c,d", "ctx,,1", "ctx,100,0", "ctx,100,x", "my ctx,100"])
def test_fallback_destination_must_be_a_dialplan_place(bad):
    errors = cfg.check(environ={**BASE, "FALLBACK_DESTINATION": bad}).errors()
    assert [e.variable for e in errors] == ["FALLBACK_DESTINATION"]
    with pytest.raises(ValueError):
        parse_target(bad)


def test_the_file_fallback_comes_before_fallback_destination(tmp_path):
    path = agents_file(tmp_path, '[agents.a]\nnumbers = ["1"]\n')
    env = DialplanTarget("env", "1")
    assert load_agents_file(path, env).choose("2", datetime.now(UTC)).fallback == env
    path.write_text('[fallback]\ncontext = "file"\nextension = "2"\n[agents.a]\nnumbers = ["1"]\n')
    assert load_agents_file(path, env).choose("2", datetime.now(UTC)).fallback == DialplanTarget("file", "2")


def test_a_reload_says_what_changed(tmp_path):
    old = load_agents_file(
        agents_file(tmp_path, '[agents.a]\nnumbers = ["1"]\n[agents.b]\nnumbers = ["2"]\n')
    )
    new = load_agents_file(
        agents_file(
            tmp_path, '[agents.a]\nnumbers = ["1"]\nvoice = "cedar"\n[agents.c]\nnumbers = ["2"]\n', "2.toml"
        )
    )
    assert new.changes_from(old) == "added c; removed b; changed a"
    assert old.changes_from(old) == "nothing changed"


def test_the_fallback_mark_names_the_fallback_and_nothing_else():
    target = DialplanTarget("from-internal", "vm", 2)
    assert marked_fallback(fallback_mark(target)) == target
    assert marked_fallback("at MAX_CONCURRENT_CALLS") is None and marked_fallback(None) is None


# --- budgets


def test_a_budget_counts_today_crosses_once_and_starts_again_at_local_midnight(caplog):
    zone = __import__("zoneinfo").ZoneInfo(MADRID)
    evening = datetime(2026, 3, 28, 22, 30, tzinfo=UTC).timestamp()  # 23:30 in Madrid
    budgets = Budgets(zone, evening)
    budgets.add("desk", 0.6, 1.0, evening)
    assert not budgets.over("desk", 1.0, evening)
    with caplog.at_level("WARNING", logger="supervisor.budgets"):
        budgets.add("desk", 0.5, 1.0, evening + 60)
        budgets.add("desk", 0.5, 1.0, evening + 120)
    assert budgets.over("desk", 1.0, evening + 120) and not budgets.over("desk", None, evening)
    assert [r.getMessage() for r in caplog.records] == [
        "agent desk reached its daily budget (1.1000 of 1.0000 today): its new callers go to the fallback"
    ]
    after_midnight = datetime(2026, 3, 28, 23, 5, tzinfo=UTC).timestamp()  # 00:05 on the 29th in Madrid
    assert not budgets.over("desk", 1.0, after_midnight) and budgets.as_dict() == {}


def test_a_seed_adds_the_days_costs_and_a_stale_one_is_ignored():
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC).timestamp()
    budgets = Budgets(UTC, now)
    budgets.add("desk", 0.25, 1.0, now)
    assert not budgets.seed("2026-03-27", {"desk": 5.0}, {"desk": 1.0}, now)
    assert budgets.seed("2026-03-28", {"desk": 0.8, "other": 0.1}, {"desk": 1.0}, now)
    assert budgets.as_dict() == {"desk": 1.05, "other": 0.1} and budgets.over("desk", 1.0, now)


def test_day_bounds_are_the_local_days_in_utc_across_dst():
    zone = __import__("zoneinfo").ZoneInfo(MADRID)
    assert day_bounds(date(2026, 3, 29), zone) == (datetime(2026, 3, 28, 23, 0), datetime(2026, 3, 29, 22, 0))


def test_the_budget_seed_reads_each_agents_cost_of_the_day_from_the_database(tmp_path):
    from callbridge.database_url import DatabaseUrl
    from records.migrate import upgrade
    from records.queries import cost_by_agent
    from records.store import open_engine, store_record
    from supervisor.budgets import seed_work

    database = tmp_path / "state" / "callbridge.db"
    database.parent.mkdir()
    url = DatabaseUrl.sqlite_file(database)
    engine = open_engine(url)
    upgrade(engine)

    def record(call_id: str, agent: str, when: datetime, cost, instance: str = "openai-app") -> None:
        store_record(
            engine,
            {"instance": instance, "call_id": call_id, "agent": agent, "started_at": when.timestamp(),
             "end_reason": "caller_hangup", "cost_estimate": cost},
        )  # fmt: skip

    record("c1", "desk", datetime(2026, 3, 28, 9, 0, tzinfo=UTC), 0.5)
    record("c2", "desk", datetime(2026, 3, 28, 10, 0, tzinfo=UTC), 0.25)
    record("c3", "desk", datetime(2026, 3, 27, 23, 59, tzinfo=UTC), 9.0)  # yesterday
    record("c4", "night", datetime(2026, 3, 28, 11, 0, tzinfo=UTC), None)  # no price known
    record("c5", "desk", datetime(2026, 3, 28, 11, 0, tzinfo=UTC), 7.0, instance="other")
    record("c6", "desk", datetime(2026, 3, 28, 13, 0, tzinfo=UTC), 3.0)  # after this run started
    assert cost_by_agent(engine, datetime(2026, 3, 28), datetime(2026, 3, 29), "openai-app") == {"desk": 3.75}
    engine.dispose()
    found = seed_work(settings(STATE_DIR=str(tmp_path / "state"), RECORDS_TIMEZONE="UTC"), date(2026, 3, 28),
                      datetime(2026, 3, 28, 12, 0, tzinfo=UTC).timestamp())()  # fmt: skip
    assert found == {"day": "2026-03-28", "spent": {"desk": 0.75}}
    nothing = seed_work(settings(STATE_DIR=str(tmp_path / "none")), date(2026, 3, 28), 0.0)()
    assert nothing == {"day": "2026-03-28", "spent": {}}


# --- the CLI


def run_cli(args: list[str], **env: str):
    return CliRunner().invoke(app, args, env={**BASE, **env}, catch_exceptions=False)


def test_callbridge_agents_lists_them_and_says_who_answers_a_number_and_why():
    example = str(REPO / "docs" / "agents.example.toml")
    listed = run_cli(["agents"], AGENTS_FILE=example)
    assert listed.exit_code == 0, listed.output
    assert (
        "clinic" in listed.stdout
        and "transfer:  reception -> 200@from-internal:1 (attended, 25 s)" in listed.stdout
    )
    assert "hours:     mon-fri 08:00-14:00,16:00-19:00; sat 09:00-13:00 (Europe/Madrid)" in listed.stdout
    open_now = run_cli(["agents", "--number", "100", "--at", "2026-03-24T10:00"], AGENTS_FILE=example,
                       RECORDS_TIMEZONE=MADRID)  # fmt: skip
    assert open_now.stdout.strip() == "100 at 2026-03-24T10:00+01:00: clinic (exact 100)"
    closed = run_cli(["agents", "--number", "100", "--at", "2026-03-24T15:00+01:00"], AGENTS_FILE=example)
    assert "night (exact 100, outside hours of clinic -> night)" in closed.stdout
    pattern = run_cli(["agents", "--number", "9001"], AGENTS_FILE=example)
    assert "extensions (pattern _9XXX)" in pattern.stdout
    nobody = run_cli(["agents", "--number", "555"], AGENTS_FILE=example)
    assert "no agent (no agent claims it) -> fallback *98@from-internal:1" in nobody.stdout
    default = run_cli(["agents", "--number", "555"])
    assert "default (default)" in default.stdout
    bad_time = run_cli(["agents", "--number", "1", "--at", "tomorrow"], AGENTS_FILE=example)
    assert bad_time.exit_code == 2


def test_callbridge_check_and_agents_report_a_broken_file_with_the_config_exit_code(tmp_path):
    path = agents_file(tmp_path, '[agents.a]\nnumbers = ["1"]\nvoise = "x"\n')
    listed = run_cli(["agents"], AGENTS_FILE=str(path))
    assert listed.exit_code == cfg.EX_CONFIG
    assert f"AGENTS_FILE: {path}: agents.a.voise: unknown key (did you mean voice?)" in listed.stderr
    checked = run_cli(["check", "--offline"], AGENTS_FILE=str(path), ASTERISK_PORT="1")
    assert checked.exit_code == cfg.EX_CONFIG
    assert f"AGENTS_FILE: {path}: agents.a.voise: unknown key (did you mean voice?)" in checked.stderr
    path.write_text('[agents.a]\nnumbers = ["1"]\n')
    good = run_cli(["check", "--offline"], AGENTS_FILE=str(path), ASTERISK_PORT="1")
    assert f"✓ agents: 1 from {path}: a" in good.stdout and good.exit_code == 1  # ARI is not there


def test_an_agent_s_tool_limits_are_read_checked_and_defaulted(tmp_path):
    book = load_agents_file(
        agents_file(
            tmp_path,
            """
            [agents.desk]
            numbers = ["100"]
            [agents.desk.limits]
            transfer_attempts = 1
            tool_calls = 12
            [agents.other]
            numbers = ["200"]
            """,
        ),
        None,
    )
    desk, other = book.agents["desk"], book.agents["other"]
    assert (desk.limits.transfer_attempts, desk.limits.tool_errors, desk.limits.tool_calls) == (1, 10, 12)
    assert (other.limits.transfer_attempts, other.limits.tool_errors, other.limits.tool_calls) == (3, 10, 30)
    found = problems(
        tmp_path,
        """
        [agents.desk]
        numbers = ["100"]
        [agents.desk.limits]
        transfer_attemps = 2
        tool_errors = -1
        """,
    )
    assert any("transfer_attemps" in p and "transfer_attempts" in p for p in found), found
    assert any("tool_errors" in p and "between 0 and 1000" in p for p in found), found


def test_config_and_check_show_the_environment_s_and_the_agents_file_s_problems_in_one_pass(tmp_path):
    """Issue 22, item 18: `config` never read the agents file (it passed with a broken one),
    and `check` stopped at the environment's problems before reading it."""
    path = agents_file(tmp_path, '[agents.a]\nnumbers = ["1"]\nvoise = "x"\n')
    for command in (["config"], ["check", "--offline"]):
        result = run_cli(command, AGENTS_FILE=str(path), ASTERISK_PORT="0")
        assert result.exit_code == cfg.EX_CONFIG, command
        assert "ASTERISK_PORT" in result.stderr and "agents.a.voise: unknown key" in result.stderr, command
    good_env = run_cli(["config"], AGENTS_FILE=str(path))
    assert good_env.exit_code == cfg.EX_CONFIG and "✗ agents:" in good_env.stderr


def test_callbridge_agents_needs_no_credentials(tmp_path):
    """Issue 22, item 19: it refused to say who answers a number without the ARI password and
    the OpenAI key, which it never uses."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "agents", "--number", "100", "--at", "2026-03-24T15:00"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "AGENTS_FILE": str(REPO / "docs" / "agents.example.toml"),
        },
    )
    assert result.returncode == 0, result.stderr
    assert "ASTERISK_PASSWORD" not in result.stderr
