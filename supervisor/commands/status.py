"""`status`: the supervisor and every live call.

Request:  {"cmd": "status"}
Reply:    {"ok": true, "supervisor": {pid, version, instance, uptime_s, ari, ari_connects, draining,
           calls_live, calls_taken, calls_failed, calls_rejected_busy, max_concurrent_calls,
           calls_over_caller_limit, max_calls_per_caller_per_hour, ari_last_error, helpers, turning_away, reconciliations, models, loop_busy_max_ms,
           loop_slow_passes, media_scheduling},
           "calls": [{call_id, caller, dialled, agent, age_s, pid, phase, worker_state, api, realtime,
           frames_in, frames_out, uplink_fill, downlink_fill, underruns, barge_ins,
           rejected_packets, reconnects, tool_calls, transfer, cpu_percent, rss_mb, uss_mb, fds,
           threads, health}],
           "transferred": [{call_id, destination_channel, transferred_s}]}
CLI:      callbridge status [--json] [--watch]
"""

from __future__ import annotations

NAME = "status"


def execute(supervisor, request: dict) -> dict:
    return {
        "ok": True,
        "supervisor": supervisor.summary(),
        "calls": [entry.status_row() for entry in supervisor.live_calls()],
        "transferred": supervisor.transfers.status_rows(),
    }


def _cell(row: dict, key: str, width: int) -> str:
    value = row.get(key, "")
    if key == "age_s":
        value = _duration(value)
    elif value is None:  # not measured yet (USS is read a few workers per second)
        value = "-"
    text = str(value)
    return (text if len(text) <= width else text[: width - 1] + "~").ljust(width)


def _pack(parts: list[str], indent: str = "    ") -> list[str]:
    """`parts` on as few indented lines of at most WIDTH as they fit, never cut."""
    lines, line = [], indent
    for part in parts:
        if line.strip() and len(line) + 2 + len(part) > WIDTH:
            lines.append(line)
            line = indent
        line += ("  " if line.strip() else "") + part
    return [*lines, line] if line.strip() else lines


def _fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "~"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# One call is a table row (who, where in its life) and its figures packed below it, so
# that `status` fits a terminal of 80 columns.
COLUMNS = [
    ("CALL", "call_id", 22),
    ("CALLER", "caller", 14),
    ("TO", "dialled", 8),
    ("AGENT", "agent", 10),
    ("AGE", "age_s", 8),
    ("STATE", "phase", 8),
]
WIDTH = 80


def render(reply: dict) -> str:
    sup = reply["supervisor"]
    lines = [
        f"callbridge {sup['version']}  instance {sup.get('instance', '-')}  pid {sup['pid']}  "
        f"up {_duration(sup['uptime_s'])}",
        f"ARI {sup['ari']}{' (draining)' if sup['draining'] else ''}  models {sup.get('models', '-')}",
        f"calls: {sup['calls_live']} live / {sup['max_concurrent_calls']} max, {sup['calls_taken']} taken, "
        f"{sup['calls_failed']} failed, {sup['calls_rejected_busy']} turned away busy",
        f"loop: longest pass {sup.get('loop_busy_max_ms', '-')} ms lately, "
        f"{sup.get('loop_slow_passes', '-')} over 100 ms since start",
        f"media threads: {sup.get('media_scheduling', '-')}",
    ]
    if sup.get("max_calls_per_caller_per_hour"):
        lines.insert(
            3,
            f"       {sup.get('calls_over_caller_limit', 0)} over the limit of "
            f"{sup['max_calls_per_caller_per_hour']} calls per caller an hour",
        )
    calls = reply["calls"]
    transferred = reply.get("transferred") or []
    if transferred:
        lines.append(f"transferred, talking to their destination: {len(transferred)}")
        lines += [f"  {row['call_id']}  {_duration(row['transferred_s'])}" for row in transferred]
    if not calls:
        lines.append("no live calls")
        return "\n".join(_fit(line) for line in lines)
    lines.append("")
    lines.append("  ".join(title.ljust(width) for title, _, width in COLUMNS).rstrip())
    for row in calls:
        call_id = str(row.get("call_id", ""))
        if len(call_id) > COLUMNS[0][2]:  # never cut: `hangup` needs it whole; on a line of its own
            lines.append(call_id)
            row = {**row, "call_id": ""}
        lines.append("  ".join(_cell(row, key, width) for _, key, width in COLUMNS).rstrip())
        shown = {key: "-" if value is None else value for key, value in row.items()}
        lines += _pack(
            [
                f"pid {shown.get('pid', '-')}",
                f"{shown.get('api', 'voice')} {shown.get('realtime', '-')}",  # e.g. "live connected"
                f"cpu {shown.get('cpu_percent', '-')}%",
                f"uss {shown.get('uss_mb', '-')} MB",
                f"health {shown.get('health', '-')}",
                f"transfer {shown.get('transfer') or '-'}",
                f"frames in {shown.get('frames_in', '-')} out {shown.get('frames_out', '-')}",
                f"fill {shown.get('downlink_fill', '-')}",
                f"underruns {shown.get('underruns', '-')}",
                f"barge-ins {shown.get('barge_ins', '-')}",
                f"tool calls {shown.get('tool_calls', '-')}",
            ]
        )
    return "\n".join(_fit(line) for line in lines)
