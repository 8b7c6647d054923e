"""`metrics`: the supervisor's process-lifetime totals, for the metrics helper (metrics/).

Request:  {"cmd": "metrics"}
Reply:    {"ok": true, "instance", "version", "started_at" (unix time), "calls_live",
           "calls_turned_away", "ari_connected", "model_shutdown_dates": {model: "YYYY-MM-DD"},
           "currency", **supervisor/totals.py::Totals.as_dict()}
CLI:      none; `curl METRICS_LISTEN/metrics` shows the same as Prometheus sees it.

Answered from what the supervisor holds (a dict copy), so a scrape costs its loop one
short request however often Prometheus asks.
"""

from __future__ import annotations

NAME = "metrics"


def execute(supervisor, request: dict) -> dict:
    return {"ok": True, **supervisor.metrics()}


def render(reply: dict) -> str:
    import json

    return json.dumps(reply, indent=2, sort_keys=True)
