"""Issue 26 on the real Asterisk: the caller's keypad, and a tool's hold sound.

sipp presses keys as a phone does
(RFC 4733 telephone-events in the RTP stream, play_dtmf); Asterisk raises ChannelDtmfReceived
on the caller's channel (the bridge passes DTMF events); the supervisor hands each press to
the call's worker over the event channel. A collected account number reaches the model as
the caller's turn, and a key mapped to a transfer puts the caller through without the model.
While an HTTP tool with a `hold_sound` hangs, Asterisk plays the sound on the call's bridge:
the caller hears it while callbridge itself sends silence."""

from __future__ import annotations

import json

from analysis import session_events
from conftest import PORTS
from http_services import Services
from real_asterisk import Capture
from test_e2e import _legs, _loud
from test_transfers import _ended, _frequency

AGENTS = """
[agents.isp]
numbers = ["*"]
instructions = "Soporte de una operadora."

[agents.isp.transfer.reception]
context = "callbridge-dest"
extension = "reception"
timeout = 10

[agents.isp.dtmf]
"0" = { transfer = "reception" }
collect = { until = "#", timeout_seconds = 5, max_digits = 12 }
"""


def _notes(session: dict) -> list[str]:
    texts = []
    for _, event in session_events(session, "in", "conversation.item.create"):
        item = event["item"]
        if item.get("role") == "user":
            texts += [part.get("text", "") for part in item.get("content", [])]
    return texts


def test_an_account_number_reaches_the_model_and_a_mapped_key_transfers(
    bridge, real_asterisk, realtime, voices, tmp_path
):
    realtime.reset()
    agents = tmp_path / "agents.toml"
    agents.write_text(AGENTS)
    service = bridge.start(AGENTS_FILE=str(agents), STATE_DIR=str(tmp_path / "state"))
    capture = Capture(tmp_path / "keys.pcap", PORTS)
    # The greeting plays first; then the caller types an account number, then asks for a person.
    proc = real_asterisk.sipp(
        voices["question"], hold_ms=15000, keys=((4000, "55501#"), (5000, "0")), loops=-1
    )
    output, _ = proc.communicate(timeout=120)
    legs = _legs(capture.stop())
    assert proc.returncode == 0, output[-2000:]
    _ended(service, "transferred")
    session = realtime.sessions()[-1]
    notes = _notes(session)
    assert any("55501" in note for note in notes), notes  # the digits, collected up to the #
    assert any("pressed 0" in note and "reception" in note for note in notes), notes
    log = service.log()
    assert "key 0: transfer" in log and "keypad: digits given to the model" in log
    ours = legs["to_asterisk"][0]
    gone_at = ours[-1].time  # our media channel left the bridge: the caller is with reception
    heard = [p for packets in legs["to_sipp"] for p in packets]
    after = [p for p in _loud(heard) if p.time > gone_at + 0.2]
    assert len(after) > 5 * 50, f"the caller heard {len(after)} frames after the transfer"
    assert abs(_frequency(after) - 1000) < 60  # the destination's tone


HOLD_AGENT = """
[agents.isp]
numbers = ["*"]

[agents.isp.tools.line_status]
description = "The state of a customer's line"
url = "{base}/hang"
timeout_seconds = 5
hold_sound = "sound:pls-hold-while-try"
"""


def test_while_a_tool_hangs_the_caller_hears_the_hold_sound_asterisk_plays(
    bridge, real_asterisk, realtime, voices, tmp_path
):
    realtime.reset()
    import requests

    requests.get(
        f"{realtime.base}/sim/tool-calls",
        params={"name": "line_status", "arguments": json.dumps({}), "after_turn": 1},
        timeout=5,
    ).raise_for_status()
    services = Services()
    try:
        agents = tmp_path / "agents.toml"
        agents.write_text(HOLD_AGENT.format(base=services.base))
        service = bridge.start(AGENTS_FILE=str(agents))
        capture = Capture(tmp_path / "hold.pcap", PORTS)
        proc = real_asterisk.sipp(voices["question"], hold_ms=16000)
        output, _ = proc.communicate(timeout=90)
        legs = _legs(capture.stop())
    finally:
        services.stop()
    assert proc.returncode == 0, output[-2000:]
    assert "hold sound sound:pls-hold-while-try while the tool runs" in service.log()
    ours = {round(p.time * 50) for p in _loud(legs["to_asterisk"][0])}  # 20 ms slots we spoke in
    heard = sorted(p.time for packets in legs["to_sipp"] for p in _loud(packets))
    # Loud frames at the caller in slots where callbridge sent silence: Asterisk's sound.
    hold = [
        t
        for t in heard
        if round(t * 50) not in ours and round(t * 50) - 1 not in ours and round(t * 50) + 1 not in ours
    ]
    assert len(hold) > 50, f"{len(hold)} frames of the hold sound"  # more than a second of it
    session = realtime.sessions()[-1]
    [output_event] = [
        e
        for _, e in session_events(session, "in", "conversation.item.create")
        if e["item"].get("type") == "function_call_output"
    ]
    assert "did not answer within 5 s" in output_event["item"]["output"]
