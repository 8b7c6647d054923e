"""Logging for the supervisor and the call workers.

- Lines go to stderr (journald stores them under the service) and, when `LOG_FILE_PATH`
  is set, to that file through a `WatchedFileHandler`, which reopens the file after
  logrotate moves it (no copytruncate needed, no lines lost to a stale descriptor).
- Every line carries a call id: the `call_id` passed in `extra`, else the process's own
  call (a worker sets it once after fork), else "-".
- Text by default, JSON lines with `LOG_FORMAT=json`.
- Every message and traceback passes through `secret.redact` before it is formatted into
  a line (not the finished line: callbridge/secret.py says why).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time

from callbridge.secret import redact

_process_call_id = "-"

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(call_id)s] %(name)s: %(message)s"


def set_process_call_id(call_id: str) -> None:
    """Tag every later line of this process with `call_id` (a worker calls this after fork)."""
    global _process_call_id
    _process_call_id = call_id


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "call_id", None):
            record.call_id = _process_call_id
        return True


class RedactingTextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = redact(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:  # noqa: N802
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return redact(super().formatStack(stack_info))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, call_id, pid, msg, and exc when any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "call_id": getattr(record, "call_id", "-"),
            "pid": record.process,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "text", file_path: str = "") -> None:
    """Configure the root logger; safe to call again (handlers are replaced)."""
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else RedactingTextFormatter(TEXT_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file_path:
        handlers.append(logging.handlers.WatchedFileHandler(file_path, encoding="utf-8"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(CallIdFilter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter that would otherwise print URLs and headers at debug level.
    for noisy in ("websockets", "urllib3", "websocket"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    # httpx2 (under the MCP SDK) logs every request's URL at INFO, and a hosted MCP server's
    # URL may hold its key: it and the SDK say warnings only, whatever LOG_LEVEL.
    for quiet in ("httpx2", "httpcore2", "httpcore", "mcp"):
        logging.getLogger(quiet).setLevel(max(logging.WARNING, root.level))
    # alembic says at INFO what it sets up and which migrations it ran, at every start of the
    # drainer: start-up output is for what an operator must read.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


def utterance_level(settings) -> int | None:
    """The level at which what callers and agents say (and tool arguments) may be logged,
    or None: never. What people say on a call is personal data: it goes to the log only
    when asked for (LOG_UTTERANCES=true: at info; LOG_LEVEL=debug: at debug), and never
    when the operator keeps no transcripts (RECORDS_TRANSCRIPTS=false)."""
    if not settings.records_transcripts:
        return None
    if settings.log_utterances:
        return logging.INFO
    return logging.DEBUG if settings.log_level == "debug" else None
