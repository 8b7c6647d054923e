"""callbridge's configuration: one typed, immutable `Settings` built from the environment.

Values come from, in order of precedence: the process environment, an env file read
with python-dotenv (`--env-file PATH`, else `./.env`, else `/etc/callbridge/callbridge.env`),
then the default. The seed script's variable names stay valid. Each variable is declared
once in `VARIABLES`; `.env.example` documents the same list (a test keeps them in step).

`check` reads every variable and records each one's value or problem; `load` raises
`ConfigErrors` listing every problem at once (one line each, naming the variable), so one
run shows all there is to fix. The CLI prints them and exits with `EX_CONFIG` (78), which
the systemd unit does not restart on; `callbridge config` shows the whole table with the
bad values marked.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from alerts.email import Email
from alerts.watch import Thresholds
from alerts.webhook import Webhook
from callbridge import ids
from callbridge.dialplan import DialplanTarget, parse_target
from callbridge.netaddr import ListenAddress
from callbridge.secret import MASK, Secret
from records.prices import PriceTable
from records.url import DatabaseUrl

EX_CONFIG = 78
SYSTEM_ENV_FILE = Path("/etc/callbridge/callbridge.env")


class ConfigError(Exception):
    """A configuration value is missing or invalid; `str()` is a one-line message."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem

    @property
    def errors(self) -> list[ConfigError]:
        """Every problem this exception stands for (here: itself)."""
        return [self]


class ConfigErrors(ConfigError):
    """Every problem `load` found, in `VARIABLES` order; `str()` is one line per problem.

    A `ConfigError` itself, whose `variable` and `problem` are the first problem's, so code
    written for a single error keeps working. `checked` holds every variable's row, for
    `callbridge config` to show the good values next to the bad ones.
    """

    def __init__(self, errors: list[ConfigError], checked: Checked) -> None:
        Exception.__init__(self, "\n".join(str(error) for error in errors))
        self.variable, self.problem = errors[0].variable, errors[0].problem
        self._errors = list(errors)
        self.checked = checked

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)


# --- parsers: each turns the raw text into a typed value or raises ValueError(problem)


def _text(raw: str) -> str:
    return raw.strip()


def _required_text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return value


def _secret(raw: str) -> Secret:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return Secret(value)


def _optional_secret(raw: str) -> Secret:
    value = raw.strip()
    if value and len(value) < 16:
        raise ValueError("must be at least 16 characters (a short key is guessed quickly)")
    return Secret(value)


def _timezone(raw: str) -> str:
    value = raw.strip()
    if value:
        try:
            ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(
                f"must be a timezone name like Europe/Madrid or UTC (got {value[:60]!r})"
            ) from None
    return value


def _host(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    if "://" in value or "/" in value or " " in value:
        raise ValueError(f"must be a host name or address, without scheme or path (got {value!r})")
    return value


def _integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number (got {raw.strip()!r})") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high} (got {value})")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number (got {raw.strip()!r})") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high} (got {value})")
        return value

    return parse


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false (got {raw.strip()!r})")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)} (got {raw.strip()!r})")
        return value

    return parse


def _optional_ip(raw: str) -> str:
    value = raw.strip()
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"must be an IP address or empty (got {value!r})") from None
    return value


def _port_range(raw: str) -> tuple[int, int]:
    text = raw.strip()
    low_text, sep, high_text = text.partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"must look like 10000-20000 (got {text!r})") from None
    if not sep or not 1024 <= low < high <= 65535:
        raise ValueError(f"must be LOW-HIGH with 1024 <= LOW < HIGH <= 65535 (got {text!r})")
    return low, high


def _instance_id(raw: str) -> str:
    value = raw.strip()
    problem = ids.instance_problem(value) if value else None
    if problem:
        raise ValueError(f"{problem} (got {value[:40]!r})")
    return value


def _optional_listen(raw: str) -> ListenAddress | None:
    """HOST:PORT to listen on, or None when empty (off)."""
    value = raw.strip()
    if not value:
        return None
    try:
        return ListenAddress.parse(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, or empty for off") from None


def _optional_database_url(raw: str) -> DatabaseUrl | None:
    value = raw.strip()
    return DatabaseUrl.parse(value) if value else None


def _language(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?", value):
        raise ValueError(f'must be a language code like "es" or "pt-BR", or empty (got {value[:20]!r})')
    return value


def _optional_target(raw: str) -> DialplanTarget | None:
    return parse_target(raw)


def _optional_readable_file(raw: str) -> str:
    value = raw.strip()
    if value and not os.access(value, os.R_OK):
        raise ValueError(f"cannot read {value!r}")
    return value


@dataclass(frozen=True)
class Variable:
    name: str
    parse: Callable[[str], Any]
    default: str | None  # None: the variable is required
    help: str
    group: str
    secret: bool = False

    @property
    def field(self) -> str:
        return self.name.lower()


DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise phone assistant. Speak naturally, in short sentences, "
    "in the caller's language. If you do not know something, say so."
)
DEFAULT_GREETING = "Greet the caller briefly and ask how you can help."
LANGUAGE_LINE = "\n\nSpeak {language} with the caller, unless they speak another language."
LANGUAGE_NAMES = {
    "ca": "Catalan", "de": "German", "en": "English", "es": "Spanish", "eu": "Basque",
    "fr": "French", "gl": "Galician", "it": "Italian", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "sv": "Swedish",
}  # fmt: skip


def language_name(code: str) -> str:
    """ "Spanish" for "es"; a code not in the short table is named as the code."""
    return LANGUAGE_NAMES.get(code.split("-")[0].lower(), f"the language with code {code}")


_ASTERISK, _OPENAI, _AUDIO, _CALLS, _OPS = "Asterisk", "OpenAI Realtime", "Audio", "Calls", "Operation"

VARIABLES: tuple[Variable, ...] = (
    Variable("ASTERISK_HOST", _host, "localhost", "Asterisk host (ARI)", _ASTERISK),
    Variable("ASTERISK_PORT", _integer(1, 65535), "8088", "ARI HTTP port (http.conf)", _ASTERISK),
    Variable("ASTERISK_USERNAME", _required_text, None, "ARI user (ari.conf)", _ASTERISK),
    Variable("ASTERISK_PASSWORD", _secret, None, "ARI password", _ASTERISK, secret=True),
    Variable("ASTERISK_TLS", _boolean, "false", "use https/wss for ARI", _ASTERISK),
    Variable("ARI_APP_NAME", _required_text, "openai-app", "Stasis() app name", _ASTERISK),
    Variable(
        "INSTANCE_ID",
        _instance_id,
        "",
        "names what this instance owns (ARI ids, segments); empty: from ARI_APP_NAME",
        _ASTERISK,
    ),
    Variable("OPENAI_API_KEY", _secret, None, "OpenAI API key", _OPENAI, secret=True),
    # Defaults are dated: OpenAI retires models (its "Deprecations" page). gpt-realtime shuts
    # down on 2027-01-20; "GPT-Realtime-2.1" (models page) is its replacement. `callbridge
    # check` and the service read each model's shutdown_date (callbridge/model_lifecycle.py).
    Variable("OPENAI_REALTIME_MODEL", _required_text, "gpt-realtime-2.1", "Realtime model", _OPENAI),
    Variable(
        "OPENAI_REALTIME_URL",
        _required_text,
        "wss://api.openai.com/v1/realtime",
        "Realtime WebSocket base URL",
        _OPENAI,
    ),
    Variable("OPENAI_API_SHAPE", _choice("ga", "beta"), "ga", "ga, or beta (legacy)", _OPENAI),
    Variable("OPENAI_VOICE", _required_text, "marin", "agent voice", _OPENAI),
    Variable("OPENAI_INSTRUCTIONS", _text, DEFAULT_INSTRUCTIONS, "system prompt", _OPENAI),
    Variable(
        "OPENAI_INSTRUCTIONS_FILE",
        _optional_readable_file,
        "",
        "file whose text replaces OPENAI_INSTRUCTIONS",
        _OPENAI,
    ),
    Variable("OPENAI_GREETING", _text, DEFAULT_GREETING, "greeting prompt; empty: none", _OPENAI),
    Variable(
        "OPENAI_LANGUAGE",
        _language,
        "",
        "the caller's language (es, pt-BR): transcription hint and a line in the instructions; empty: any",
        _OPENAI,
    ),
    Variable(
        "OPENAI_TRANSCRIPTION_MODEL",
        _text,
        # gpt-4o-mini-transcribe shuts down on 2027-02-26; gpt-transcribe is the replacement
        # the "Deprecations" page names, and "Migrate from Whisper to GPT-Transcribe and
        # GPT-Live-Transcribe" (OpenAI cookbook) gives it for committed Realtime turns.
        "gpt-transcribe",
        "caller transcription model; empty: off",
        _OPENAI,
    ),
    Variable("OPENAI_VAD_THRESHOLD", _number(0.0, 1.0), "0.5", "server VAD threshold", _OPENAI),
    Variable("OPENAI_VAD_SILENCE_MS", _integer(100, 5000), "500", "silence ending a turn", _OPENAI),
    Variable("OPENAI_VAD_PREFIX_MS", _integer(0, 2000), "300", "audio kept before speech", _OPENAI),
    Variable("LOCAL_IP_ADDRESS", _optional_ip, "", "RTP bind address; empty: auto", _AUDIO),
    Variable("RTP_PORT_RANGE", _port_range, "10000-20000", "UDP ports for RTP", _AUDIO),
    Variable("AUDIO_FORMAT", _choice("ulaw", "alaw"), "ulaw", "G.711 law on both legs", _AUDIO),
    Variable("MAX_CALL_SECONDS", _integer(0, 86400), "900", "call time limit; 0: none", _CALLS),
    Variable("IDLE_TIMEOUT_SECONDS", _integer(0, 3600), "60", "silence limit; 0: none", _CALLS),
    Variable(
        "FAILURE_PROMPT",
        _required_text,
        "sound:an-error-has-occurred",
        "what the caller hears when the agent is unavailable",
        _CALLS,
    ),
    Variable(
        "BUSY_PROMPT",
        _required_text,
        "sound:all-circuits-busy-now",
        "what callers over MAX_CONCURRENT_CALLS hear",
        _CALLS,
    ),
    Variable(
        "AGENTS_FILE",
        _optional_readable_file,
        "",
        "agents per number, hours, transfers, fallbacks (TOML, docs/agents.md); empty: one agent from these settings",
        _CALLS,
    ),
    Variable(
        "FALLBACK_DESTINATION",
        _optional_target,
        "",
        "CONTEXT,EXTENSION[,PRIORITY] callers go to when no call can be taken; empty: BUSY_PROMPT and hang-up",
        _CALLS,
    ),
    Variable("MAX_CONCURRENT_CALLS", _integer(1, 2000), "20", "calls at once", _CALLS),
    Variable("DRAIN_TIMEOUT_SECONDS", _integer(0, 3600), "30", "stop: wait for calls", _CALLS),
    Variable(
        "CONTROL_SOCKET_PATH",
        _required_text,
        "/run/callbridge/control.sock",
        "Unix socket for the CLI",
        _OPS,
    ),
    Variable(
        "SHM_PREFIX",
        _text,
        "",
        "name prefix of shared-memory segments; empty: callbridge-INSTANCE_ID",
        _OPS,
    ),
    Variable("CALL_RECORDS_DIR", _text, "", "JSON record per call; empty: off", _OPS),
    Variable("STATE_DIR", _required_text, "/var/lib/callbridge", "the service's own files", _OPS),
    Variable(
        "DATABASE_URL",
        _optional_database_url,
        "",
        "call history database; empty: SQLite file STATE_DIR/callbridge.db",
        _OPS,
        secret=True,
    ),
    Variable("RECORDS_TRANSCRIPTS", _boolean, "true", "keep what was said; false: turns without text", _OPS),
    Variable(
        "RECORDS_MASK_CALLERS",
        _boolean,
        "false",
        "store, log and show caller numbers masked (needs RECORDS_HASH_KEY)",
        _OPS,
    ),
    Variable("RECORDS_MASK_KEEP_DIGITS", _integer(0, 8), "3", "digits of a masked number left visible", _OPS),
    Variable(
        "RECORDS_HASH_KEY",
        _optional_secret,
        "",
        "key of the caller number's hash, so a full number finds masked calls",
        _OPS,
        secret=True,
    ),
    Variable(
        "RECORDS_RETENTION_DAYS", _integer(0, 36500), "0", "delete calls older than this; 0: keep all", _OPS
    ),
    Variable(
        "RECORDS_PRICES",
        PriceTable.parse,
        "",
        'cost estimate: JSON {"MODEL": {"input_audio": PRICE, ...}} per 1M tokens'
        ' ({"transcription_minute": PRICE} per minute for a transcription model), over the defaults',
        _OPS,
    ),
    Variable("RECORDS_CURRENCY", _text, "USD", "the currency of RECORDS_PRICES", _OPS),
    Variable(
        "RECORDS_TIMEZONE",
        _timezone,
        "",
        "timezone of the CLI's dates (Europe/Madrid); empty: the machine's",
        _OPS,
    ),
    Variable(
        "RECORDS_SPOOL_DIR",
        _text,
        "",
        "records on their way to the database; empty: STATE_DIR/spool/INSTANCE",
        _OPS,
    ),
    Variable(
        "METRICS_LISTEN",
        _optional_listen,
        "127.0.0.1:9464",
        "HOST:PORT of the Prometheus /metrics page (no login); empty: off",
        _OPS,
    ),
    Variable(
        "ALERT_WEBHOOKS",
        Webhook.parse_list,
        "",
        "built-in alerts: comma-separated [slack:|json:]URL; empty: none",
        _OPS,
        secret=True,
    ),
    Variable(
        "ALERT_SMTP_URL",
        Email.check_url,
        "",
        "alert e-mail server: smtp://USER:PASSWORD@HOST:587 (STARTTLS), smtps://...:465; empty: none",
        _OPS,
        secret=True,
    ),
    Variable("ALERT_EMAIL_FROM", _text, "", "sender of alert e-mail; empty: callbridge@HOST", _OPS),
    Variable("ALERT_EMAIL_TO", _text, "", "comma-separated recipients of alert e-mail", _OPS),
    Variable(
        "ALERT_SMTP_CA_FILE",
        _optional_readable_file,
        "",
        "CA certificates the SMTP server's is checked against; empty: the system's",
        _OPS,
    ),
    # When a built-in alert condition holds (alerts/watch.py::Thresholds); read once at start.
    Variable("ALERT_ARI_DOWN_SECONDS", _integer(0, 86400), "30", "alert: ARI down this long", _OPS),
    Variable("ALERT_CRASHES", _integer(1, 10000), "3", "alert: this many worker crashes ...", _OPS),
    Variable("ALERT_CRASH_WINDOW_SECONDS", _integer(1, 86400), "600", "... within this many seconds", _OPS),
    Variable(
        "ALERT_FAILED_RATIO",
        _number(0.0, 1.0),
        "0.2",
        "alert: failed calls over all calls above this fraction (0-1) ...",
        _OPS,
    ),
    Variable("ALERT_FAILED_MIN_CALLS", _integer(1, 100000), "5", "... of at least this many calls ...", _OPS),
    Variable(
        "ALERT_FAILED_WINDOW_SECONDS",
        _integer(1, 86400),
        "900",
        "... within this many seconds; also how long a Realtime refusal is remembered",
        _OPS,
    ),
    Variable(
        "ALERT_BUSY_WINDOW_SECONDS",
        _integer(1, 86400),
        "300",
        "alert: callers turned away this recently",
        _OPS,
    ),
    Variable(
        "ALERT_SHUTDOWN_DAYS",
        _integer(0, 3650),
        "30",
        "alert: a model shuts down within this many days",
        _OPS,
    ),
    Variable(
        "ALERT_REPEAT_SECONDS",
        _integer(0, 604800),
        "900",
        "least time between two firing alerts of one condition",
        _OPS,
    ),
    Variable("LOG_FILE_PATH", _text, "", "log file; empty: stderr only", _OPS),
    Variable("LOG_LEVEL", _choice("debug", "info", "warning", "error"), "info", "log level", _OPS),
    Variable("LOG_FORMAT", _choice("text", "json"), "text", "text or JSON lines", _OPS),
)


@dataclass(frozen=True)
class Settings:
    asterisk_host: str
    asterisk_port: int
    asterisk_username: str
    asterisk_password: Secret
    asterisk_tls: bool
    ari_app_name: str
    instance_id: str
    openai_api_key: Secret
    openai_realtime_model: str
    openai_realtime_url: str
    openai_api_shape: str
    openai_voice: str
    openai_instructions: str
    openai_instructions_file: str
    openai_greeting: str
    openai_language: str
    openai_transcription_model: str
    openai_vad_threshold: float
    openai_vad_silence_ms: int
    openai_vad_prefix_ms: int
    local_ip_address: str
    rtp_port_range: tuple[int, int]
    audio_format: str
    max_call_seconds: int
    idle_timeout_seconds: int
    failure_prompt: str
    busy_prompt: str
    agents_file: str
    fallback_destination: DialplanTarget | None
    max_concurrent_calls: int
    drain_timeout_seconds: int
    control_socket_path: str
    shm_prefix: str
    call_records_dir: str
    state_dir: str
    database_url: DatabaseUrl | None
    records_transcripts: bool
    records_mask_callers: bool
    records_mask_keep_digits: int
    records_hash_key: Secret
    records_retention_days: int
    records_prices: PriceTable
    records_currency: str
    records_timezone: str
    records_spool_dir: str
    metrics_listen: ListenAddress | None
    alert_webhooks: tuple
    alert_smtp_url: Secret
    alert_email_from: str
    alert_email_to: str
    alert_smtp_ca_file: str
    alert_ari_down_seconds: int
    alert_crashes: int
    alert_crash_window_seconds: int
    alert_failed_ratio: float
    alert_failed_min_calls: int
    alert_failed_window_seconds: int
    alert_busy_window_seconds: int
    alert_shutdown_days: int
    alert_repeat_seconds: int
    log_file_path: str
    log_level: str
    log_format: str

    @property
    def instance(self) -> str:
        """INSTANCE_ID, else ARI_APP_NAME (each app is one instance; callbridge/ids.py)."""
        return self.instance_id or ids.instance_from_app(self.ari_app_name)

    @property
    def ids(self) -> ids.InstanceIds:
        return ids.InstanceIds(self.instance)

    @property
    def segment_prefix(self) -> str:
        """SHM_PREFIX (kept for existing set-ups), else derived from the instance."""
        return self.shm_prefix or f"callbridge-{self.instance}"

    @property
    def database(self) -> DatabaseUrl:
        """DATABASE_URL, else the embedded SQLite file in STATE_DIR (shared by instances)."""
        return self.database_url or DatabaseUrl.sqlite_file(Path(self.state_dir) / "callbridge.db")

    @property
    def prices(self) -> PriceTable:
        """What cost estimates use: RECORDS_PRICES over the built-in defaults (records/prices.py)."""
        return self.records_prices.with_defaults(self.records_currency)

    @property
    def spool_dir(self) -> Path:
        """RECORDS_SPOOL_DIR, else one directory per instance: each has its own drainer."""
        return Path(self.records_spool_dir or Path(self.state_dir) / "spool" / self.instance)

    @property
    def ari_base_url(self) -> str:
        scheme = "https" if self.asterisk_tls else "http"
        return f"{scheme}://{self.asterisk_host}:{self.asterisk_port}/ari"

    @property
    def ari_events_url(self) -> str:
        scheme = "wss" if self.asterisk_tls else "ws"
        return f"{scheme}://{self.asterisk_host}:{self.asterisk_port}/ari/events"

    @property
    def realtime_url(self) -> str:
        return f"{self.openai_realtime_url}?model={self.openai_realtime_model}"

    @property
    def alert_channels(self) -> tuple:
        """Every configured alert channel (alerts/): the webhooks, then the e-mail."""
        channels = list(self.alert_webhooks)
        if self.alert_smtp_url:
            recipients = tuple(a.strip() for a in self.alert_email_to.split(",") if a.strip())
            host = self.alert_smtp_url.reveal().rpartition("@")[2].split(":")[0].split("/")[0]
            sender = self.alert_email_from or f"callbridge@{host}"
            channels.append(Email(self.alert_smtp_url, sender, recipients, self.alert_smtp_ca_file))
        return tuple(channels)

    @property
    def alert_thresholds(self) -> Thresholds:
        """The ALERT_* limits as the one object the built-in alerts take (alerts/watch.py)."""
        return Thresholds(
            ari_down_seconds=float(self.alert_ari_down_seconds),
            crashes=self.alert_crashes,
            crash_window_seconds=float(self.alert_crash_window_seconds),
            failed_ratio=self.alert_failed_ratio,
            failed_min_calls=self.alert_failed_min_calls,
            failed_window_seconds=float(self.alert_failed_window_seconds),
            busy_window_seconds=float(self.alert_busy_window_seconds),
            shutdown_days=self.alert_shutdown_days,
            repeat_seconds=float(self.alert_repeat_seconds),
        )

    def instructions(self) -> str:
        """The agent's system prompt: the file's text when one is configured, and a line
        naming the caller's language when OPENAI_LANGUAGE (or the agent's) says it."""
        if self.openai_instructions_file:
            text = Path(self.openai_instructions_file).read_text(encoding="utf-8").strip()
        else:
            text = self.openai_instructions
        if self.openai_language:
            text += LANGUAGE_LINE.format(language=language_name(self.openai_language))
        return text

    @property
    def transcription_language(self) -> str:
        """What the transcription is told the caller speaks: ISO 639-1, the code's first part."""
        return self.openai_language.split("-")[0]


assert [f.name for f in fields(Settings)] == [v.field for v in VARIABLES]


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    sources: dict[str, str]  # variable name -> "environment" | "file PATH" | "default"
    env_file: Path | None


def find_env_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The env file to read: the explicit one (which must exist), else ./.env, else the system one."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("--env-file", f"no such file: {str(path)!r}")
        return path
    for candidate in (Path(".env"), SYSTEM_ENV_FILE):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # e.g. /etc/callbridge not readable by this user
            continue
    return None


@dataclass(frozen=True)
class Entry:
    """One variable as read: where its text came from, and its value or what is wrong."""

    var: Variable
    raw: str | None  # None: not set anywhere and no default
    source: str  # "environment" | "file PATH" | "default" | "required" (not set, no default)
    value: Any = None
    problem: str | None = None  # None: the value is good

    def shown(self) -> str:
        """The value as `callbridge config` shows it, bad ones as written; secrets masked."""
        if self.problem is None:
            return _display(self.value)
        if self.raw is None:
            return "(not set)"
        text = self.raw.strip()
        return MASK if self.var.secret and text else text


@dataclass(frozen=True)
class Checked:
    entries: tuple[Entry, ...]  # one per variable, in VARIABLES order
    env_file: Path | None

    def errors(self) -> list[ConfigError]:
        return [ConfigError(e.var.name, e.problem) for e in self.entries if e.problem is not None]


def check(
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Checked:
    """Read and parse every variable, recording each problem instead of stopping at the first.

    Raises `ConfigError` only when the env file itself cannot be found or read.
    """
    environ = os.environ if environ is None else environ
    path = find_env_file(env_file)
    file_values: dict[str, str | None] = {}
    if path is not None:
        try:
            file_values = dotenv_values(path)
        except OSError as exc:
            raise ConfigError("--env-file", f"cannot read {str(path)!r}: {exc.strerror}") from None
    entries = []
    for var in VARIABLES:
        if var.name in environ:
            raw, source = environ[var.name], "environment"
        elif file_values.get(var.name) is not None:
            raw, source = file_values[var.name], f"file {path}"
        elif var.default is not None:
            raw, source = var.default, "default"
        else:
            entries.append(Entry(var, None, "required", problem=f"is not set ({var.help}; see .env.example)"))
            continue
        try:
            entries.append(Entry(var, raw, source, value=var.parse(raw)))
        except ValueError as exc:
            problem = str(exc)
            if var.secret and raw.strip():  # a parser that quotes its input must not leak a secret
                problem = problem.replace(raw.strip(), MASK)
            entries.append(Entry(var, raw, source, problem=problem))
    return Checked(tuple(_relations(entries)), path)


def _relations(entries: list[Entry]) -> list[Entry]:
    """Problems that lie between variables, reported on the variable that must change."""
    by_name = {entry.var.name: entry for entry in entries}
    mask, key = by_name["RECORDS_MASK_CALLERS"], by_name["RECORDS_HASH_KEY"]
    if mask.value and key.problem is None and not key.value:
        # Without the hash a masked number could never be found by the full number again.
        problem = "is empty, but RECORDS_MASK_CALLERS=true needs it (the full number finds masked calls)"
        entries[entries.index(key)] = Entry(key.var, key.raw, key.source, problem=problem)
    smtp, to = by_name["ALERT_SMTP_URL"], by_name["ALERT_EMAIL_TO"]
    if smtp.value and to.problem is None and not str(to.value or "").strip():
        problem = "is empty, but ALERT_SMTP_URL is set: name who gets the alert e-mail"
        entries[entries.index(to)] = Entry(to.var, to.raw, to.source, problem=problem)
    return entries


def load(
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Loaded:
    """Build `Settings`; raises `ConfigErrors` naming every bad variable (or `ConfigError`
    for an env file that cannot be read)."""
    checked = check(env_file, environ)
    errors = checked.errors()
    if errors:
        raise ConfigErrors(errors, checked)
    values = {e.var.field: e.value for e in checked.entries}
    sources = {e.var.name: e.source for e in checked.entries}
    return Loaded(Settings(**values), sources, checked.env_file)


def _display(value: Any) -> str:
    """A parsed value as `callbridge config` shows it: secrets masked, tuples joined."""
    if value is None:  # an optional value left empty
        return ""
    if isinstance(value, tuple):
        return "-".join(str(part) for part in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
