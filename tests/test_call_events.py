"""A call's events (tool calls, transfers) survive a crash: journaled as they happen and
placed in the record rebuilt from the journal (records/spool.py); hostile text the model or
an operator writes cannot crash the call or the service."""

from __future__ import annotations

import json

import pytest

from call_worker.adapter import ToolCall
from call_worker.tools import TRANSFER_CALL, ToolBox
from callbridge.agent_file import AgentFileError, load_agents_file
from callbridge.agents import Agent, Destination, DialplanTarget
from callbridge.ids import InstanceIds
from records.crashed import complete_crashed
from records.spool import CallSpool


def test_events_journaled_during_a_call_are_in_the_record_rebuilt_after_a_crash(tmp_path):
    header = {"call_id": "c1", "instance": "clinic", "started_at": 1_700_000_000.0}
    spool = CallSpool(tmp_path, header)
    spool.events(
        [
            {"offset_ms": 900, "kind": "tool_call", "detail": {"name": "transfer_call"}},
            {"offset_ms": 950, "kind": "transfer_dialled", "detail": {"destination": "reception"}},
        ]
    )
    complete_crashed(tmp_path, dict(header), {}, "signal:SIGKILL")
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    kinds = [e["kind"] for e in record["events"]]
    assert kinds == ["tool_call", "transfer_dialled", "ended"]
    assert record["events"][1]["detail"] == {"destination": "reception"}
    assert "journaled_events" not in record


def test_arguments_nested_without_end_are_an_unknown_destination_not_a_crash():
    reception = Destination("reception", DialplanTarget("from-internal", "200"))
    toolbox = ToolBox(
        Agent(name="desk", transfers={"reception": reception}), lambda a: None, lambda k, d: None
    )
    output, respond = toolbox.handle(ToolCall("c", TRANSFER_CALL, "[" * 1500))
    assert "unknown destination" in output["error"] and respond


def test_an_agents_file_nested_without_end_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(AgentFileError) as found:
        load_agents_file(path)
    assert str(path) in str(found.value)


def test_a_transfer_channel_id_with_other_digits_is_not_ours():
    ids = InstanceIds("clinic")
    assert ids.transfer_of(ids.transfer_channel("100.1", 2)) == ("100.1", 2)
    assert ids.transfer_of("cb.clinic.tr\u00b2.100.1") is None
