"""GPT-Live's side of the seam without a network: the settings that choose it, the opening
the simulator's strict checker takes, turns made of streams, our voice detection, and every
server event read or refused (call_worker/live_adapter.py, live_turns.py, voice_activity.py)."""

from __future__ import annotations

import base64
import json

import pytest

from call_worker import adapter as seam
from call_worker import live_protocol, voice_activity
from call_worker.adapter import adapter_for
from call_worker.live_turns import CUT_HOLD, CUT_QUIET, QUIET, LiveTurns
from call_worker.tools import ToolSpec
from callbridge import config as cfg
from simulators import g711
from simulators.live_session import StartRefused, check_start

BASE = {"ASTERISK_USERNAME": "u", "ASTERISK_PASSWORD": "p", "OPENAI_API_KEY": "sk-test"}


def settings(**env: str) -> cfg.Settings:
    return cfg.load(env_file=None, environ={**BASE, **env}).settings


def problems(**env: str) -> dict[str, str]:
    return {e.variable: e.problem for e in cfg.check(env_file=None, environ={**BASE, **env}).errors()}


# --- choosing the API


@pytest.mark.parametrize(
    ("env", "api", "model"),
    [
        ({}, "realtime", "gpt-realtime-2.1"),
        ({"OPENAI_API": "live"}, "live", "gpt-live-1.1"),
        ({"OPENAI_REALTIME_MODEL": "gpt-live-1"}, "live", "gpt-live-1"),
        (
            {"OPENAI_API": "realtime", "OPENAI_REALTIME_MODEL": "gpt-realtime-2.1-mini"},
            "realtime",
            "gpt-realtime-2.1-mini",
        ),
    ],
)
def test_the_api_is_chosen_by_the_setting_or_the_models_name(env, api, model):
    chosen = settings(**env)
    assert (chosen.openai_api, chosen.openai_realtime_model) == (api, model)
    assert type(adapter_for(chosen)).__name__ == ("LiveAdapter" if api == "live" else "RealtimeAdapter")


def test_a_model_the_chosen_api_does_not_run_and_realtime_tunings_under_live_are_refused():
    assert (
        "not a GPT-Live model"
        in problems(OPENAI_API="live", OPENAI_REALTIME_MODEL="gpt-realtime-2.1")["OPENAI_REALTIME_MODEL"]
    )
    assert (
        "runs only on GPT-Live"
        in problems(OPENAI_API="realtime", OPENAI_REALTIME_MODEL="gpt-live-1.1")["OPENAI_REALTIME_MODEL"]
    )
    found = problems(OPENAI_API="live", OPENAI_TURN_DETECTION="semantic_vad", OPENAI_SPEED="1.2")
    assert set(found) == {"OPENAI_TURN_DETECTION", "OPENAI_SPEED"}
    assert all("GPT-Live has no such setting" in p for p in found.values())
    assert "OPENAI_API" in problems(OPENAI_API="gpt-live")


def test_a_cleartext_live_url_to_another_host_is_refused():
    assert "in the clear" in problems(OPENAI_LIVE_URL="ws://live.example/v1/live/sessions")["OPENAI_LIVE_URL"]


# --- the opening


def test_the_opening_passes_the_strict_checker_with_tools_and_history():
    chosen = settings(OPENAI_API="live", OPENAI_VOICE="cedar", AUDIO_FORMAT="alaw")
    tools = [ToolSpec("end_call", "End the call.", {"type": "object", "properties": {}})]
    history = live_protocol.history([("caller", "hello"), ("agent", "hi, how can I help?")])
    start = live_protocol.session_start(chosen, tools, history)
    assert check_start(start["session"]) == "alaw"
    session = start["session"]
    assert session["audio"] == {"format": {"type": "audio/pcma", "rate": 8000}, "output": {"voice": "cedar"}}
    assert session["delegation"]["responses"]["model"] == "gpt-5.6-luna"
    assert [m["role"] for m in session["input"]] == ["user", "assistant"]
    # The checker is strict: a Realtime-shaped field is refused by name.
    with pytest.raises(StartRefused) as refused:
        check_start({**session, "turn_detection": {"type": "server_vad"}})
    assert refused.value.code == "unknown_parameter" and refused.value.param == "session.turn_detection"


def test_a_new_sessions_history_keeps_the_newest_turns_within_the_services_limits():
    many = [("caller" if n % 2 else "agent", f"turn {n}") for n in range(300)]
    kept = live_protocol.history(many)
    assert len(kept) == live_protocol.HISTORY_MESSAGES
    assert kept[-1]["content"][0]["text"] == "turn 299" and kept[0]["content"][0]["text"] == "turn 172"
    long = [("caller", "x" * 20000), ("agent", "y" * 20000), ("caller", "last words")]
    kept = live_protocol.history(long)
    chars = sum(len(m["content"][0]["text"]) for m in kept)
    assert chars <= live_protocol.HISTORY_TOKENS * live_protocol.CHARS_PER_TOKEN
    assert kept[-1]["content"][0]["text"] == "last words"
    check_start({"model": "gpt-live-1.1", "input": kept})  # the service would take it


# --- voice detection


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_the_loudness_tables_decode_g711_as_the_simulator_does(law):
    loud_at = voice_activity.loud_table(law, 1000)
    samples = g711.decode(bytes(range(256)), law)
    assert [loud_at[byte] for byte in range(256)] == [int(abs(sample) > 1000) for sample in samples]
    assert voice_activity.voiced(g711.tone(20, 440.0, 9000, law), loud_at)
    assert not voice_activity.voiced(g711.silence(20, law), loud_at)


def test_the_callers_voice_starts_after_40_ms_and_stops_after_300_ms():
    voice = voice_activity.CallerVoice("ulaw")
    tone, quiet = g711.tone(20, 440.0, 9000, "ulaw"), g711.silence(20, "ulaw")
    assert [voice.feed(tone), voice.feed(tone)] == ["", "started"]
    said = [voice.feed(quiet) for _ in range(voice_activity.CALLER_STOP_FRAMES)]
    assert said[-1] == "stopped" and set(said[:-1]) == {""}
    # The agent's echo, 20 dB down, is no caller.
    echo = g711.tone(20, 440.0, 900, "ulaw")
    assert {voice.feed(echo) for _ in range(50)} == {""}


# --- turns out of streams


def _types(events) -> list[str]:
    return [type(e).__name__ for e in events]


def test_a_turn_is_voice_and_words_until_a_quiet_second_and_silence_between_turns_is_dropped():
    turns = LiveTurns("ulaw")
    voice, quiet = g711.tone(100, 440.0, 9000, "ulaw"), g711.silence(100, "ulaw")
    assert turns.agent_audio(0.0, quiet) == []  # between turns: not played
    assert _types(turns.agent_audio(0.1, voice)) == ["ReplyStarted", "AgentItem", "AgentAudio"]
    assert turns.agent_audio(0.2, quiet) == []  # a pause: held
    [pause, more] = turns.agent_audio(0.3, voice)  # voice follows: the pause plays first
    assert (pause.audio, more.audio) == (quiet, voice)
    assert _types(turns.agent_text(0.35, "hello ")) == ["AgentTextDelta"]
    assert turns.agent_audio(0.4, quiet) == []  # trailing silence is never queued
    assert turns.poll(0.35 + QUIET - 0.01) == []
    text, done = turns.poll(0.35 + QUIET)
    assert (text.text, done.item_ids) == ("hello", (done.response_id,))
    assert turns.agent_audio(2.0, quiet) == []


def test_a_words_soft_tail_plays_at_once_and_only_silence_waits_for_voice():
    turns = LiveTurns("ulaw")
    voice = g711.tone(100, 440.0, 9000, "ulaw")
    tail = g711.tone(10, 440.0, 3000, "ulaw") + g711.silence(90, "ulaw")  # 10 % of it sounds
    turns.agent_audio(0.0, voice)
    [played] = turns.agent_audio(0.1, tail)
    assert played.audio == tail


def test_the_callers_words_are_one_turn_until_the_agent_speaks():
    turns = LiveTurns("ulaw")
    turns.caller_text(0.0, "I need ")
    turns.caller_text(0.2, "help")
    events = turns.agent_audio(0.5, g711.tone(100, 440.0, 9000, "ulaw"))
    assert _types(events)[:2] == ["CallerText", "ReplyStarted"] and events[0].text == "I need help"
    turns.caller_text(3.0, "thanks")
    assert [e.text for e in turns.poll(3.0 + QUIET) if isinstance(e, seam.CallerText)] == ["thanks"]


def test_after_a_cut_the_rest_is_dropped_until_the_model_pauses_or_clearly_goes_on():
    voice, quiet = g711.tone(100, 440.0, 9000, "ulaw"), g711.silence(100, "ulaw")
    turns = LiveTurns("ulaw")
    turns.agent_audio(0.0, voice)
    turns.cut(0.1)
    assert turns.agent_audio(0.2, voice) == []  # still the speech we flushed
    assert turns.agent_audio(0.3, quiet) == []  # a gap between its words: not yet the end
    assert turns.agent_audio(0.4, voice) == []
    assert turns.agent_audio(0.5, quiet) == []
    ended = turns.agent_audio(0.5 + CUT_QUIET, quiet)  # the model stopped: that turn is over
    assert _types(ended) == ["AgentText", "ReplyDone"]
    assert turns.agent_text(0.9, "late ") == []  # the cut turn's late words start no turn
    assert _types(turns.agent_audio(1.0, voice))[:1] == ["ReplyStarted"]  # its answer, a new turn
    # A model that talks on past CUT_HOLD meant to: what follows plays, as a new turn.
    turns = LiveTurns("ulaw")
    turns.agent_audio(0.0, voice)
    turns.cut(0.1)
    assert turns.agent_audio(0.1 + CUT_HOLD / 2, voice) == []
    assert _types(turns.agent_audio(0.1 + CUT_HOLD, voice))[:4] == [
        "AgentText",
        "ReplyDone",
        "ReplyStarted",
        "AgentItem",
    ]


# --- server events


def _events(adapter, event: dict) -> list:
    return adapter.events(json.dumps(event).encode())


def test_server_events_are_read_and_bad_ones_refused():
    adapter = adapter_for(settings(OPENAI_API="live"))
    call = {"type": "function_call", "call_id": "c1", "name": "end_call", "arguments": "{}"}
    [tool] = _events(
        adapter,
        {
            "type": "response.event",
            "delegation_id": "d1",
            "event": {"type": "response.output_item.done", "item": call},
        },
    )
    assert (tool.call_id, tool.name, tool.response_id) == ("c1", "end_call", "d1")
    assert (
        _events(
            adapter, {"type": "response.event", "delegation_id": "d1", "event": {"type": "response.created"}}
        )
        == []
    )
    [expired] = _events(adapter, {"type": "session.closed", "reason": "expired"})[-1:]
    assert expired.code == "session_expired" and expired.action is seam.ErrorAction.RECONNECT
    [content] = _events(adapter, {"type": "session.closed", "reason": "content"})[-1:]
    assert content.action is seam.ErrorAction.FATAL_CONFIG
    [error] = _events(
        adapter,
        {"type": "error", "error": {"code": "insufficient_quota", "message": "no", "client_event_id": "x"}},
    )
    assert error.action is seam.ErrorAction.FATAL_CONFIG and error.cause == "x" and "billing" in error.fix
    [seconds] = _events(adapter, {"type": "session.usage.updated", "usage": {"seconds": 61.5}})
    assert seconds.seconds >= 61.5
    assert _events(adapter, {"type": "some.future.event"}) == []
    for bad in (
        b"{not json",
        b"[]",
        b'{"type": "session.output_audio.delta", "delta": "@@@"}',
        b'{"type": "response.event"}',
    ):
        with pytest.raises(seam.MalformedEvent):
            adapter.events(bad)


def test_commands_are_gpt_live_messages():
    adapter = adapter_for(settings(OPENAI_API="live"))
    append = json.loads(adapter.append(b"\xff" * 160))
    assert append == {"type": "session.input_audio.append", "audio": base64.b64encode(b"\xff" * 160).decode()}
    [greet] = map(json.loads, adapter.respond("Greet the caller.", "", "cb_1"))
    assert greet == {
        "type": "session.instructions.append",
        "content": "Greet the caller.",
        "delegation_id": None,
        "event_id": "cb_1",
    }
    assert adapter.truncate("live_1", 500) == [] and adapter.delete("live_1") == []
    [output] = map(json.loads, adapter.tool_result("c1", '{"ok": true}'))
    assert output["type"] == "response.item.create" and output["item"]["type"] == "function_call_output"
    assert [json.loads(t)["type"] for t in adapter.reply()] == ["response.create"]
    assert [json.loads(t)["type"] for t in adapter.closing()] == ["session.close"]
    assert adapter.quiet("cb_q") == [] and adapter.poll(0.0) == [seam.Quieted("cb_q")]


def test_gpt_live_is_priced_per_session_minute_and_the_kind_is_named_when_wrong():
    from callbridge.prices import PriceTable

    prices = PriceTable().with_defaults("USD")
    assert prices.estimate("gpt-live-1.1", {"session_seconds": 90.0}) == pytest.approx(0.075)
    own = PriceTable.parse('{"gpt-live-1": {"session_minute": 0.04}}').with_defaults("USD")
    assert own.estimate("gpt-live-1", {"session_seconds": 60.0}) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="session_minute"):
        PriceTable.parse('{"gpt-live-1": {"session_second": 1}}')


# --- an agent's own api and model


def _book(tmp_path, text: str, **env: str):
    from callbridge.agent_file import load_agents_file

    path = tmp_path / "agents.toml"
    path.write_text(text)
    return load_agents_file(path, settings=settings(**env))


@pytest.mark.parametrize(
    ("env", "keys", "api", "model"),
    [
        ({}, 'api = "live"', "live", "gpt-live-1.1"),  # the environment's Realtime model is not live's
        ({}, 'model = "gpt-live-1"', "live", "gpt-live-1"),  # by the model's name
        ({"OPENAI_API": "live"}, 'api = "realtime"', "realtime", "gpt-realtime-2.1"),
        ({"OPENAI_API": "live"}, "", "live", "gpt-live-1.1"),  # the environment's
        ({}, 'api = "realtime"\nmodel = "gpt-realtime-2.1-mini"', "realtime", "gpt-realtime-2.1-mini"),
    ],
)
def test_an_agent_may_choose_its_own_api_and_model(tmp_path, env, keys, api, model):
    book = _book(tmp_path, f'[agents.desk]\nnumbers = ["*"]\n{keys}\n', **env)
    applied = book.agents["desk"].apply(settings(**env))
    assert (applied.openai_api, applied.openai_realtime_model) == (api, model)


def test_an_agents_model_its_api_does_not_run_and_its_realtime_tunings_under_live_are_named(tmp_path):
    from callbridge.agent_file import AgentFileError

    text = '[agents.desk]\nnumbers = ["*"]\napi = "live"\nmodel = "gpt-realtime-2.1"\n'
    text += '[agents.night]\nnumbers = ["200"]\nmodel = "gpt-live-1"\nspeed = 1.2\n[agents.night.turns]\ndetection = "semantic_vad"\n'
    with pytest.raises(AgentFileError) as raised:
        _book(tmp_path, text)
    problems = "\n".join(raised.value.problems)
    assert "agents.desk.model: 'gpt-realtime-2.1' is not a GPT-Live model (api=live)" in problems
    assert "agents.night.speed: GPT-Live has no such setting" in problems
    assert "agents.night.turns.detection: GPT-Live has no such setting" in problems
    with pytest.raises(AgentFileError, match="agents.odd.api: must be one of realtime, live"):
        _book(tmp_path, '[agents.odd]\nnumbers = ["300"]\napi = "gpt-live"\n')


def test_every_model_in_use_is_checked_once(tmp_path):
    from callbridge.model_lifecycle import configured_models

    text = '[agents.desk]\nnumbers = ["*"]\n[agents.live]\nnumbers = ["200"]\napi = "live"\n'
    text += '[agents.also]\nnumbers = ["300"]\nmodel = "gpt-live-1.1"\n'
    book = _book(tmp_path, text)
    models = configured_models(settings(), book.agents.values())
    assert models == [
        ("OPENAI_REALTIME_MODEL", "gpt-realtime-2.1"),
        ("OPENAI_TRANSCRIPTION_MODEL", "gpt-transcribe"),
        ("agents.live.model", "gpt-live-1.1"),
        ("OPENAI_LIVE_BACKEND_MODEL", "gpt-5.6-luna"),
    ]


def test_while_the_agent_talks_its_echo_is_no_caller_but_a_caller_over_it_is():
    voice = voice_activity.CallerVoice("ulaw")
    agent = g711.tone(20, 440.0, 9000, "ulaw")
    for _ in range(5):
        voice.agent_frame(agent)
    echo = g711.tone(20, 440.0, 9000 // 4, "ulaw")  # -12 dB: louder than CALLER_LOUD
    assert {voice.feed(echo) for _ in range(50)} == {""}
    caller = g711.tone(20, 600.0, 10000, "ulaw")
    assert [voice.feed(caller), voice.feed(caller)] == ["", "started"]
    # Once the agent has been silent for the echo's window, the plain threshold is back.
    voice = voice_activity.CallerVoice("ulaw")
    voice.agent_frame(agent)
    for _ in range(voice_activity.ECHO_FRAMES):
        voice.agent_frame(b"")
    assert [voice.feed(echo), voice.feed(echo)] == ["", "started"]
