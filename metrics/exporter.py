"""The metrics helper: a long-lived process the supervisor forks and keeps running
(supervisor/keeper.py), serving METRICS_LISTEN with prometheus_client.

Why a process and not a thread of the supervisor: the supervisor holds no threads (it
forks workers, and a thread alive at a fork can leave a lock held in the child), and
nothing a scraper does (slow clients, many connections, a large page) may take time from
its loop. A scrape reaches the supervisor only as one `metrics` request on the control
socket, which its loop serves without blocking (supervisor/control.py).

Its registry holds only metrics/collector.py: no process or GC metrics of this helper,
which would describe the wrong process. It exits when its supervisor is gone.
"""

from __future__ import annotations

import logging
import os
import time

from prometheus_client import CollectorRegistry, start_http_server

from metrics.collector import SupervisorCollector

log = logging.getLogger(__name__)

PARENT_POLL = 1.0


def run(listen, socket_path: str, instance: str, parent_pid: int, figures_file=None, spool_dir=None) -> None:
    """Serve until the supervisor is gone. Raises OSError when it cannot listen (the
    supervisor logs the helper's failure and starts it again later). `figures_file` and
    `spool_dir`: where the drainer's figures are read (records/drain_figures.py)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SupervisorCollector(socket_path, instance, figures_file, spool_dir))
    try:
        server, _ = start_http_server(listen.port, listen.host, registry=registry)
    except OSError as exc:
        log.error("metrics: cannot listen on %s (METRICS_LISTEN): %s", listen, exc)
        raise
    log.info("metrics: serving http://%s/metrics", listen)
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL)
    server.shutdown()
