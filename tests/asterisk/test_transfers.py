"""Issue 15 on the real Asterisk: transfers, end_call and the fallback.

The destinations are extensions of the test dialplan (tests/asterisk/config/extensions.conf,
context `callbridge-dest`) that answer with a tone of their own, so what the sipp caller
received after our externalMedia channel left tells who it was talking to. The simulated
Realtime server calls the tools when the test scripts it (/sim/tool-calls)."""

from __future__ import annotations

import json

import pytest
import requests
from analysis import session_events, tool_outputs_sent
from conftest import PORTS
from real_asterisk import Capture
from test_e2e import _legs, _loud, _run_sipp

from simulators import g711

AGENTS = """
[agents.front-desk]
numbers = ["*"]
instructions = "You answer for the clinic's front desk."

[agents.front-desk.transfer.reception]
context = "callbridge-dest"
extension = "reception"
description = "the front desk, a person"
timeout = 10

[agents.front-desk.transfer.busy-line]
context = "callbridge-dest"
extension = "busy"

[agents.front-desk.transfer.nobody]
context = "callbridge-dest"
extension = "noanswer"
timeout = 3
"""


def _agents(tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text(AGENTS)
    return str(path)


def _script(realtime, name: str, arguments: dict, after_turn: int = 1) -> None:
    reply = requests.get(
        f"{realtime.base}/sim/tool-calls",
        params={"name": name, "arguments": json.dumps(arguments), "after_turn": after_turn},
        timeout=5,
    )
    reply.raise_for_status()


def _frequency(packets) -> float:
    """The dominant frequency of some packets' audio, by zero crossings (a pure tone)."""
    samples = []
    for packet in packets:
        samples.extend(g711.decode(packet.payload))
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if (a < 0) != (b < 0))
    return crossings / 2 / (len(samples) / 8000) if samples else 0.0


def _ended(service, reason: str) -> None:
    service.wait(lambda: "call summary" in service.log(), timeout=30)
    assert f"end={reason}" in service.log(), service.log()[-3000:]


def test_a_transfer_reaches_the_destination_after_our_media_channel_is_gone(
    bridge, real_asterisk, realtime, voices, tmp_path, api
):
    realtime.reset()
    _script(realtime, "transfer_call", {"destination": "reception"})
    service = bridge.start(AGENTS_FILE=_agents(tmp_path))
    capture = Capture(tmp_path / "transfer.pcap", PORTS)
    code, output = _run_sipp(
        real_asterisk, voices["question"], hold_ms=21000, timeout=120
    )  # the transfer comes at about 8 s
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]
    _ended(service, "transferred")
    ours = legs["to_asterisk"][0]
    gone_at = ours[-1].time  # our last packet: the externalMedia channel left the bridge
    heard = [p for packets in legs["to_sipp"] for p in packets]
    after = [p for p in _loud(heard) if p.time > gone_at + 0.2]
    assert len(after) > 5 * 50, f"the caller heard {len(after)} frames after the transfer"
    assert abs(_frequency(after) - 1000) < 60  # the destination's own tone, not the agent
    outputs = tool_outputs_sent(realtime.sessions()[-1])
    assert outputs and "dialling" in outputs[0][1]["output"]
    # The pair was watched: the caller's hang-up (sipp, after hold_ms) removed everything
    # (the fixture checks no channel or bridge is left).


@pytest.mark.parametrize(
    ("destination", "hold_ms", "told"),
    [("busy-line", 16000, "busy"), ("nobody", 22000, "nobody answered")],
    ids=["busy", "never-answers"],
)
def test_a_destination_that_is_busy_or_never_answers_keeps_the_caller_with_the_agent(
    bridge, real_asterisk, realtime, voices, tmp_path, destination, hold_ms, told
):
    realtime.reset()
    _script(realtime, "transfer_call", {"destination": destination})
    service = bridge.start(AGENTS_FILE=_agents(tmp_path))
    code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=hold_ms, timeout=90)
    assert code == 0, output[-2000:]
    _ended(service, "caller_hangup")
    session = realtime.sessions()[-1]
    said = [
        e
        for _, e in session_events(session, "in", "response.create")
        if told in str((e.get("response") or {}).get("instructions", ""))
    ]
    assert said, f"the agent was told: {told}"


def test_end_call_hangs_up_after_the_goodbye_s_last_frame(bridge, real_asterisk, realtime, voices, tmp_path):
    realtime.reset()
    _script(realtime, "end_call", {})
    service = bridge.start(AGENTS_FILE=_agents(tmp_path))
    capture = Capture(tmp_path / "end.pcap", PORTS)
    code, output = _run_sipp(real_asterisk, voices["question"], hold_ms=40000, timeout=90)
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]  # sipp answered our BYE
    _ended(service, "agent_hangup")
    sent = _loud(legs["to_asterisk"][0])
    heard = _loud([p for packets in legs["to_sipp"] for p in packets])
    # The goodbye (the simulator's 1.5 s reply to our response.create, 75 frames) is the last
    # thing we sent, and every frame of it reached the caller before the hang-up.
    goodbye = [p for p in sent if p.time > sent[-1].time - 1.6]
    assert len(goodbye) >= 70
    assert len([p for p in heard if p.time >= goodbye[0].time]) >= len(goodbye) - 2


def test_over_capacity_a_caller_lands_in_the_fallback(bridge, real_asterisk, realtime, voices, tmp_path):
    realtime.reset()
    service = bridge.start(MAX_CONCURRENT_CALLS="1", FALLBACK_DESTINATION="callbridge-dest,voicemail,1")
    capture = Capture(tmp_path / "fallback.pcap", PORTS)
    first = real_asterisk.sipp(voices["question"], 12000)
    service.wait(lambda: service.status()["calls"], timeout=20)
    second = real_asterisk.sipp(voices["question"], 6000, second=True)  # its own SIP and RTP ports
    output, _ = second.communicate(timeout=60)
    code = second.returncode
    first.communicate(timeout=60)
    legs = _legs(capture.stop())
    assert code == 0, output[-2000:]
    tones = [_frequency(_loud(packets)) for packets in legs["to_sipp"] if len(_loud(packets)) > 100]
    assert any(abs(f - 1400) < 80 for f in tones), tones  # the second caller heard voicemail's tone
    assert "fallback" in service.log()
