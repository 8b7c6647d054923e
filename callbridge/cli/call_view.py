"""One stored call as `callbridge calls show` writes it: its figures, then one timeline of
its turns and of what the agent did between them (tool calls, transfers, fallbacks).

Apart from the commands (callbridge/cli/records_commands.py), which only find the call and print
these lines, so that how a call reads is in one place.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, tzinfo

from callbridge.summary_spec import field_text

# The call's events (records/spool.py::call_events) that go in the timeline: what the agent
# did and a fallback the call was sent to, not the set-up marks or the end.
ACTION_EVENTS = ("tool_call", "dtmf", "transfer_dialled", "transfer_failed", "transferred", "fallback")


def call_lines(call: dict, zone: tzinfo | None) -> list[str]:
    """The lines of one call (a row of records/queries.py::find_calls), times in `zone`."""
    lines = [f"call {call['call_id']} (instance {call['instance']})"]
    for label, key in (
        ("caller", "caller"),
        ("dialled", "dialled"),
        ("model", "model"),
        ("end", "end_reason"),
    ):
        lines.append(f"  {label:<9} {call[key]}")
    lines.append(
        f"  started   {local_time(call['started_at'], zone)}   answered {local_time(call['answered_at'], zone)}"
    )
    lines.append(
        f"  ended     {local_time(call['ended_at'], zone)}   {call['duration_s']:.1f} s, worker {call['worker_exit']}"
    )
    if not call["complete"]:
        lines.append("  (rebuilt from the journal after the worker died: turns up to the crash)")
    if call["failure"]:
        lines.append(f"  failure   {call['failure']}")
    tokens = ", ".join(
        f"{k.removesuffix('_tokens')} {call[k]}"
        for k in call
        if k.endswith("_tokens") and not k.startswith("summary_")
    )
    lines.append(f"  tokens    {tokens}")
    if call["transcription_seconds"] or call["transcription_model"]:
        lines.append(f"  transcr.  {_transcription(call)}")
    if call.get("session_seconds"):  # GPT-Live: billed by the session's time
        lines.append(f"  session   {call['session_seconds']:.0f} s of GPT-Live (billed by the second)")
    if call.get("recording_path"):
        lines.append(
            f"  recording {call['recording_seconds']:.1f} s, {call['recording_state']}: {call['recording_path']}"
            " (callbridge calls audio)"
        )
    if call["cost_estimate"] is not None:
        lines.append(f"  cost      {call['cost_estimate']:.4f} {call['currency']}")
    lines.append(
        f"  audio     frames in {call['frames_in']} out {call['frames_out']}, underruns {call['underruns']}, barge-ins {call['barge_ins']}"
    )
    lines += summary_lines(call)
    timeline = []  # the turns, with what the agent did (tool calls, transfers) between them
    for turn in call["turns"]:
        text = turn["text"]
        if turn.get("phase") == "preamble":  # said while the model worked, before its answer
            text = f"(preamble) {text}"
        if turn["interrupted"]:
            text += (
                f"  [interrupted; heard: {turn['heard']!r}]"
                if turn["heard"] is not None
                else "  [interrupted]"
            )
        timeline.append((turn["offset_ms"], turn["side"], text))
    for event in call.get("events") or []:
        if event["kind"] in ACTION_EVENTS:
            timeline.append((event["offset_ms"], "event", event_text(event)))
    for offset_ms, side, text in sorted(timeline, key=lambda item: item[0]):
        lines.append(f"  {offset_ms / 1000:7.1f}s {side:<6} {text}")
    for delivery in call.get("webhooks") or []:  # webhooks/sender.py, by receiver key
        fate = "delivered" if delivery["delivered"] else "given up"
        lines.append(
            f"  webhook   {delivery['event_type']} to {delivery['target']}: {fate} "
            f"{local_time(delivery['finished_at'], zone)} after {delivery['attempts']} attempts ({delivery['outcome']})"
        )
    return lines


def summary_lines(call: dict) -> list[str]:
    """The call's post-call summary and fields (summaries/), when it has one."""
    if not call.get("summary"):
        return []
    cost = call.get("summary_cost")
    if cost is None:
        price = "not priced (RECORDS_PRICES)"
    elif call.get("cost_estimate") is None:  # the call's own model has no price: no estimate to add to
        price = f"{cost:.4f} {call['currency']}"
    else:
        price = f"{cost:.4f} {call['currency']}, in the cost"
    lines = [
        f"  summary   {call['summary']}",
        f"            ({call['summary_model']}, {call['summary_input_tokens']}+{call['summary_output_tokens']} tokens, {price})",
    ]
    for name, value in (call.get("summary_fields") or {}).items():
        lines.append(f"  {'':<9} {name}: {field_text(value)}")
    return lines


def local_time(value: datetime | None, zone: tzinfo | None) -> str:
    """A stored time (naive UTC) as a local date and time; empty for none."""
    if value is None:
        return ""
    return value.replace(tzinfo=UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def event_text(event: dict) -> str:
    """One event of `calls show`'s timeline, e.g. `transfer_failed reception: the line is busy`."""
    detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
    if event["kind"] == "tool_call":
        return f"tool {detail.get('name', '?')}({detail.get('arguments', '')}) -> {json.dumps(detail.get('result'))}"
    if event["kind"] == "dtmf":  # a secret's digits were never kept: only their count
        if "digits" in detail:
            digits = detail["digits"]
            return (
                f"keys {'*' * digits} (secret, {digits} digits)" if detail.get("secret") else f"keys {digits}"
            )
        action = f" -> {detail['action']} {detail.get('to') or ''}".rstrip() if detail.get("action") else ""
        return f"key {detail.get('key', '?')}{action}"
    where = detail.get("destination") or detail.get("to") or ""
    why = detail.get("why") or detail.get("outcome") or ""
    return " ".join(part for part in (event["kind"], f"{where}:" if why else where, why) if part)


def _transcription(call: dict) -> str:
    """The caller's transcription: minutes, model and their part of the cost."""
    minutes = call["transcription_seconds"] / 60
    model = f" ({call['transcription_model']})" if call["transcription_model"] else ""
    if call["transcription_cost"] is not None:
        price = f"{call['transcription_cost']:.4f} {call['currency']}, in the cost"
    elif call["transcription_model"]:
        price = "not priced (RECORDS_PRICES: transcription_minute)"
    else:
        price = "cost not known (stored before it was kept)"
    return f"{minutes:.2f} min{model}: {price}"
