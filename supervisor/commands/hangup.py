"""`hangup`: end one live call, or all of them, as the operator.

Request:  {"cmd": "hangup", "call_id": "<id>"}  or  {"cmd": "hangup", "all": true}
Reply:    {"ok": true, "ended": ["<id>", ...]}  or  {"ok": false, "error": "no live call <id>"}
CLI:      callbridge hangup CALL_ID | --all     (exit 1 when the call is not live)
"""

from __future__ import annotations

from shm_ring import EndReason

NAME = "hangup"


def execute(supervisor, request: dict) -> dict:
    if request.get("all") is True:
        ended = [e.call_id for e in supervisor.live_calls() if e.request_end(EndReason.OPERATOR_HANGUP)]
        return {"ok": True, "ended": ended}
    call_id = request.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        return {"ok": False, "error": "hangup needs a call_id (a string) or all: true"}
    entry = supervisor.find_call(call_id)
    if entry is None:
        return {"ok": False, "error": f"no live call {call_id}"}
    entry.request_end(EndReason.OPERATOR_HANGUP)
    return {"ok": True, "ended": [call_id]}


def render(reply: dict) -> str:
    ended = reply.get("ended", [])
    return "\n".join(f"ending call {call_id}" for call_id in ended) if ended else "no live calls"
