"""The drainer's figures for the metrics: what it stored since the service started, and
what waits in the spool.

Counters (records stored, alert batches stored, failed attempts to store) are the
drainer's: it keeps them in memory and writes them, after each change, to a small JSON
file in STATE_DIR/run/ (records/run_figures.py). The metrics helper reads that file at
each scrape (metrics/collector.py).

Since the service started, across drainer restarts, never doubled:
- the file names the service run it belongs to (the supervisor's start time, as the
  `metrics` reply gives it); a drainer resumes from a file of its own run and starts
  from zero otherwise, and the collector ignores a file of another run;
- only a record the database did not have yet counts (store_record's `new`), so a record
  stored again after a drainer was killed before removing its file counts once. A drainer
  killed between removing a file and writing its figures leaves that one uncounted.

The backlog (records waiting, the oldest one's age) is read from the spool directory
itself at the scrape, not from the drainer: it must be right exactly when the drainer is
not (sleeping between retries while the database is down, or crash-looping). Record
names begin with their time (records/spool.py::record_name), so no file is opened.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from records.run_figures import RunFigures
from records.spool import RECORD

log = logging.getLogger(__name__)


def figures_path(state_dir: str | os.PathLike[str], instance: str) -> Path:
    return Path(state_dir) / "run" / f"{instance}.drainer.json"


@dataclass
class DrainFigures(RunFigures):
    stored: int = 0  # call records the database did not have yet
    alert_batches: int = 0  # alert batches likewise (records/store.py::store_alerts)
    store_failures: int = 0  # attempts that failed: the database down, slow, locked or refusing
    set_aside: int = 0  # records moved to spool/bad/: never a row (records/drainer.py)


COUNTERS = DrainFigures.counters()


def run_counters(path: Path, service: float) -> dict[str, int]:
    """The drainer's counters of the run that started at `service`."""
    return DrainFigures.run_counters(path, service)


def backlog(directory: Path) -> tuple[int, float | None]:
    """(records and alert batches waiting in the spool, the oldest one's time in unix
    seconds or None). One directory listing; no file is opened."""
    waiting, oldest = 0, None
    try:
        names = os.listdir(directory)
    except OSError:
        return 0, None
    for name in names:
        if not name.endswith(RECORD):
            continue
        waiting += 1
        stamp = name[:13]
        if stamp.isdigit() and (oldest is None or int(stamp) < oldest):
            oldest = int(stamp)
    return waiting, None if oldest is None else oldest / 1000
