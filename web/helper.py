"""The web helper: one long-lived process per instance serving METRICS_LISTEN (/metrics,
no login: metrics/exporter.py) and WEB_LISTEN (the dashboard, behind a login:
web/dashboard.py) on one asyncio loop of the bounded server (httpd/bounded.py).

The supervisor forks it and keeps it running (supervisor/keeper.py) when either listener
is set; `callbridge web serve` runs it on its own (a second dashboard, or one on another
machine that shares the database and reaches the control socket). Why a process: the
supervisor's loop must never wait on a browser, and a crash here costs no call. It reaches
the supervisor only through the control socket, one cached question for every viewer
(web/live.py), and exits when its supervisor is gone.
"""

from __future__ import annotations

import logging
import os

from httpd.bounded import Limits, Listener, serve
from metrics import exporter
from records import outbox, summary_queue
from records.drain_figures import figures_path

log = logging.getLogger(__name__)

PARENT_POLL = 1.0
# Browsers keep a few connections each; 50 viewers with a live page open stay well inside.
WEB_LIMITS = Limits(connections=256, read_seconds=10.0, keep_alive_seconds=15)


def listeners(settings) -> list[Listener]:
    found = []
    if settings.metrics_listen:
        app = exporter.metrics_app(
            settings.control_socket_path,
            settings.instance,
            figures_path(settings.state_dir, settings.instance),
            settings.spool_dir,
            outbox.figures_path(settings.state_dir, settings.instance),
            summary_queue.figures_path(settings.state_dir, settings.instance),
        )
        found.append(Listener("metrics", "METRICS_LISTEN", settings.metrics_listen, app, exporter.LIMITS))
    if settings.web_listen:
        from web.dashboard import Dashboard, app

        found.append(Listener("web", "WEB_LISTEN", settings.web_listen, app(Dashboard(settings)), WEB_LIMITS))
    return found


def run(settings, parent_pid: int | None, should_stop=None) -> None:
    """Serve until the supervisor `parent_pid` is gone, or (on its own, `parent_pid` None)
    until `should_stop()`."""
    if parent_pid is not None:
        should_stop = lambda: os.getppid() != parent_pid  # noqa: E731
    serve(listeners(settings), should_stop or (lambda: False), PARENT_POLL)
