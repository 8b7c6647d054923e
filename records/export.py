"""The call history as CSV, one row per call with every column of `calls`: written by
`callbridge calls export` and the dashboard's history download alike."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from records.schema import calls

FIELDS = [c.name for c in calls.columns]


def jsonable(value):
    """A stored value as JSON or CSV shows it: times as ISO 8601 in UTC, within the rows a
    call holds too (its webhook deliveries have times)."""
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    return value.replace(tzinfo=UTC).isoformat() if isinstance(value, datetime) else value


# A cell a spreadsheet would run as a formula (=, +, -, @, or a tab or carriage return
# first): a caller's display name is the caller's to choose.
FORMULA_FIRST = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    value = json.dumps(value) if isinstance(value, dict | list) else jsonable(value)
    if isinstance(value, str) and value.startswith(FORMULA_FIRST) and not _number_like(value):
        return "'" + value
    return value


def _number_like(text: str) -> bool:
    """+34600111222, -0.5: a phone number or a figure, which a spreadsheet shows as such."""
    body = text[1:] if text[:1] in "+-" else text
    return bool(body) and body.replace(".", "", 1).replace("*", "").isdigit()


def csv_cells(row: dict) -> dict:
    return {k: _cell(v) for k, v in row.items() if k in FIELDS}


def write_csv(out, rows: Iterable[dict]) -> None:
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
        writer.writerow(csv_cells(row))


def csv_chunks(rows: Iterable[dict], every: int = 200) -> Iterator[str]:
    """The same CSV in pieces of `every` rows, for a streamed download."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    for n, row in enumerate(rows, 1):
        writer.writerow(csv_cells(row))
        if n % every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
