"""`status`: the supervisor and every live call.

Request:  {"cmd": "status"}
Reply:    {"ok": true, "supervisor": {pid, version, instance, uptime_s, ari, ari_connects, draining,
           calls_live, calls_taken, calls_failed, calls_rejected_busy, max_concurrent_calls,
           calls_over_caller_limit, max_calls_per_caller_per_hour, ari_last_error, helpers, turning_away, reconciliations, models, loop_busy_max_ms,
           loop_slow_passes},
           "calls": [{call_id, caller, dialled, agent, age_s, pid, phase, worker_state, realtime,
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


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


COLUMNS = [
    ("CALL", "call_id", 22),
    ("CALLER", "caller", 14),
    ("TO", "dialled", 8),
    ("AGENT", "agent", 10),
    ("AGE", "age_s", 7),
    ("PID", "pid", 7),
    ("STATE", "phase", 8),
    ("REALTIME", "realtime", 12),
    ("CPU%", "cpu_percent", 5),
    ("USS MB", "uss_mb", 6),
    ("IN", "frames_in", 7),
    ("OUT", "frames_out", 7),
    ("FILL", "downlink_fill", 7),
    ("UNDER", "underruns", 5),
    ("BARGE", "barge_ins", 5),
    ("TRANSFER", "transfer", 12),
    ("HEALTH", "health", 10),
]


def render(reply: dict) -> str:
    sup = reply["supervisor"]
    lines = [
        f"callbridge {sup['version']}  instance {sup.get('instance', '-')}  pid {sup['pid']}  "
        f"up {_duration(sup['uptime_s'])}  ARI {sup['ari']}{' (draining)' if sup['draining'] else ''}  "
        f"models {sup.get('models', '-')}",
        f"calls: {sup['calls_live']} live / {sup['max_concurrent_calls']} max, {sup['calls_taken']} taken, "
        f"{sup['calls_failed']} failed, {sup['calls_rejected_busy']} turned away busy",
        f"loop: longest pass {sup.get('loop_busy_max_ms', '-')} ms lately, "
        f"{sup.get('loop_slow_passes', '-')} over 100 ms since start",
    ]
    if sup.get("max_calls_per_caller_per_hour"):
        lines.insert(
            2,
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
        return "\n".join(lines)
    lines.append("")
    lines.append("  ".join(title.ljust(width) for title, _, width in COLUMNS))
    for row in calls:
        cells = []
        for _, key, width in COLUMNS:
            value = row.get(key, "")
            if key == "age_s":
                value = _duration(value)
            elif value is None:  # not measured yet (USS is read a few workers per second)
                value = "-"
            text = str(value)
            cells.append((text if len(text) <= width else text[: width - 1] + "~").ljust(width))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
