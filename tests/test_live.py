"""What only GPT-Live asks of a call's worker (call_worker/live_adapter.py), against the
simulated GPT-Live server (simulators/live_session.py) as real processes: the session is
started, not configured; the caller's audio streams every 20 ms, silence filling what
the phone does not send; barge-in is our own flush on our own detection of the caller's
voice; turns are made of timed deltas; tools come through delegation. What both APIs share
runs on both (the `api` fixture of tests/conftest.py, in tests/test_call_worker.py and
beside it)."""

from __future__ import annotations

import json

import pytest
from analysis import audio_appends, loud, replies_made, session_events
from harness import last_session, short_replies

from shm_ring import EndReason, Slot

pytestmark = pytest.mark.slow

realtime = pytest.fixture(short_replies, scope="module", name="realtime")  # tests/harness.py


def _sim(session: dict, kind: str) -> list[dict]:
    return [e for _, d, e in session["events"] if d == "sim" and e.get("type") == kind]


def test_the_session_starts_strictly_with_gpt_live_fields_and_g711_both_ways(calls, asterisk, realtime):
    sup = calls(OPENAI_API="live", OPENAI_GREETING="Greet the caller.")
    call = sup.place([{"silence": 1500}, {"say": 800}, {"silence": 3000}, {"hangup": True}])
    assert sup.wait_ended(call) == 0
    session = last_session(realtime)
    assert session["path"] == "/v1/live/sessions"
    [(_, start)] = session_events(session, "in", "session.start")
    assert set(start["session"]) <= {"model", "instructions", "audio", "delegation", "input"}
    assert start["session"]["model"] == "gpt-live-1.1"  # the default under OPENAI_API=live
    assert start["session"]["audio"] == {
        "format": {"type": "audio/pcmu", "rate": 8000},
        "output": {"voice": "marin"},
    }
    assert start["session"]["delegation"]["type"] == "responses"  # end_call is always offered
    assert not _sim(session, "<session.start refused>")
    # Nothing was sent before the session started: the opening is the first message in.
    first_in = next(e for _, d, e in session["events"] if d == "in")
    assert first_in["type"] == "session.start"
    record = asterisk.call(call.channel_id)
    assert len(loud(record)) == 50 + 75  # the greeting, then the reply, each whole
    assert call.segment.header.get(Slot.RESPONSES) == 2


def test_silence_fills_what_a_muted_phone_does_not_send(calls, asterisk, realtime, tmp_path):
    """Asterisk relays nothing while the phone sends nothing; the session must hear a
    microphone all the same: no gap over 100 ms between appends (the simulator records
    them), about 8000 bytes a second in all, and the caller's own audio untouched."""
    sup = calls(OPENAI_API="live", CALL_RECORDS_DIR=str(tmp_path))
    script = [{"say": 800}, {"mute": 3000}, {"say": 800}, {"mute": 2500}, {"hangup": True}]
    call = sup.place(script)
    assert sup.wait_ended(call, 20) == 0
    session = last_session(realtime)
    # Filling rides on the 20 ms ticks the media loop has anyway: no wake-up of its own
    # (bench/live_bench.py's target is 110 per call-second and measured about 63; loose here).
    report = json.loads((tmp_path / f"{call.channel_id}.json").read_text())
    wakeups = report["rusage"]["ru_nvcsw"] / report["duration_s"]
    assert wakeups < 150, f"{wakeups:.0f} voluntary context switches per call-second"
    assert report["playout_lead"]["p99_ms"] <= 400  # the simulator sends 200 ms ahead, in 100 ms chunks
    record = asterisk.call(call.channel_id, packets=False)
    assert record["frames_sent"] == (800 + 800) // 20  # the caller's phone sent only its speech
    assert _sim(session, "<input gap>") == []
    appends = audio_appends(session)
    streamed = appends[-1][0] - appends[0][0]
    total = appends[-1][1]["total"]
    assert abs(total / 8000 - streamed) < 0.25, f"{total} bytes in {streamed:.2f} s"
    assert len(replies_made(session)) == 2  # both utterances were heard as turns
    assert call.segment.header.get(Slot.FRAMES_TO_REALTIME) == 80  # the caller's own frames, counted apart


def test_a_barge_in_flushes_playback_on_our_own_detection_within_60_ms(
    calls, asterisk, realtime_long, tmp_path
):
    sup = calls(realtime_long, OPENAI_API="live", CALL_RECORDS_DIR=str(tmp_path))
    script = [{"say": 1000}, {"silence": 3000}, {"say": 1200, "hz": 600}, {"silence": 3000}, {"hangup": True}]
    call = sup.place(script)
    assert sup.wait_ended(call, 30) == 0
    record = asterisk.call(call.channel_id)
    first, _frames = record["utterances"][1]
    spoke_at = record["send_times"][first]  # the caller's voice leaves the phone
    heard = [p for p in loud(record) if spoke_at <= p["arrival"] <= spoke_at + 1.0]
    assert heard, "the reply was not playing when the caller spoke"
    stop_ms = (max(p["arrival"] for p in heard) - spoke_at) * 1000
    # 40 ms to detect (two voiced frames), the next frame silent; 80 here for CPU steal.
    assert stop_ms <= 80, f"playback went on {stop_ms:.0f} ms after the caller spoke"
    header = call.segment.header
    assert header.get(Slot.BARGE_INS) == 1
    session = last_session(realtime_long)
    assert _sim(session, "<stopped for the caller>")  # and the model stopped by itself
    # The model is never told what was played: no truncate, no cancel exist.
    assert not [
        e
        for _, d, e in session["events"]
        if d == "in" and e["type"].startswith(("conversation.", "response.cancel"))
    ]
    spooled = json.loads((tmp_path / f"{call.channel_id}.json").read_text())
    agent = [t for t in spooled["transcript"] if t["role"] == "agent"]
    assert agent[0]["interrupted"] and agent[0]["heard"] and len(agent[0]["heard"]) < len(agent[0]["text"])
    assert len(agent) == 2  # and the answer to the interruption (cut by the hang-up) is its own turn


def test_an_agent_talking_to_a_silent_caller_is_never_flushed(calls, asterisk, realtime_long):
    sup = calls(realtime_long, OPENAI_API="live")
    call = sup.place([{"say": 800}, {"silence": 12000}, {"hangup": True}])
    assert sup.wait_ended(call, 30) == 0
    assert call.segment.header.get(Slot.BARGE_INS) == 0
    assert len(loud(asterisk.call(call.channel_id))) == 500  # the 10 s reply, every frame


def test_a_refused_start_ends_the_call_with_the_failure_prompt_and_the_reason(calls, asterisk, realtime):
    sup = calls(OPENAI_API="live", OPENAI_REALTIME_MODEL="gpt-live-0")
    call = sup.place([{"say": 800}, {"silence": 20000}])
    assert sup.wait_ended(call, 20) == 0
    record = asterisk.call(call.channel_id, packets=False)
    assert [p["media"] for p in record["playbacks"]] == ["sound:an-error-has-occurred"]
    assert call.segment.header.get(Slot.END_REASON) == EndReason.REALTIME_FAILED
    assert len(realtime.sessions()) == 1  # a refusal is not retried


def test_the_record_keeps_the_session_time_and_prices_it_per_minute(calls, asterisk, realtime, tmp_path):
    from records import spool

    sup = calls(OPENAI_API="live", STATE_DIR=str(tmp_path / "state"))
    call = sup.place([{"say": 800}, {"silence": 3000}, {"hangup": True}])
    assert sup.wait_ended(call) == 0
    [path] = spool.pending_records(sup.settings.spool_dir)
    record = json.loads(path.read_text())
    seconds = record["usage"]["session_seconds"]
    assert 3.0 < seconds <= record["duration_s"]
    assert record["transcription_model"] == ""  # GPT-Live transcribes within the session
    assert record["cost_estimate"] == pytest.approx(0.05 * seconds / 60, abs=1e-6)  # USD 0.05 a minute


def test_an_agent_of_its_own_api_answers_on_it_while_the_environment_stays_on_realtime(
    calls, asterisk, realtime, tmp_path
):
    agents = tmp_path / "agents.toml"
    agents.write_text('[agents.desk]\nnumbers = ["100"]\n[agents.night]\nnumbers = ["200"]\napi = "live"\n')
    sup = calls(AGENTS_FILE=str(agents))
    assert sup.settings.openai_api == "realtime"
    for exten in ("100", "200"):
        channel = asterisk.place_call([{"say": 800}, {"silence": 2500}, {"hangup": True}], exten=exten)
        sup.wait(lambda channel=channel: channel in sup.calls, 5)
        assert sup.wait_ended(sup.calls[channel]) == 0
    paths = [session["path"].split("?")[0] for session in realtime.sessions()]
    assert paths == ["/v1/realtime", "/v1/live/sessions"]
    assert [len(loud(asterisk.call(c))) for c in sup.calls] == [75, 75]  # each heard its reply


def test_an_account_without_quota_gets_the_failure_prompt_once(calls, asterisk, realtime):
    sup = calls(OPENAI_API="live")
    realtime.fault("insufficient_quota")
    call = sup.place([{"say": 800}, {"silence": 20000}])
    assert sup.wait_ended(call, 20) == 0
    record = asterisk.call(call.channel_id, packets=False)
    assert [p["media"] for p in record["playbacks"]] == ["sound:an-error-has-occurred"]
    assert call.segment.header.get(Slot.END_REASON) == EndReason.REALTIME_FAILED
    assert call.segment.header.get(Slot.ERRORS_INSUFFICIENT_QUOTA) == 1  # counted under its own code
    assert len(realtime.sessions()) == 1


def test_a_reply_cut_off_by_a_lost_session_reaches_the_next_one_as_heard(calls, asterisk, realtime):
    """GPT-Live takes the history only at session.start: what still played when the session
    was lost is left out of it, and given as context once it has been heard."""
    sup = calls(OPENAI_API="live")
    realtime.fault("drop", after=2.0)  # the 1.5 s reply began at about 1.3 s: it is cut off
    call = sup.place([{"say": 800}, {"silence": 2500}, {"say": 800}, {"silence": 3000}, {"hangup": True}])
    assert sup.wait_ended(call, 25) == 0
    first, second = realtime.sessions()
    [(_, start)] = session_events(second, "in", "session.start")
    assert [m["role"] for m in start["session"]["input"]] == ["user"]  # the caller's turn
    [(_, context)] = session_events(second, "in", "session.thinking.append")
    assert context["content"].startswith("You had told the caller: reply to")
    assert call.segment.header.get(Slot.RECONNECTS) == 1
