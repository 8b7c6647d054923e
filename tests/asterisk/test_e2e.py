"""End to end against a real Asterisk 22: sipp callers speaking real (espeak-ng) audio,
`callbridge run` as a real process, the simulated Realtime server in place of OpenAI,
and tcpdump capturing the RTP on loopback independently of callbridge.

Every scenario ends (fixture `bridge`) with no channel or bridge left in Asterisk, no
shared-memory segment and no worker process left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from analysis import assert_paced, audio_appends, caller_turns, session_events
from conftest import PORTS
from pcap import in_range, read_rtp, streams
from real_asterisk import Capture
from records_fixtures import database, db_servers  # noqa: F401 -- the parametrized fixture

from records import queries
from records.migrate import upgrade
from records.store import open_engine
from simulators.clients import ResponsesSim

LOUD = 1000
CLOCK_OFFSET = time.time() - time.monotonic()  # pcap stamps are wall-clock, the simulator's monotonic


def listed_text(env: dict) -> str:
    """`callbridge calls` as an operator reads it (its summary column)."""
    listed = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "calls"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def _legs(capture_path):
    """RTP streams by leg: callbridge->Asterisk, Asterisk->sipp, sipp->Asterisk, Asterisk->callbridge."""
    legs = {"to_asterisk": [], "to_sipp": [], "from_sipp": [], "to_callbridge": []}
    for (src, dst), packets in streams(read_rtp(capture_path)).items():
        if in_range(src[1], PORTS.callbridge_rtp) and in_range(dst[1], PORTS.asterisk_rtp):
            legs["to_asterisk"].append(packets)
        elif in_range(src[1], PORTS.asterisk_rtp) and in_range(dst[1], PORTS.sipp_rtp):
            legs["to_sipp"].append(packets)
        elif in_range(src[1], PORTS.sipp_rtp):
            legs["from_sipp"].append(packets)
        elif in_range(dst[1], PORTS.callbridge_rtp):
            legs["to_callbridge"].append(packets)
    return legs


def _loud(packets):
    return [p for p in packets if p.level >= LOUD]


def _run_sipp(asterisk, wav, hold_ms, calls=1, timeout=90):
    proc = asterisk.sipp(wav, hold_ms, calls=calls, rate=20)
    output, _ = proc.communicate(timeout=timeout)
    return proc.returncode, output


def _spurt_gaps(packets):
    """Gaps between consecutive packets inside talk-spurts (a marker bit starts one)."""
    gaps = []
    for before, after in zip(packets, packets[1:], strict=False):
        if not after.marker:
            gaps.append((after.time - before.time) * 1000)
    return gaps


def test_one_call_audio_both_ways_with_clean_rtp(bridge, real_asterisk, realtime, voices, tmp_path, api):
    service = bridge.start(CALL_RECORDS_DIR=str(tmp_path / "records"))
    capture = Capture(tmp_path / "one.pcap", PORTS)
    code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=13000)
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]
    session = realtime.sessions()[-1]
    appends = audio_appends(session)
    assert appends and appends[-1][1]["total"] > 8000 * 5  # the caller's audio reached the service
    assert caller_turns(session)  # and was heard as speech
    if api == "live":  # a microphone to GPT-Live: every 20 ms, from the answer to the hang-up
        assert [e for _, d, e in session["events"] if d == "sim" and e["type"] == "<input gap>"] == []
    assert len(legs["to_asterisk"]) == 1
    sent = legs["to_asterisk"][0]
    assert {p.payload_type for p in sent} == {0}
    assert {len(p.payload) for p in sent} == {160}
    assert len({p.ssrc for p in sent}) == 1
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in zip(sent, sent[1:], strict=False))
    assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in zip(sent, sent[1:], strict=False))
    reply = _loud(sent)
    assert len(reply) >= 295  # the 6 s reply (300 frames) left callbridge
    assert_paced(_spurt_gaps(sent), tolerance=2.0)
    heard = sum(len(_loud(packets)) for packets in legs["to_sipp"])
    assert heard >= 285, f"the caller heard {heard} reply frames"
    service.wait(lambda: "call summary" in service.log())
    assert "end=caller_hangup" in service.log()
    [record] = [json.loads(path.read_text()) for path in (tmp_path / "records").glob("*.json")]
    assert [turn["role"] for turn in record["transcript"]][:2] == ["caller", "agent"]
    assert all(turn["text"] for turn in record["transcript"])
    if api == "live":  # billed by the session's seconds: the whole call
        assert record["usage"]["session_seconds"] > 10


SUMMARY_AGENTS = """
[agents.support]
numbers = ["*"]
[agents.support.summary.fields]
reason = {type = "string", enum = ["question", "complaint", "other"]}
customer_id = {type = ["string", "null"]}
callback_needed = {type = "boolean"}
"""


def test_a_real_call_becomes_a_record_in_the_call_history(
    bridge,
    real_asterisk,
    realtime,
    voices,
    database,  # noqa: F811
    tmp_path,
):
    """The issue 13 path end to end, on SQLite, MariaDB and PostgreSQL: sipp's INVITE through
    Asterisk, the worker's spool, the drainer, the database; read back with records/queries.py.
    Issue 29: the summarizer's summary and the agent's fields end up on the same row."""
    engine = open_engine(database)
    if not database.is_sqlite:
        upgrade(engine)  # `callbridge db upgrade` (the installer's step); SQLite migrates itself
    agents = tmp_path / "agents.toml"
    agents.write_text(SUMMARY_AGENTS)
    summarizer = ResponsesSim(api_key=realtime.api_key)
    try:
        service = bridge.start(
            DATABASE_URL=database.reveal(),
            AGENTS_FILE=str(agents),
            SUMMARY_MODEL="gpt-5.4-mini",
            OPENAI_RESPONSES_URL=summarizer.url,
        )
        code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=13000)
        assert code == 0, output[-2000:]

        def stored() -> list[dict]:
            try:
                found = queries.recent_calls(engine)
            except Exception:  # the drainer has not created the file or its tables yet
                return []
            return [c for c in found if c["end_reason"] == "caller_hangup" and c["summary"]]

        [row] = service.wait(stored, timeout=40)
        [call] = queries.find_calls(engine, row["call_id"])
        [asked] = summarizer.requests()
    finally:
        summarizer.stop()
        engine.dispose()
    said = asked["input"][0]["content"]
    assert all(turn["text"] in said for turn in call["turns"] if turn["side"] == "caller" and turn["text"])
    assert call["summary"] and call["summary_model"] == "gpt-5.4-mini"
    assert call["summary_fields"] == {
        "reason": "question",
        "customer_id": call["summary_fields"]["customer_id"],
        "callback_needed": True,
    }
    assert call["summary_input_tokens"] > 0 and call["summary_cost"] and call["summary_cost"] > 0
    assert call["caller"] not in json.dumps(asked)  # the caller's number is never sent
    assert call["caller"].startswith("+15550"), call["caller"]  # sipp's From: user, as Asterisk saw it
    assert call["dialled"] == "100" and call["complete"] is True and call["worker_exit"] == "exit:0"
    assert call["answered_at"] is not None and call["duration_s"] > 10
    assert {"bridged"} <= set(call["setup_ms"]), call["setup_ms"]
    assert call["frames_in"] > 500 and call["frames_out"] >= 295  # the 6 s reply
    sides = [turn["side"] for turn in call["turns"]]
    assert "caller" in sides and "agent" in sides, call["turns"]
    assert all(turn["text"] for turn in call["turns"] if turn["side"] == "agent")
    assert call["input_audio_tokens"] > 0 and call["output_audio_tokens"] > 0
    kinds = [event["kind"] for event in call["events"]]
    assert "setup_answered" in kinds and "setup_bridged" in kinds and kinds[-1] == "ended", kinds
    assert call["events"][-1]["detail"]["reason"] == "caller_hangup"
    assert call["cost_estimate"] and call["cost_estimate"] > 0 and call["currency"], call["cost_estimate"]
    # And as an operator sees it: `callbridge calls` and `callbridge calls show`.
    listed = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "calls", "--json"],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert row["call_id"] in {c["call_id"] for c in json.loads(listed.stdout)}
    shown = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "calls", "show", row["call_id"]],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    agent_text = next(turn["text"] for turn in call["turns"] if turn["side"] == "agent")
    assert agent_text[:20] in shown.stdout
    assert f"  summary   {call['summary']}" in shown.stdout and "callback_needed: true" in shown.stdout
    assert call["summary"][:20] in listed_text(service.env)
    password = database.url.password
    assert not password or password not in listed.stdout + shown.stdout + shown.stderr


def test_barge_in_stops_playback_and_truncates(bridge, real_asterisk, realtime, voices, tmp_path):
    """The barge-in on the wire, and (issue 29: the call is recorded) in the recording."""
    recordings = tmp_path / "recordings"
    bridge.start(RECORD_CALLS="true", RECORDINGS_DIR=str(recordings))
    capture = Capture(tmp_path / "barge.pcap", PORTS)
    code, output = _run_sipp(real_asterisk, voices["barge"], hold_ms=12000)
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]
    session = realtime.sessions()[-1]
    started = session_events(session, "out", "input_audio_buffer.speech_started")
    assert len(started) >= 2
    barge_at = started[1][0] + CLOCK_OFFSET
    truncates = session_events(session, "in", "conversation.item.truncate")
    assert len(truncates) == 1
    sent = legs["to_asterisk"][0]
    before = [p for p in _loud(sent) if p.time <= barge_at]
    after = [p for p in _loud(sent) if barge_at < p.time <= barge_at + 0.3]
    assert before, "the reply was playing when the caller spoke"
    assert not after or max(p.time for p in after) - barge_at <= 0.06  # target 40 ms; slack for CPU steal
    played = len(before) + len(after)
    assert abs(truncates[0][1]["audio_end_ms"] - played * 20) <= 40
    assert session_events(session, "out", "conversation.item.truncated")
    _the_recording_holds_what_was_sent_and_heard(legs, recordings)


def _the_recording_holds_what_was_sent_and_heard(legs: dict, recordings) -> None:
    """The call's recording against the capture: its agent channel is what callbridge sent,
    frame for frame, and correlates with what sipp received; its caller channel correlates
    with what sipp sent; the barged-in reply stops in the file after as many loud frames as
    the caller heard of it, as the caller's second sentence begins."""
    import wave
    from array import array

    from call_worker.g711 import ulaw

    deadline = time.monotonic() + 20
    while not (found := list(recordings.glob("*-*-*/*.wav"))) and time.monotonic() < deadline:
        time.sleep(0.1)
    [path] = found
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        samples = array("h", wav.readframes(wav.getnframes()))
    caller, agent = samples[0::2], samples[1::2]
    decode = [ulaw(code) for code in range(256)]
    [sent] = legs["to_asterisk"]
    ours = array("h", (decode[b] for p in sent for b in p.payload))
    size = min(len(ours), len(agent))
    assert size > 8000 * 8 and ours[:size] == agent[:size]
    # What sipp heard and said, each leg's streams in order (Asterisk may start a new one
    # for the bridge).
    heard = [p for stream in sorted(legs["to_sipp"], key=lambda s: s[0].time) for p in stream]
    said = [p for stream in sorted(legs["from_sipp"], key=lambda s: s[0].time) for p in stream]
    agent_match = _correlation(_levels(agent), [p.level for p in heard])
    caller_match = _correlation(_levels(caller), [p.level for p in said])
    print(f"agent channel ~ what sipp heard: {agent_match}; caller channel ~ what sipp sent: {caller_match}")
    assert agent_match[0] >= 0.9 and caller_match[0] >= 0.9
    loud_caller = [i for i, level in enumerate(_levels(caller)) if level >= LOUD]
    onset = next(b for a, b in zip(loud_caller, loud_caller[1:], strict=False) if b - a > 75)  # after 1.5 s
    loud_agent = [i for i, level in enumerate(_levels(agent)) if level >= LOUD]
    first_reply = [i for i in loud_agent if i < onset + 50]
    cut = max(first_reply)
    lag = agent_match[1]  # the phone's stream against the file, in frames
    heard_first = sum(p.level >= LOUD for p in heard[: max(0, cut + 1 - lag)])
    print(f"second sentence at frame {onset}, the reply's last loud frame {cut}; heard {heard_first}")
    assert 0 <= cut - onset <= 25
    assert abs(len(first_reply) - heard_first) <= 2, (len(first_reply), heard_first)


def test_under_gpt_live_our_own_detection_flushes_playback_within_60_ms(
    bridge, real_asterisk, realtime, voices, tmp_path
):
    """GPT-Live says nothing when the caller talks over the agent: the worker hears it
    (call_worker/voice_activity.py) and the reply stops at the next frame, timed here on the
    wire from the caller's speech reaching callbridge to our last loud frame."""
    service = bridge.start(OPENAI_API="live", CALL_RECORDS_DIR=str(tmp_path / "records"))
    capture = Capture(tmp_path / "barge-live.pcap", PORTS)
    code, output = _run_sipp(real_asterisk, voices["barge"], hold_ms=12000)
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]
    incoming = _loud(legs["to_callbridge"][0])
    # The second utterance: the first loud frame after a second and a half without one.
    barge_at = next(b.time for a, b in zip(incoming, incoming[1:], strict=False) if b.time - a.time > 1.5)
    sent = _loud(legs["to_asterisk"][0])
    before = [p for p in sent if p.time <= barge_at]
    after = [p for p in sent if barge_at < p.time <= barge_at + 0.5]
    assert before and before[-1].time > barge_at - 0.1, "the reply was playing when the caller spoke"
    stop_ms = (max(p.time for p in after) - barge_at) * 1000 if after else 0.0
    assert stop_ms <= 60, f"our playback went on {stop_ms:.0f} ms after the caller's speech reached us"
    session = realtime.sessions()[-1]
    assert [e for _, d, e in session["events"] if d == "sim" and e["type"] == "<stopped for the caller>"]
    service.wait(lambda: "call summary" in service.log())
    [record] = [json.loads(path.read_text()) for path in (tmp_path / "records").glob("*.json")]
    agent = [turn for turn in record["transcript"] if turn["role"] == "agent"]
    assert agent[0]["interrupted"] and len(agent[0]["heard"]) < len(agent[0]["text"])


def test_caller_hangs_up_mid_reply(bridge, real_asterisk, voices, tmp_path):
    service = bridge.start()
    capture = Capture(tmp_path / "hangup.pcap", PORTS)
    code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=6500)
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]
    reply = _loud(legs["to_asterisk"][0])
    assert 20 < len(reply) < 300  # cut short by the hang-up
    service.wait(lambda: "call summary" in service.log())
    assert "end=caller_hangup" in service.log()


def test_max_call_seconds_ends_the_call_with_a_bye(bridge, real_asterisk, voices):
    service = bridge.start(MAX_CALL_SECONDS="5")
    started = time.monotonic()
    code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=40000)
    elapsed = time.monotonic() - started
    assert code == 0, output[-2000:]  # sipp got a BYE and answered it: the far_bye path succeeded
    assert elapsed < 5 + 20 + 5
    service.wait(lambda: "call summary" in service.log())
    assert "end=max_call_seconds" in service.log()


def test_twenty_concurrent_calls_have_audio_both_ways(bridge, real_asterisk, realtime, voices, tmp_path):
    """Twenty calls at once, twice; in each round ten are recorded (issue 29: an agent with
    `record = true` on 100, the others on 200), and the recorded calls are paced at the
    caller as the unrecorded ones are. The two sipp processes swap roles between the
    rounds: measured here, whichever sipp starts first sees its gaps up to 1 ms worse at the
    p99, recorded or not, and only the swap cancels that out.

    As a benchmark (docs/performance.md, "Issue 29"): CALLBRIDGE_PACING_ROUNDS=12 runs twelve
    rounds instead of two, and prints each round's difference and the whole run's."""
    import statistics

    rounds = int(os.environ.get("CALLBRIDGE_PACING_ROUNDS") or 2)
    assert rounds >= 2 and rounds % 2 == 0, "an even number of rounds: the sipp roles swap each round"

    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[agents.recorded]\nnumbers = ["100"]\nrecord = true\n[agents.plain]\nnumbers = ["*"]\n'
    )
    recordings = tmp_path / "recordings"
    service = bridge.start(AGENTS_FILE=str(agents), RECORDINGS_DIR=str(recordings))
    # The first sipp's RTP ports are the lower half of the range (tests/asterisk/real_asterisk.py).
    middle = (PORTS.sipp_rtp[0] + PORTS.sipp_rtp[1]) // 2
    p99 = {"recorded": [], "plain": []}
    each_round = []  # (recorded median - plain median) of each round, ms
    for round_, recorded_second in enumerate([False, True] * (rounds // 2)):
        counted = {kind: len(found) for kind, found in p99.items()}
        realtime.reset()
        capture = Capture(tmp_path / f"twenty-{round_}.pcap", PORTS)
        first = real_asterisk.sipp(
            voices["question"], 14000, calls=10, rate=20, number="200" if recorded_second else "100"
        )
        second = real_asterisk.sipp(
            voices["question"],
            14000,
            calls=10,
            rate=20,
            number="100" if recorded_second else "200",
            second=True,
        )
        for proc in (first, second):
            output, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, output[-2000:]
        legs = _legs(capture.stop())
        sessions = realtime.sessions()
        assert (
            len([s for s in sessions if session_events(s, "out", "input_audio_buffer.speech_started")]) == 20
        )
        assert len(legs["to_asterisk"]) == 20
        assert all(len(_loud(packets)) >= 290 for packets in legs["to_asterisk"])
        assert len([p for p in legs["to_sipp"] if len(_loud(p)) >= 250]) == 20
        for packets in legs["to_asterisk"]:
            assert_paced(_spurt_gaps(packets), tolerance=3.0)
        service.wait(lambda n=20 * (round_ + 1): service.log().count("call summary") == n, timeout=15)
        assert len(list(recordings.glob("*-*-*/*.wav"))) == 10 * (round_ + 1)
        for packets in legs["to_sipp"]:
            if len(_loud(packets)) >= 250:
                lower = packets[0].dst[1] <= middle
                p99["recorded" if lower != recorded_second else "plain"].append(_p99(_spurt_gaps(packets)))
        this = {kind: found[counted[kind] :] for kind, found in p99.items()}
        each_round.append(statistics.median(this["recorded"]) - statistics.median(this["plain"]))
    assert len(p99["recorded"]) == len(p99["plain"]) == 10 * rounds
    on, off = statistics.median(p99["recorded"]), statistics.median(p99["plain"])
    print(
        f"gaps at the caller, p99 per call (ms): recorded {sorted(p99['recorded'])} plain {sorted(p99['plain'])}"
    )
    print(
        f"recorded minus unrecorded, median p99 per round (ms): {[round(d, 2) for d in each_round]}; "
        f"over all {rounds} rounds: {on - off:+.2f} (recorded {on:.2f}, unrecorded {off:.2f}); "
        f"median of the rounds {statistics.median(each_round):+.2f}"
    )
    # The target is 0.3 ms. On this 2-core VM the difference swings by about 1 ms
    # from run to run, both ways (+1.05, -0.79, -0.84, +0.23, -0.16, +0.12 measured), so a
    # 0.3 ms bound fails on noise, not on recording: the bound here catches a real cost (a
    # blocked media thread shows as several ms) without failing on that noise.
    assert abs(on - off) <= 1.5, f"median p99: recorded {on:.2f} ms, unrecorded {off:.2f} ms"


def test_worker_killed_mid_call_is_hung_up(bridge, real_asterisk, voices):
    service = bridge.start()
    sipp = real_asterisk.sipp(voices["question"], hold_ms=40000)
    rows = service.wait(
        lambda: (r := bridge.note_workers(service)) and r[0]["frames_out"] > 50 and r, timeout=20
    )
    killed_at = time.monotonic()
    os.kill(rows[0]["pid"], signal.SIGKILL)
    output, _ = sipp.communicate(timeout=30)
    assert sipp.returncode == 0, output[-2000:]  # the BYE came from Asterisk after our hang-up
    assert time.monotonic() - killed_at < 5
    service.wait(lambda: "died (signal:SIGKILL)" in service.log())


def test_restart_with_live_calls_leaves_nothing_and_takes_new_calls(bridge, real_asterisk, voices, tmp_path):
    first = bridge.start()
    sipp = real_asterisk.sipp(voices["question"], hold_ms=40000, calls=3)
    first.wait(
        lambda: (
            len(bridge.note_workers(first)) == 3
            and all(r["phase"] == "active" for r in first.status()["calls"])
        ),
        timeout=20,
    )
    first.proc.kill()  # the supervisor dies; its workers end their calls
    first.proc.wait()
    output, _ = sipp.communicate(timeout=30)
    assert sipp.returncode == 0, output[-2000:]
    second = bridge.start()
    bridge.assert_nothing_left()
    capture = Capture(tmp_path / "after.pcap", PORTS)
    code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=12000)
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]
    assert len(_loud(legs["to_asterisk"][0])) >= 295
    second.wait(lambda: "end=caller_hangup" in second.log())


def test_a_crash_of_everything_is_reconciled_at_the_next_start(bridge, real_asterisk, voices):
    """Supervisor and workers all gone at once (a host-level kill): Asterisk keeps the
    callers in Stasis with their bridges and externalMedia channels; the next start must
    find and remove all of it, and the callers get a BYE."""
    first = bridge.start()
    sipp = real_asterisk.sipp(voices["question"], hold_ms=60000, calls=2)
    rows = first.wait(
        lambda: (
            (r := bridge.note_workers(first)) and len(r) == 2 and all(x["phase"] == "active" for x in r) and r
        ),
        timeout=20,
    )
    for row in rows:  # freeze the workers so that nobody cleans up
        os.kill(row["pid"], signal.SIGSTOP)
    first.proc.kill()
    first.proc.wait()
    for row in rows:
        os.kill(row["pid"], signal.SIGKILL)
    left = real_asterisk.leftovers()
    assert len(left["bridges"]) == 2 and len(left["channels"]) == 4  # 2 callers + 2 UnicastRTP
    second = bridge.start()
    second.wait(lambda: "reconciled with Asterisk" in second.log())
    bridge.assert_nothing_left()
    output, _ = sipp.communicate(timeout=30)
    assert sipp.returncode == 0, output[-2000:]  # both callers were sent a BYE
    assert "removed 2 shared-memory segments left by an earlier run" in second.log()


def test_two_instances_share_asterisk_and_a_restart_spares_the_other(bridge, real_asterisk, voices, tmp_path):
    """Instance A (app openai-app) is SIGKILLed mid-call and started again while instance B
    (app peer-app, numbers 8...) is playing replies: B's callers hear every frame."""
    first = bridge.start(workdir=tmp_path / "a")
    peer = bridge.start(workdir=tmp_path / "b", ARI_APP_NAME="peer-app")
    capture = Capture(tmp_path / "two.pcap", PORTS)
    peer_sipp = real_asterisk.sipp(voices["question"], hold_ms=16000, calls=2, number="800")
    first_sipp = real_asterisk.sipp(voices["silent"], hold_ms=40000, calls=2, second=True)  # greeting only
    first.wait(lambda: len(bridge.note_workers(first)) == 2, timeout=20)
    peer.wait(
        lambda: len(r := bridge.note_workers(peer)) == 2 and all(x["frames_out"] > 150 for x in r), timeout=30
    )
    first.proc.kill()  # mid-reply for B's callers; A's workers end their own calls
    first.proc.wait()
    again = bridge.start(workdir=tmp_path / "a")
    again.wait(lambda: again.status()["supervisor"]["ari"] == "connected")
    output, _ = first_sipp.communicate(timeout=40)
    assert first_sipp.returncode == 0, output[-2000:]
    output, _ = peer_sipp.communicate(timeout=60)
    assert peer_sipp.returncode == 0, output[-2000:]
    legs = _legs(capture.stop())
    whole = [packets for packets in legs["to_sipp"] if len(_loud(packets)) >= 285]
    assert len(whole) == 2, [len(_loud(p)) for p in legs["to_sipp"]]  # B's two replies, uncut
    peer.wait(lambda: peer.log().count("end=caller_hangup") == 2, timeout=15)


def test_a_phased_reply_reaches_the_caller_without_a_gap(bridge, real_asterisk, realtime, voices, tmp_path):
    """gpt-realtime-2.x's two items of one reply (a 1.5 s preamble, 300 ms of thinking, the
    6 s answer) leave callbridge as one unbroken run of frames, and the caller hears them."""
    realtime.reply(preamble_ms=1500, think_ms=300)
    try:
        service = bridge.start()
        capture = Capture(tmp_path / "phased.pcap", PORTS)
        code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=13000)
        legs = _legs(capture.stop())
        session = realtime.sessions()[-1]
    finally:
        realtime.reset()  # the session's other tests get unphased replies
    assert code == 0, output[-2000:]
    added = [e["item"] for _, e in session_events(session, "out", "response.output_item.added")]
    assert [i.get("phase") for i in added if i["type"] == "message"][:2] == ["commentary", "final_answer"]
    assert not session_events(session, "in", "conversation.item.truncate")
    sent = legs["to_asterisk"][0]
    loud_at = [i for i, p in enumerate(sent) if p.level >= LOUD]
    first, last = loud_at[0], loud_at[-1]
    assert len(loud_at) >= 370  # 375 frames: the preamble and the answer, whole
    assert last - first + 1 == len(loud_at)  # every frame between them loud: no gap, no overlap
    assert_paced(_spurt_gaps(sent[first : last + 1]), tolerance=2.0)
    heard = sum(len(_loud(packets)) for packets in legs["to_sipp"])
    assert heard >= 360, f"the caller heard {heard} reply frames"
    service.wait(lambda: "call summary" in service.log())
    assert "underruns=0 " in service.log()  # no frame was due while the reply had none ready


def _gaps_ms(packets):
    return [(after.time - before.time) * 1000 for before, after in zip(packets, packets[1:], strict=False)]


def test_a_stalled_worker_sends_the_caller_no_burst(bridge, real_asterisk, voices, tmp_path):
    """A worker stopped for 100 ms in the middle of a reply (SIGSTOP, then SIGCONT) goes on
    with its schedule restarted: the caller gets one gap, and no two frames less than 10 ms
    apart, as they leave callbridge and as Asterisk relays them (a catch-up burst would
    overflow the phone's jitter buffer: call_worker/media.py)."""
    service = bridge.start()
    capture = Capture(tmp_path / "stall.pcap", PORTS)
    sipp = real_asterisk.sipp(voices["question"], hold_ms=9000)
    # Past the 1.5 s greeting (75 frames), into the 6 s reply to the question.
    rows = service.wait(
        lambda: (r := bridge.note_workers(service)) and r[0]["frames_out"] > 130 and r, timeout=20
    )
    os.kill(rows[0]["pid"], signal.SIGSTOP)
    try:
        time.sleep(0.1)  # the stall itself
    finally:
        os.kill(rows[0]["pid"], signal.SIGCONT)
    output, _ = sipp.communicate(timeout=30)
    assert sipp.returncode == 0, output[-2000:]
    legs = _legs(capture.stop())
    for leg in ("to_asterisk", "to_sipp"):
        packets = max(legs[leg], key=len)  # the RTP stream (RTCP, on the odd ports, is a few packets)
        gaps = _gaps_ms(packets)
        assert len(gaps) > 300 and max(gaps) >= 90, f"{leg}: the stall is not seen ({max(gaps):.1f} ms)"
        assert min(gaps) >= 10.0, f"{leg}: frames {min(gaps):.2f} ms apart (a burst)"


def _levels(samples) -> list[float]:
    """Per 20 ms frame, the level the pcap reader gives a packet (simulators/g711.py::level)."""
    return [
        sum(min(255, abs(v) >> 7) for v in samples[i : i + 160]) * 128 / 160
        for i in range(0, len(samples) - 159, 160)
    ]


def _correlation(ours: list[float], theirs: list[float], lags: int = 25) -> tuple[float, int]:
    """(the best Pearson correlation of two level envelopes, at which lag in frames)."""
    import statistics

    best = (-1.0, 0)
    for lag in range(-lags, lags + 1):
        a = ours[max(0, lag) :]
        b = theirs[max(0, -lag) :]
        size = min(len(a), len(b))
        if size < 100:
            continue
        try:
            best = max(best, (statistics.correlation(a[:size], b[:size]), lag))
        except statistics.StatisticsError:  # a constant stretch
            continue
    return best


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
