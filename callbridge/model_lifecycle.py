"""When do the configured OpenAI models shut down? Ask OpenAI, so it never happens silently.

OpenAI retires models on announced dates (the seed hard-coded a dated model and broke when
it went). `GET /v1/models/{model}` answers the model object with `shutdown_date`: an ISO date
(`YYYY-MM-DD`), or null/absent while none is announced; a unix timestamp is accepted too.
Each configured model (`OPENAI_REALTIME_MODEL`, and `OPENAI_TRANSCRIPTION_MODEL` when set)
gets one `ModelStatus`:

    ok       no date announced, or the date is more than WARN_DAYS away
    warning  the date is within WARN_DAYS; or the key may not read models (403, a restricted
             key); or the lookup could not be made (network, 5xx, an unreadable answer)
    failure  the date has come (on the day itself the model may stop at any hour); the
             model is unknown (404); the key is refused (401)

A lookup that cannot be made is only a warning: the calls may well work, and `callbridge
check` already proves the Realtime handshake separately.

Users: `callbridge check` (callbridge/cli/check.py) prints one line per model, and the service
runs `log_model_lifecycle` in a short-lived helper process at start and whenever
`ModelWatch` says it is due (daily): the lookup blocks for up to a few seconds, which the
supervisor's loop must never do. The API key goes in the Authorization header only; the
URL, the messages and the log lines never hold it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from callbridge.config import Settings
from callbridge.secret import redact

log = logging.getLogger(__name__)

OK, WARNING, FAILURE = "ok", "warning", "failure"
SEVERITY = {OK: 0, WARNING: 1, FAILURE: 2}  # also log_model_lifecycle's return value
WARN_DAYS = 60
# Bounds of one lookup: connecting, then each wait for data, then the whole exchange however
# slowly the answer trickles in (checked as data arrives, so at worst TOTAL + READ, 15 s;
# name resolution is the system resolver's and not bounded here).
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
MAX_BODY = 64 * 1024  # a model object is a few hundred bytes
DAY = 24 * 3600.0

_LOG_LEVELS = {OK: logging.INFO, WARNING: logging.WARNING, FAILURE: logging.ERROR}
_REPLACE = "OpenAI's deprecations page names the replacement"


@dataclass(frozen=True)
class ModelStatus:
    variable: str  # the setting that names the model, e.g. OPENAI_REALTIME_MODEL
    model: str
    level: str  # OK, WARNING or FAILURE
    detail: str  # one line, what was found and what to do; no secret
    shutdown: date | None = None


def models_url(realtime_url: str, model: str) -> str:
    """The model lookup next to the Realtime endpoint: wss://host/v1/realtime ->
    https://host/v1/models/{model} (ws -> http, as for the simulator)."""
    parts = urlsplit(realtime_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/")
    for endpoint in ("/realtime", "/live/sessions", "/responses"):  # Realtime's, GPT-Live's, the summaries'
        path = path.removesuffix(endpoint)
    return urlunsplit((scheme, parts.netloc, f"{path}/models/{quote(model, safe='')}", "", ""))


def parse_shutdown(value: object) -> date | None:
    """`shutdown_date` as a date: None for null; an ISO date or date-time; a unix timestamp
    (seconds, UTC). Raises ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int: never a timestamp
        raise ValueError("not a date")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).date()
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC).date()
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).date()
    raise ValueError("not a date")


def classify(shutdown: date | None, today: date, warn_days: int = WARN_DAYS) -> str:
    """OK when no date or more than `warn_days` away, WARNING within, FAILURE from the day itself."""
    if shutdown is None:
        return OK
    days = (shutdown - today).days
    if days <= 0:
        return FAILURE
    return WARNING if days <= warn_days else OK


def _describe(variable: str, model: str, shutdown: date | None, level: str, today: date) -> str:
    if shutdown is None:
        return f"{model}: no shutdown date announced"
    days = (shutdown - today).days
    if level == FAILURE:
        when = "shuts down today" if days == 0 else "was shut down on"
        return f"{model} {when} {shutdown.isoformat()}: set {variable} to a current model ({_REPLACE})"
    if level == WARNING:
        return (
            f"{model} shuts down on {shutdown.isoformat()}, in {days} days: "
            f"move {variable} to its replacement ({_REPLACE})"
        )
    return f"{model} shuts down on {shutdown.isoformat()} ({days} days from now)"


def _get(url: str, key: str) -> tuple[int, bytes]:
    """One GET, bounded as described at CONNECT_TIMEOUT; raises requests' errors."""
    deadline = time.monotonic() + TOTAL_TIMEOUT
    headers = {"Authorization": f"Bearer {key}", "User-Agent": "callbridge"}
    # No redirects: the answer must come from the configured host, and the key with it.
    with requests.get(
        url,
        headers=headers,
        timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        allow_redirects=False,
        stream=True,
    ) as reply:
        # read1 returns whatever has arrived (a plain read waits for the whole chunk), so the
        # deadline is checked while an answer trickles in byte by byte.
        body = b""
        while chunk := reply.raw.read1(4096, decode_content=True):
            body += chunk
            if len(body) > MAX_BODY or time.monotonic() > deadline:
                raise requests.exceptions.ReadTimeout("answer too long or too slow")
        return reply.status_code, body


def lookup(settings: Settings, variable: str, model: str, today: date | None = None) -> ModelStatus:
    """Ask OpenAI about `model` (named by the setting `variable`) and classify the answer."""
    today = today or datetime.now(UTC).date()
    endpoint = settings.openai_live_url if settings.openai_api == "live" else settings.openai_realtime_url
    if variable == "SUMMARY_MODEL":  # asked where the summaries are: the Responses API's host
        endpoint = settings.openai_responses_url
    url = models_url(endpoint, model)

    def status(level: str, detail: str, shutdown: date | None = None) -> ModelStatus:
        return ModelStatus(variable, model, level, redact(detail), shutdown)

    try:
        code, body = _get(url, settings.openai_api_key.reveal())
    except requests.RequestException as exc:
        # The type only: requests' messages repeat the URL and add nothing an operator uses.
        return status(
            WARNING, f"cannot ask {url} about {model} ({type(exc).__name__}): shutdown date unknown"
        )
    if code == 401:
        return status(FAILURE, f"the API key was refused when asking about {model} (OPENAI_API_KEY)")
    if code == 403:
        return status(
            WARNING,
            f"this key may not read models, so {model}'s shutdown date is unknown: "
            "allow it Models read, or watch OpenAI's deprecations page",
        )
    if code == 404:
        return status(FAILURE, f"{model} is not a model OpenAI knows: set {variable} to a current model")
    if code != 200:
        return status(WARNING, f"{url} answered HTTP {code}: {model}'s shutdown date unknown")
    try:
        answer = json.loads(body)
        if not isinstance(answer, dict):
            raise ValueError("not an object")
        shutdown = parse_shutdown(answer.get("shutdown_date"))
    except (ValueError, TypeError, OverflowError, OSError):
        return status(WARNING, f"{url} gave an unreadable answer: {model}'s shutdown date unknown")
    level = classify(shutdown, today)
    return status(level, _describe(variable, model, shutdown, level, today), shutdown)


def configured_models(settings: Settings, agents=()) -> list[tuple[str, str]]:
    """(setting, model) for each model in use, once each: the environment's voice model, its
    transcription model when on (Realtime) or delegation backend (GPT-Live), the model
    of each agent (callbridge/agents.py) that chooses its own api or model, and
    SUMMARY_MODEL when summaries are on."""
    found: dict[str, str] = {}

    def add(setting: str, applied: Settings) -> None:
        found.setdefault(applied.openai_realtime_model, setting)
        if applied.openai_api == "live":  # transcripts are built in; tools run on the backend
            found.setdefault(applied.openai_live_backend_model, "OPENAI_LIVE_BACKEND_MODEL")
        elif applied.openai_transcription_model:
            found.setdefault(applied.openai_transcription_model, "OPENAI_TRANSCRIPTION_MODEL")

    add("OPENAI_REALTIME_MODEL", settings)
    for agent in agents:
        if agent.api or agent.model:
            add(f"agents.{agent.name}.model", agent.apply(settings))
    if settings.summary_model:  # the post-call summaries' text model (summaries/)
        found.setdefault(settings.summary_model, "SUMMARY_MODEL")
    return [(setting, model) for model, setting in found.items()]


def check_models(settings: Settings, today: date | None = None, agents=()) -> list[ModelStatus]:
    return [
        lookup(settings, variable, model, today) for variable, model in configured_models(settings, agents)
    ]


def log_model_lifecycle(settings: Settings, today: date | None = None) -> int:
    """Look up every configured model and log one line each: INFO when fine, WARNING when
    the shutdown is near or the date cannot be read, ERROR once it has come. Blocks for up to
    15 s per model, so the service runs it in a helper process, never on its loop.

    Returns the worst severity found: 0 all ok, 1 a warning, 2 a failure.
    """
    return log_and_report(settings, today)["worst"]


def log_and_report(settings: Settings, today: date | None = None, agents=()) -> dict:
    """`log_model_lifecycle`, and what the service keeps of it for status and the metrics:
    {"worst": 0-2, "shutdown_dates": {model: "YYYY-MM-DD"}} (only models with a date)."""
    worst, dates = 0, {}
    for found in check_models(settings, today, agents):
        log.log(_LOG_LEVELS[found.level], "model check %s: %s", found.variable, found.detail)
        worst = max(worst, SEVERITY[found.level])
        if found.shutdown is not None:
            dates[found.model] = found.shutdown.isoformat()
    return {"worst": worst, "shutdown_dates": dates}


class ModelWatch:
    """When the service should look again: at start, then every `interval` seconds.

    Times are `time.monotonic()` values, so a wall-clock jump neither skips nor repeats a
    check. The caller starts the helper when `due(now)` and then calls `started(now)`.
    """

    def __init__(self, interval: float = DAY) -> None:
        self.interval = interval
        self._last: float | None = None

    def due(self, now: float) -> bool:
        return self._last is None or now - self._last >= self.interval

    def started(self, now: float) -> None:
        self._last = now

    def force(self) -> None:
        """Due now (a reload), whenever the last check was."""
        self._last = None

    def seconds_until_due(self, now: float) -> float:
        """For the loop's timeout: 0 when due."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - now)
