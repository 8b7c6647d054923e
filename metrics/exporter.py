"""The /metrics page of METRICS_LISTEN, served by the web helper (web/helper.py): a
long-lived process the supervisor forks and keeps running (supervisor/keeper.py).

Why a process and not a thread of the supervisor: the supervisor holds no threads (it
forks workers, and a thread alive at a fork can leave a lock held in the child), and
nothing a scraper does (slow clients, many connections, a large page) may take time from
its loop. A scrape reaches the supervisor only as one `metrics` request on the control
socket, which its loop serves without blocking (supervisor/control.py).

The listener is the bounded one (httpd/bounded.py): one asyncio loop, a connection cap and
deadlines, so idle or trickling connections cost neither threads nor the unit's task
budget. The page is rendered at most once per CACHE_SECONDS, by one thread, however many
scrapers ask at once: parallel scrapes are one control-socket request, not one each (they
used to fill its client slots, and `status` was refused).

Its registry holds only metrics/collector.py: no process or GC metrics of this helper,
which would describe the wrong process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from httpd.bounded import Limits
from metrics.collector import SupervisorCollector

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0  # a page this young is served again: scrapers cannot multiply requests
LIMITS = Limits(connections=64, read_seconds=10.0, keep_alive_seconds=5)


class CachedPage:
    """The rendered page, refreshed by one render at a time on one thread."""

    def __init__(self, registry: CollectorRegistry, ttl: float = CACHE_SECONDS) -> None:
        self.registry = registry
        self.ttl = ttl
        self.body = b""
        self.at = float("-inf")
        self.lock: asyncio.Lock | None = None
        self.renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render")

    async def get(self) -> bytes:
        if self.lock is None:
            self.lock = asyncio.Lock()
        if time.monotonic() - self.at < self.ttl:
            return self.body
        async with self.lock:  # the others wait for this render instead of starting their own
            if time.monotonic() - self.at >= self.ttl:
                loop = asyncio.get_running_loop()
                self.body = await loop.run_in_executor(self.renderer, generate_latest, self.registry)
                self.at = time.monotonic()
        return self.body


def app_for(page: CachedPage):
    """The ASGI app: GET /metrics, nothing else."""

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, kind = 404, b"not found: try /metrics\n", b"text/plain; charset=utf-8"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, kind = 405, b"method not allowed\n", b"text/plain; charset=utf-8"
        else:
            status, body, kind = 200, await page.get(), CONTENT_TYPE_LATEST.encode()
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app


def metrics_app(
    socket_path: str,
    instance: str,
    figures_file=None,
    spool_dir=None,
    webhook_figures_file=None,
    summary_figures_file=None,
):
    """The /metrics app of one supervisor. `figures_file` and `spool_dir`: where the
    drainer's figures are read (records/drain_figures.py); `webhook_figures_file`, the
    webhook sender's (records/outbox.py); `summary_figures_file`, the summarizer's
    (records/summary_queue.py)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        SupervisorCollector(
            socket_path, instance, figures_file, spool_dir, webhook_figures_file, summary_figures_file
        )
    )
    return app_for(CachedPage(registry))
