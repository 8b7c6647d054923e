"""callbridge's configuration: one typed, immutable `Settings` built from the environment.

Values come from, in order of precedence: the process environment, an env file
(`--env-file PATH`, else `./.env`, else `/etc/callbridge/callbridge.env`; read one way
only, callbridge/env_file.py, which also reports lines it cannot read and names it does not
know), then the default. The seed script's variable names stay valid. Each variable is declared
once in `VARIABLES` (callbridge/config_variables.py, its parsers in
callbridge/config_parsers.py); `.env.example` documents the same list (a test keeps them in
step). This module holds what is built from them and how: `Settings`, `check`, `load`.

`check` reads every variable and records each one's value or problem; `load` raises
`ConfigErrors` listing every problem at once (one line each, naming the variable), so one
run shows all there is to fix. The CLI prints them and exits with `EX_CONFIG` (78), which
the systemd unit does not restart on; `callbridge config` shows the whole table with the
bad values marked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from callbridge import cleartext, ids, voice_tuning
from callbridge.alert_settings import Email, Thresholds
from callbridge.config_variables import VARIABLES, Variable
from callbridge.database_url import DatabaseUrl
from callbridge.dialplan import DialplanTarget
from callbridge.env_file import EnvFile, read_env_file
from callbridge.netaddr import ListenAddress
from callbridge.prices import PriceTable
from callbridge.secret import MASK, Secret

EX_CONFIG = 78
SYSTEM_ENV_FILE = Path("/etc/callbridge/callbridge.env")
OPERATORS_ENV_FILE = Path("/etc/callbridge/operators.env")  # install_service.sh: no secrets in it


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


# The line the agent's instructions end with when the caller's language is known.
LANGUAGE_LINE = "\n\nSpeak {language} with the caller, unless they speak another language."
LANGUAGE_NAMES = {
    "ca": "Catalan", "de": "German", "en": "English", "es": "Spanish", "eu": "Basque",
    "fr": "French", "gl": "Galician", "it": "Italian", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "sv": "Swedish",
}  # fmt: skip


def language_name(code: str) -> str:
    """ "Spanish" for "es"; a code not in the short table is named as the code."""
    return LANGUAGE_NAMES.get(code.split("-")[0].lower(), f"the language with code {code}")


def instance_path(chosen: str, state_dir: str, kind: str, instance: str) -> Path:
    """A directory a setting names, else the instance's own under STATE_DIR (the spool,
    the recordings): the one rule for the service and the command line."""
    return Path(chosen or Path(state_dir) / kind / instance)


@dataclass(frozen=True)
class Settings:
    asterisk_host: str
    asterisk_port: int
    asterisk_username: str
    asterisk_password: Secret
    asterisk_tls: bool
    asterisk_ca_file: str
    allow_plaintext_credentials: bool
    ari_app_name: str
    instance_id: str
    openai_api_key: Secret
    openai_realtime_model: str
    openai_realtime_url: str
    openai_api_shape: str
    openai_api: str  # "realtime" | "live", resolved at load (`_api_relations`)
    openai_live_url: str
    openai_live_backend_model: str
    openai_voice: str
    openai_instructions: str
    openai_instructions_file: str
    openai_greeting: str
    openai_language: str
    openai_transcription_model: str
    openai_vad_threshold: float
    openai_vad_silence_ms: int
    openai_vad_prefix_ms: int
    openai_turn_detection: str
    openai_vad_eagerness: str
    openai_noise_reduction: str
    openai_reasoning_effort: str
    openai_speed: float
    openai_transcription_prompt: str
    openai_transcription_keywords: tuple
    local_ip_address: str
    rtp_port_range: tuple[int, int]
    audio_format: str
    media_realtime_priority: int
    max_call_seconds: int
    idle_timeout_seconds: int
    failure_prompt: str
    busy_prompt: str
    agents_file: str
    fallback_destination: DialplanTarget | None
    max_concurrent_calls: int
    max_calls_per_caller_per_hour: int
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
    record_calls: bool
    recordings_dir: str
    recordings_retention_days: int | None
    summary_model: str
    openai_responses_url: str
    summary_retry_hours: float
    metrics_listen: ListenAddress | None
    web_listen: ListenAddress | None
    web_session_hours: int
    web_secret_key: Secret
    web_trusted_proxies: tuple
    alert_webhooks: tuple
    alert_smtp_url: Secret
    alert_email_from: str
    alert_email_to: str
    alert_smtp_ca_file: str
    call_webhooks: tuple
    call_webhook_secret: Secret
    call_webhook_retry_hours: float
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
    log_utterances: bool

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
        """What cost estimates use: RECORDS_PRICES over the built-in defaults (callbridge/prices.py)."""
        return self.records_prices.with_defaults(self.records_currency)

    @property
    def spool_dir(self) -> Path:
        """RECORDS_SPOOL_DIR, else one directory per instance: each has its own drainer."""
        return instance_path(self.records_spool_dir, self.state_dir, "spool", self.instance)

    @property
    def recordings_path(self) -> Path:
        """RECORDINGS_DIR, else one directory per instance under STATE_DIR (the unit may write it)."""
        return instance_path(self.recordings_dir, self.state_dir, "recordings", self.instance)

    @property
    def recordings_retention(self) -> int:
        """RECORDINGS_RETENTION_DAYS, else RECORDS_RETENTION_DAYS (0: keep all)."""
        days = self.recordings_retention_days
        return self.records_retention_days if days is None else days

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
        if self.mail_server is not None:
            channels.append(self.mail_server)
        return tuple(channels)

    @property
    def mail_server(self) -> Email | None:
        """ALERT_SMTP_URL's server with ALERT_EMAIL_FROM and ALERT_EMAIL_TO (the alerts'
        recipients; the summaries' mail names its own), or None when it is not set."""
        if not self.alert_smtp_url:
            return None
        recipients = tuple(a.strip() for a in self.alert_email_to.split(",") if a.strip())
        host = self.alert_smtp_url.reveal().rpartition("@")[2].split(":")[0].split("/")[0]
        sender = self.alert_email_from or f"callbridge@{host}"
        return Email(self.alert_smtp_url, sender, recipients, self.alert_smtp_ca_file)

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
KNOWN_NAMES = {v.name for v in VARIABLES}


@dataclass(frozen=True)
class Loaded:
    settings: Settings
    sources: dict[str, str]  # variable name -> "environment" | "file PATH" | "default"
    env_file: Path | None
    notes: tuple[str, ...] = ()  # the env file's warnings (unknown names, placeholders)


def find_env_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The env file to read: the explicit one (which must exist), else ./.env, else the system one."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("--env-file", f"no such file: {str(path)!r}")
        return path
    # An operator may not read the service's file (it holds the secrets): then the operators'
    # own (where the history is, and a read-only database credential; docs/operations.md).
    for candidate in (Path(".env"), SYSTEM_ENV_FILE, OPERATORS_ENV_FILE):
        try:
            if candidate.is_file() and os.access(candidate, os.R_OK):
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
    file: EnvFile | None = None  # what the env file held, and what is wrong in it

    def errors(self) -> list[ConfigError]:
        found = [ConfigError("env file", problem) for problem in (self.file.problems if self.file else [])]
        return found + [ConfigError(e.var.name, e.problem) for e in self.entries if e.problem is not None]

    def notes(self) -> list[str]:
        """Warnings about the env file: unknown names, placeholders (they never stop a start)."""
        return list(self.file.notes) if self.file else []


def check(
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Checked:
    """Read and parse every variable, recording each problem instead of stopping at the first.

    Raises `ConfigError` only when the env file itself cannot be found or read.
    """
    environ = os.environ if environ is None else environ
    path = find_env_file(env_file)
    file_values: dict[str, str] = {}
    file = None
    if path is not None:
        try:
            file = read_env_file(path, KNOWN_NAMES)
        except OSError as exc:
            raise ConfigError("--env-file", f"cannot read {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError("--env-file", f"{str(path)!r} is not UTF-8 text") from None
        file_values = file.values
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
    return Checked(tuple(_relations(entries)), path, file)


def plaintext_exposures(by_name: dict[str, Entry]) -> list[tuple[str, str]]:
    """callbridge/cleartext.py's rule over the entries that parsed."""

    def value(name: str, default):
        entry = by_name[name]
        return entry.value if entry.problem is None and entry.value is not None else default

    hooks = value("ALERT_WEBHOOKS", ())
    return cleartext.exposures(
        str(value("ASTERISK_HOST", "localhost")),
        bool(value("ASTERISK_TLS", False)),
        str(value("OPENAI_REALTIME_URL", "")),
        [hook.url.reveal() for hook in hooks],
        value("ALERT_SMTP_URL", None).reveal() if value("ALERT_SMTP_URL", None) else "",
        [target.url.reveal() for target in value("CALL_WEBHOOKS", ())],
        str(value("OPENAI_LIVE_URL", "")),
        str(value("OPENAI_RESPONSES_URL", "")) if value("SUMMARY_MODEL", "") else "",
    )


def _relations(entries: list[Entry]) -> list[Entry]:
    """Problems that lie between variables, reported on the variable that must change."""
    by_name = {entry.var.name: entry for entry in entries}
    mask, key = by_name["RECORDS_MASK_CALLERS"], by_name["RECORDS_HASH_KEY"]
    if mask.value and key.problem is None and not key.value:
        # Without the hash a masked number could never be found by the full number again.
        problem = "is empty, but RECORDS_MASK_CALLERS=true needs it (the full number finds masked calls)"
        entries[entries.index(key)] = Entry(key.var, key.raw, key.source, problem=problem)
    if not by_name["ALLOW_PLAINTEXT_CREDENTIALS"].value:
        for name, problem in plaintext_exposures(by_name):
            entry = by_name[name]
            if entry.problem is None:
                by_name[name] = replaced = Entry(entry.var, entry.raw, entry.source, problem=problem)
                entries[entries.index(entry)] = replaced
    _api_relations(entries, by_name)
    _tuning_relations(entries, by_name)
    hooks, signing = by_name["CALL_WEBHOOKS"], by_name["CALL_WEBHOOK_SECRET"]
    if hooks.value and signing.problem is None and not signing.value:
        problem = "is empty, but CALL_WEBHOOKS is set: every delivery is signed (X-Callbridge-Signature)"
        entries[entries.index(signing)] = Entry(signing.var, signing.raw, signing.source, problem=problem)
    smtp, to = by_name["ALERT_SMTP_URL"], by_name["ALERT_EMAIL_TO"]
    if smtp.value and to.problem is None and not str(to.value or "").strip():
        problem = "is empty, but ALERT_SMTP_URL is set: name who gets the alert e-mail"
        entries[entries.index(to)] = Entry(to.var, to.raw, to.source, problem=problem)
    return entries


LIVE_DEFAULT_MODEL = "gpt-live-1.1"
REALTIME_DEFAULT_MODEL = "gpt-realtime-2.1"


def is_live_model(model: str) -> bool:
    """GPT-Live's models (gpt-live-1, gpt-live-1.1) run only on its own endpoint."""
    return model.strip().lower().startswith("gpt-live")


def resolve_api(api: str, model: str, model_chosen: bool) -> tuple[str, str]:
    """The API and model a call runs on, for the environment and for each agent alike: an
    empty `api` goes by the model's name; a model not `model_chosen` (a default, or the
    environment's under an agent that names only its api) becomes that API's default when
    the API does not run it."""
    if not api:
        api = "live" if is_live_model(model) else "realtime"
    if not model_chosen and (api == "live") != is_live_model(model):
        model = LIVE_DEFAULT_MODEL if api == "live" else REALTIME_DEFAULT_MODEL
    return api, model


def api_problem(api: str, model: str, setting: str = "OPENAI_API") -> str | None:
    """Why `model` cannot run on `api` (chosen by `setting`), if it cannot."""
    if api == "live" and not is_live_model(model):
        return f"{model!r} is not a GPT-Live model ({setting}=live): gpt-live-1 or gpt-live-1.1"
    if api == "realtime" and is_live_model(model):
        return f"{model!r} runs only on GPT-Live: set {setting}=live (or leave it empty)"
    return None


def _api_relations(entries: list[Entry], by_name: dict[str, Entry]) -> None:
    """OPENAI_API resolved (empty: by the model's name), the model's default under Live,
    and a model that the chosen API does not run."""
    api, model = by_name["OPENAI_API"], by_name["OPENAI_REALTIME_MODEL"]
    if api.problem is not None or model.problem is not None:
        return

    def put(entry: Entry, **changes) -> Entry:
        by_name[entry.var.name] = new = replace(entry, **changes)
        entries[entries.index(entry)] = new
        return new

    chosen_api, chosen_model = resolve_api(api.value, model.value, model.source != "default")
    if chosen_api != api.value:
        api = put(api, value=chosen_api)
    if chosen_model != model.value:
        model = put(model, value=chosen_model)
    problem = api_problem(api.value, model.value)
    if problem is not None:
        put(model, problem=problem)
    if api.value == "live":
        for name in voice_tuning.ENV_NAMES.values():
            entry = by_name[name]
            if entry.problem is None and entry.source != "default":
                put(
                    entry,
                    problem="GPT-Live has no such setting (the model itself owns turns and voice); unset it",
                )


def _tuning_relations(entries: list[Entry], by_name: dict[str, Entry]) -> None:
    """A voice tuning the model or API shape lacks (callbridge/voice_tuning.py), on the
    tuning's variable. A variable that is itself bad counts as its default here, so that
    one run still shows every other problem (and none twice)."""
    looked_at = [*voice_tuning.ENV_NAMES.values(), "OPENAI_REALTIME_MODEL", "OPENAI_API_SHAPE"]
    looked_at.append("OPENAI_TRANSCRIPTION_MODEL")
    values = {}
    for name in looked_at:
        entry = by_name[name]
        values[name.lower()] = entry.value if entry.problem is None else entry.var.parse(entry.var.default)
    for key, problem in voice_tuning.problems(SimpleNamespace(**values)):  # read as Settings is
        entry = by_name[voice_tuning.ENV_NAMES[key]]
        if entry.problem is not None:
            continue
        by_name[entry.var.name] = replaced = Entry(entry.var, entry.raw, entry.source, problem=problem)
        entries[entries.index(entry)] = replaced


def load(
    env_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Loaded:
    """Build `Settings`; raises `ConfigErrors` naming every bad variable (or `ConfigError`
    for an env file that cannot be read)."""
    return loaded_from(check(env_file, environ))


CREDENTIALS = ("ASTERISK_USERNAME", "ASTERISK_PASSWORD", "OPENAI_API_KEY")


def load_without_credentials(env_file: str | os.PathLike[str] | None = None) -> Loaded:
    """As `load`, for the commands that never talk to Asterisk or OpenAI (`agents`): the
    credentials may be missing (they stay empty); any other problem is still an error."""
    checked = check(env_file)
    entries = tuple(
        replace(e, value=Secret("") if e.var.secret else "", problem=None)
        if e.var.name in CREDENTIALS and e.problem is not None and e.raw is None
        else e
        for e in checked.entries
    )
    return loaded_from(replace(checked, entries=entries))


def loaded_from(checked: Checked) -> Loaded:
    """The settings of a check with no errors; raises `ConfigErrors` otherwise."""
    errors = checked.errors()
    if errors:
        raise ConfigErrors(errors, checked)
    values = {e.var.field: e.value for e in checked.entries}
    sources = {e.var.name: e.source for e in checked.entries}
    return Loaded(Settings(**values), sources, checked.env_file, tuple(checked.notes()))


def _display(value: Any) -> str:
    """A parsed value as `callbridge config` shows it: secrets masked, tuples joined."""
    if value is None:  # an optional value left empty
        return ""
    if isinstance(value, tuple):  # a port range is LOW-HIGH; lists are comma-separated
        joint = "-" if value and all(isinstance(part, int) for part in value) else ", "
        return joint.join(str(part) for part in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
