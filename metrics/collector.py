"""The Prometheus collector: at each scrape, the supervisor's totals and the drainer's
figures as metric families.

It reads current values when scraped (one `metrics` request over the control socket,
supervisor/commands/metrics.py; the drainer's figures file and the spool directory,
records/drain_figures.py) instead of keeping counters of its own, so the helper that
serves it can die and be restarted without losing or doubling a count: every counter is the
supervisor's or the drainer's, since the service started.

Every family carries `instance_id` (INSTANCE_ID, or the one derived from ARI_APP_NAME).
Not `instance`: Prometheus sets that label to the scraped target's host:port, and a
scraped `instance` would be renamed `exported_instance` or, with honor_labels, would
replace the target's.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from records import drain_figures, outbox, summary_queue
from shm_ring import wire

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0  # the supervisor answers within one loop pass; this is for a stuck one
LABEL = "instance_id"


class SupervisorCollector(Collector):
    def __init__(
        self,
        socket_path: str,
        instance: str,
        figures_file=None,
        spool_dir=None,
        webhook_figures_file=None,
        summary_figures_file=None,
    ) -> None:
        self.socket_path = socket_path
        self.instance = instance
        self.figures_file = figures_file
        self.spool_dir = spool_dir
        self.webhook_figures_file = webhook_figures_file  # webhooks/sender.py's (records/outbox.py)
        self.summary_figures_file = (
            summary_figures_file  # summaries/summarizer.py's (records/summary_queue.py)
        )
        self.failed_since: float | None = None  # for one log line per outage, not per scrape

    def fetch(self) -> dict | None:
        try:
            reply = wire.request(self.socket_path, {"cmd": "metrics"}, timeout=REQUEST_TIMEOUT)
            if not reply.get("ok"):
                raise wire.WireError(str(reply.get("error"))[:200])
        except (OSError, wire.WireError) as exc:
            if self.failed_since is None:
                self.failed_since = time.monotonic()
                log.warning("metrics: cannot read the supervisor's totals (%s); scrapes show it down", exc)
            return None
        if self.failed_since is not None:
            log.info("metrics: the supervisor's totals can be read again")
            self.failed_since = None
        return reply

    def collect(self):
        reply = self.fetch()
        up = GaugeMetricFamily(
            "callbridge_supervisor_up", "1 when the supervisor answered this scrape", labels=[LABEL]
        )
        up.add_metric([self.instance], 1 if reply else 0)
        yield up
        if reply:
            yield from families(reply)
            if self.figures_file is not None and self.spool_dir is not None:
                yield from drain_families(reply, self.drain(reply.get("started_at")))
            if self.webhook_figures_file is not None and self.spool_dir is not None:
                yield from webhook_families(reply, self.webhooks(reply.get("started_at")))
            if self.summary_figures_file is not None and self.spool_dir is not None:
                yield from summary_families(reply, self.summaries(reply.get("started_at")))

    def drain(self, service) -> dict:
        """The drainer's counters for the run that started at `service` (the supervisor's
        start time), and the spool's backlog, read now."""
        waiting, oldest = drain_figures.backlog(Path(self.spool_dir))
        return {
            **drain_figures.run_counters(Path(self.figures_file), service),
            "waiting": waiting,
            "oldest_at": oldest,
        }

    def webhooks(self, service) -> dict:
        """The webhook sender's counters for this run, and the outbox's backlog, read now."""
        waiting, oldest = outbox.backlog(Path(self.spool_dir), self.instance)
        return {
            **outbox.WebhookFigures.run_counters(Path(self.webhook_figures_file), service),
            "waiting": waiting,
            "oldest_at": oldest,
        }

    def summaries(self, service) -> dict:
        """The summarizer's counters for this run, and the jobs waiting, read now."""
        queue = summary_queue.queue_dir(Path(self.spool_dir), self.instance)
        return {
            **summary_queue.SummaryFigures.run_counters(Path(self.summary_figures_file), service),
            "waiting": len(summary_queue.waiting(queue)),
        }


def families(reply: dict):
    """The metric families for one `metrics` reply (a pure function, for the tests too)."""
    inst = [str(reply.get("instance", ""))]

    def gauge(name, doc, value):
        family = GaugeMetricFamily(name, doc, labels=[LABEL])
        family.add_metric(inst, value)
        return family

    def counter(name, doc, value):
        family = CounterMetricFamily(name, doc, labels=[LABEL])
        family.add_metric(inst, value)
        return family

    def by(name, doc, label, values: dict):
        family = CounterMetricFamily(name, doc, labels=[LABEL, label])
        for key, value in sorted(values.items()):
            family.add_metric([*inst, str(key)], value)
        return family

    def histogram(name, doc, data: dict):
        family = HistogramMetricFamily(name, doc, labels=[LABEL])
        buckets = [(_bound(bound), count) for bound, count in data["buckets"]]
        family.add_metric(inst, buckets, data["sum"])
        return family

    info = GaugeMetricFamily("callbridge_build_info", "the running version", labels=[LABEL, "version"])
    info.add_metric([*inst, str(reply.get("version", ""))], 1)
    yield info
    yield gauge(
        "callbridge_start_time_seconds", "when the supervisor started (unix time)", reply["started_at"]
    )
    yield gauge("callbridge_calls_live", "calls now in progress", reply["calls_live"])
    yield gauge(
        "callbridge_ari_connected", "1 while the ARI events link is connected", reply["ari_connected"]
    )
    yield by("callbridge_calls", "calls ended, by end reason", "reason", reply["calls_by_reason"])
    yield counter("callbridge_calls_turned_away", "callers turned away busy", reply["calls_turned_away"])
    yield counter(
        "callbridge_calls_over_caller_limit",
        "callers turned away for calling more than MAX_CALLS_PER_CALLER_PER_HOUR",
        reply.get("calls_over_caller_limit", 0),
    )
    yield counter("callbridge_worker_crashes", "call workers that died", reply["worker_crashes"])
    yield counter(
        "callbridge_records_lost",
        "call records that could not be written to the spool (lost: a full or broken disk)",
        reply.get("records_lost", 0),
    )
    yield counter("callbridge_recordings", "calls recorded, their file finished", reply.get("recordings", 0))
    yield counter(
        "callbridge_recordings_failed",
        "calls whose recording stopped or could not start (a full disk): the call went on",
        reply.get("recordings_failed", 0),
    )
    yield histogram(
        "callbridge_call_setup_seconds", "from admission to the bridged call", reply["setup_seconds"]
    )
    yield histogram("callbridge_call_duration_seconds", "calls' length", reply["duration_seconds"])
    yield histogram(
        "callbridge_supervisor_loop_pass_seconds",
        "how long each pass of the supervisor's loop was busy (admissions wait behind it)",
        reply["loop_pass_seconds"],
    )
    yield by(
        "callbridge_realtime_errors",
        "Realtime errors by code (other: codes without a slot of their own)",
        "code",
        reply["realtime_errors_by_code"],
    )
    yield by("callbridge_tokens", "Realtime tokens used, by kind", "kind", reply["tokens_by_kind"])
    cost = CounterMetricFamily(
        "callbridge_cost_estimate",
        "estimated Realtime cost of ended calls (RECORDS_PRICES), in the currency label",
        labels=[LABEL, "currency"],
    )
    cost.add_metric([*inst, str(reply.get("currency", ""))], reply["cost_estimate"])
    yield cost
    yield counter("callbridge_underruns", "20 ms ticks with no reply audio while playing", reply["underruns"])
    yield counter("callbridge_barge_ins", "replies the caller interrupted", reply["barge_ins"])
    yield counter(
        "callbridge_session_seconds",
        "GPT-Live session time of ended calls (billed by the second)",
        reply.get("session_seconds", 0),
    )
    # The date as a unix time (Prometheus' base unit is the second; promtool refuses "days"):
    # days left are `(callbridge_model_shutdown_timestamp_seconds - time()) / 86400`.
    shutdown = GaugeMetricFamily(
        "callbridge_model_shutdown_timestamp_seconds",
        "when a configured model's announced shutdown begins (00:00 UTC of its date)",
        labels=[LABEL, "model"],
    )
    for model, when in sorted((reply.get("model_shutdown_dates") or {}).items()):
        try:
            day = date.fromisoformat(when)
        except (TypeError, ValueError):
            continue
        shutdown.add_metric([*inst, model], datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    yield shutdown


def drain_families(reply: dict, drain: dict, now: float | None = None):
    """The drainer's families (a pure function, for the tests too): `drain` as
    SupervisorCollector.drain reads it."""
    inst = [str(reply.get("instance", ""))]
    now = time.time() if now is None else now

    def one(kind, name, doc, value):
        family = kind(name, doc, labels=[LABEL])
        family.add_metric(inst, value)
        return family

    yield one(
        CounterMetricFamily,
        "callbridge_records_stored",
        "call records the drainer stored in the database",
        drain["stored"],
    )
    yield one(
        CounterMetricFamily,
        "callbridge_alert_batches_stored",
        "batches of sent alerts the drainer stored in the database",
        drain["alert_batches"],
    )
    yield one(
        CounterMetricFamily,
        "callbridge_records_store_failures",
        "attempts to store records that failed (database down, slow, locked or refusing)",
        drain["store_failures"],
    )
    yield one(
        CounterMetricFamily,
        "callbridge_records_set_aside",
        "records the database can never take, moved to the spool's bad/ (kept, not stored)",
        drain.get("set_aside", 0),
    )
    yield one(
        GaugeMetricFamily,
        "callbridge_records_waiting",
        "call records and alert batches in the spool, waiting for the database",
        drain["waiting"],
    )
    oldest = drain.get("oldest_at")
    yield one(
        GaugeMetricFamily,
        "callbridge_records_oldest_waiting_seconds",
        "how long the oldest record in the spool has waited (0: none waits)",
        max(0.0, now - oldest) if oldest is not None else 0.0,
    )


def webhook_families(reply: dict, figures: dict, now: float | None = None):
    """The webhook sender's families: `figures` as SupervisorCollector.webhooks reads them."""
    inst = [str(reply.get("instance", ""))]
    now = time.time() if now is None else now
    deliveries = CounterMetricFamily(
        "callbridge_webhook_deliveries",
        "call events posted to webhooks, by outcome: delivered (2xx), failed (an attempt that "
        "will be retried), given_up (retried for CALL_WEBHOOK_RETRY_HOURS, moved to bad/)",
        labels=[LABEL, "outcome"],
    )
    for outcome, name in (("delivered", "delivered"), ("failed", "failures"), ("given_up", "given_up")):
        deliveries.add_metric([*inst, outcome], figures.get(name, 0))
    yield deliveries
    waiting = GaugeMetricFamily(
        "callbridge_webhooks_waiting", "call events in the outbox, waiting for their receiver", labels=[LABEL]
    )
    waiting.add_metric(inst, figures.get("waiting", 0))
    yield waiting
    oldest = figures.get("oldest_at")
    age = GaugeMetricFamily(
        "callbridge_webhooks_oldest_waiting_seconds",
        "how long the oldest event in the outbox has waited (0: none waits)",
        labels=[LABEL],
    )
    age.add_metric(inst, max(0.0, now - oldest) if oldest is not None else 0.0)
    yield age


def summary_families(reply: dict, figures: dict):
    """The summarizer's families: `figures` as SupervisorCollector.summaries reads them."""
    inst = [str(reply.get("instance", ""))]
    done = CounterMetricFamily(
        "callbridge_summaries",
        "post-call summaries, by outcome: summarized, failed (an attempt that will be retried), "
        "given_up (retried for SUMMARY_RETRY_HOURS or refused, moved to bad/)",
        labels=[LABEL, "outcome"],
    )
    for outcome, name in (("summarized", "summarized"), ("failed", "failures"), ("given_up", "given_up")):
        done.add_metric([*inst, outcome], figures.get(name, 0))
    yield done
    mails = CounterMetricFamily(
        "callbridge_summaries_mailed",
        "summary e-mails, by outcome: sent, failed (an attempt, retried), given_up (after SUMMARY_RETRY_HOURS)",
        labels=[LABEL, "outcome"],
    )
    mails.add_metric([*inst, "sent"], figures.get("mails_sent", 0))
    mails.add_metric([*inst, "failed"], figures.get("mail_failures", 0))
    mails.add_metric([*inst, "given_up"], figures.get("mails_given_up", 0))
    yield mails
    waiting = GaugeMetricFamily(
        "callbridge_summaries_waiting", "ended calls waiting for their summary", labels=[LABEL]
    )
    waiting.add_metric(inst, figures.get("waiting", 0))
    yield waiting


def _bound(bound) -> str:
    return bound if isinstance(bound, str) else repr(float(bound))
