"""A long-lived helper's figures for the metrics, per service run: counters kept in memory
and written after each change to a small JSON file in STATE_DIR/run/ (temp file and rename:
a reader sees the old figures or the new, never half). The drainer's are
records/drain_figures.py's, the webhook sender's records/outbox.py's.

The file names the service run it belongs to (the supervisor's start time, as the `metrics`
reply gives it): a helper restarted in the same run resumes its counts, one of a new run
starts from zero, and a reader ignores a file of another run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from callbridge import safe_files

log = logging.getLogger(__name__)


@dataclass
class RunFigures:
    """A long-lived helper's counters for one service run: every field after `service` is a
    counter (the drainer's below; the webhook sender's, records/outbox.py)."""

    service: float  # the supervisor's start time (unix seconds, 3 decimals): the run's name

    @classmethod
    def counters(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "service")

    @classmethod
    def resume(cls, path: Path, service: float):
        """This run's figures from `path`, when they are this run's; else zero."""
        found = read(path)
        if found is None or found.get("service") != service:
            return cls(service)
        return cls(service, *(int(found.get(name) or 0) for name in cls.counters()))

    @classmethod
    def run_counters(cls, path: Path, service: float) -> dict[str, int]:
        """The counters of the run that started at `service` (zero before its helper wrote any)."""
        figures = cls.resume(path, service)
        return {name: getattr(figures, name) for name in cls.counters()}

    def save(self, path: Path) -> None:
        """Atomically, without fsync: the file describes a run, and a new run starts anew."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            safe_files.write_text(path, json.dumps(asdict(self)))  # never through a planted link
        except OSError as exc:  # the figures are for the metrics: never worth a record
            log.debug("cannot write the figures to %s: %s", path, exc)


def read(path: Path) -> dict | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None
