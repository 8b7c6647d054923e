"""Every variable callbridge reads, declared once: `VARIABLES`, each one's name, parser,
default, help line and group, in the order `callbridge config` shows them and
`Settings` (callbridge/config.py) has its fields.

`.env.example` and the README's configuration table list the same variables (tests keep
them in step). The table is apart from `Settings` and from reading the environment
(callbridge/config.py) because it is what grows with each new setting; its parsers are in
callbridge/config_parsers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callbridge import call_webhooks
from callbridge import config_parsers as parse
from callbridge import voice_tuning as tuning
from callbridge.alert_settings import Email, Webhook
from callbridge.prices import PriceTable


@dataclass(frozen=True)
class Variable:
    """One setting. `default` None: it must be set. `secret`: `callbridge config` shows it
    masked, and `check` masks its text in a parser's problem too."""

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

# The groups the variables fall in: the sections of .env.example.
_ASTERISK, _OPENAI, _AUDIO, _CALLS, _OPS = "Asterisk", "OpenAI Realtime", "Audio", "Calls", "Operation"

VARIABLES: tuple[Variable, ...] = (
    Variable("ASTERISK_HOST", parse.host, "localhost", "Asterisk host (ARI)", _ASTERISK),
    Variable("ASTERISK_PORT", parse.integer(1, 65535), "8088", "ARI HTTP port (http.conf)", _ASTERISK),
    Variable("ASTERISK_USERNAME", parse.required_text, None, "ARI user (ari.conf)", _ASTERISK),
    Variable("ASTERISK_PASSWORD", parse.secret, None, "ARI password", _ASTERISK, secret=True),
    Variable("ASTERISK_TLS", parse.boolean, "false", "use https/wss for ARI", _ASTERISK),
    Variable(
        "ASTERISK_CA_FILE",
        parse.optional_readable_file,
        "",
        "CA certificates ARI's TLS certificate is checked against (a private CA); empty: the system's",
        _ASTERISK,
    ),
    Variable(
        "ALLOW_PLAINTEXT_CREDENTIALS",
        parse.boolean,
        "false",
        "true: allow credentials in the clear to another host (ARI without TLS, ws://, http:// webhooks, smtp+insecure:// with a login); false: refused",
        _ASTERISK,
    ),
    Variable(
        "ARI_APP_NAME", parse.app_name, "openai-app", "Stasis() app name (letters, digits, _ . -)", _ASTERISK
    ),
    Variable(
        "INSTANCE_ID",
        parse.instance_id,
        "",
        "names what this instance owns (ARI ids, segments); empty: from ARI_APP_NAME",
        _ASTERISK,
    ),
    Variable("OPENAI_API_KEY", parse.secret, None, "OpenAI API key", _OPENAI, secret=True),
    # Defaults are dated: OpenAI retires models (its "Deprecations" page). gpt-realtime shuts
    # down on 2027-01-20; "GPT-Realtime-2.1" (models page) is its replacement. `callbridge
    # check` and the service read each model's shutdown_date (callbridge/model_lifecycle.py).
    Variable("OPENAI_REALTIME_MODEL", parse.required_text, "gpt-realtime-2.1", "Realtime model", _OPENAI),
    Variable(
        "OPENAI_REALTIME_URL",
        parse.required_text,
        "wss://api.openai.com/v1/realtime",
        "Realtime WebSocket base URL",
        _OPENAI,
    ),
    Variable(
        "OPENAI_API_SHAPE", parse.choice("ga", "beta"), "ga", "Realtime's ga, or beta (legacy)", _OPENAI
    ),
    # GPT-Live (call_worker/live_adapter.py) beside Realtime: empty chooses by the model's
    # name (gpt-live-*: live), and under live an unset OPENAI_REALTIME_MODEL is gpt-live-1.1.
    Variable(
        "OPENAI_API",
        parse.choice("", "realtime", "live"),
        "",
        "realtime or live; empty: by the model's name",
        _OPENAI,
    ),
    Variable(
        "OPENAI_LIVE_URL",
        parse.required_text,
        "wss://api.openai.com/v1/live/sessions",
        "GPT-Live WebSocket URL",
        _OPENAI,
    ),
    Variable(
        "OPENAI_LIVE_BACKEND_MODEL",
        parse.required_text,
        "gpt-5.6-luna",
        "GPT-Live's delegation model (runs the agent's tools)",
        _OPENAI,
    ),
    Variable("OPENAI_VOICE", parse.required_text, "marin", "agent voice", _OPENAI),
    Variable("OPENAI_INSTRUCTIONS", parse.text, DEFAULT_INSTRUCTIONS, "system prompt", _OPENAI),
    Variable(
        "OPENAI_INSTRUCTIONS_FILE",
        parse.optional_readable_file,
        "",
        "file whose text replaces OPENAI_INSTRUCTIONS",
        _OPENAI,
    ),
    Variable("OPENAI_GREETING", parse.text, DEFAULT_GREETING, "greeting prompt; empty: none", _OPENAI),
    Variable(
        "OPENAI_LANGUAGE",
        parse.language,
        "",
        "the caller's language (es, pt-BR): transcription hint and a line in the instructions; empty: any",
        _OPENAI,
    ),
    Variable(
        "OPENAI_TRANSCRIPTION_MODEL",
        parse.text,
        # gpt-4o-mini-transcribe shuts down on 2027-02-26; gpt-transcribe is the replacement
        # the "Deprecations" page names, and "Migrate from Whisper to GPT-Transcribe and
        # GPT-Live-Transcribe" (OpenAI cookbook) gives it for committed Realtime turns.
        "gpt-transcribe",
        "caller transcription model; empty: off",
        _OPENAI,
    ),
    Variable("OPENAI_VAD_THRESHOLD", parse.number(0.0, 1.0), "0.5", "server VAD threshold", _OPENAI),
    Variable("OPENAI_VAD_SILENCE_MS", parse.integer(100, 5000), "500", "silence ending a turn", _OPENAI),
    Variable("OPENAI_VAD_PREFIX_MS", parse.integer(0, 2000), "300", "audio kept before speech", _OPENAI),
    # The voice's tuning (callbridge/voice_tuning.py): defaults every agent may override.
    Variable(
        "OPENAI_TURN_DETECTION",
        parse.choice(*tuning.DETECTIONS),
        "server_vad",
        "what ends the caller's turn: server_vad (silence, the OPENAI_VAD_* numbers) or semantic_vad (what was said)",
        _OPENAI,
    ),
    Variable(
        "OPENAI_VAD_EAGERNESS",
        parse.choice(*tuning.EAGERNESS),
        "auto",
        "semantic_vad: how soon a turn ends (low waits for the caller to finish, high answers soonest)",
        _OPENAI,
    ),
    Variable(
        "OPENAI_NOISE_REDUCTION",
        parse.choice(*tuning.NOISE_REDUCTIONS),
        "off",
        "input noise reduction: near_field (handsets, headsets), far_field (speakerphones), off",
        _OPENAI,
    ),
    Variable(
        "OPENAI_REASONING_EFFORT",
        parse.choice("", *tuning.EFFORTS),
        "",
        "how long a reasoning model (gpt-realtime-2.x) thinks: minimal, low, medium, high, xhigh; empty: the model's default",
        _OPENAI,
    ),
    Variable(
        "OPENAI_SPEED",
        parse.number(tuning.SPEED_MIN, tuning.SPEED_MAX),
        "1.0",
        "how fast the agent speaks (0.25-1.5)",
        _OPENAI,
    ),
    Variable(
        "OPENAI_TRANSCRIPTION_PROMPT",
        tuning.prompt,
        "",
        "what the caller's transcription is told to expect (GPT transcription models)",
        _OPENAI,
    ),
    Variable(
        "OPENAI_TRANSCRIPTION_KEYWORDS",
        tuning.keywords,
        "",
        "comma-separated names and words the caller may say (product names, streets)",
        _OPENAI,
    ),
    Variable("LOCAL_IP_ADDRESS", parse.optional_ip, "", "RTP bind address; empty: auto", _AUDIO),
    Variable("RTP_PORT_RANGE", parse.port_range, "10000-20000", "UDP ports for RTP", _AUDIO),
    Variable("AUDIO_FORMAT", parse.choice("ulaw", "alaw"), "ulaw", "G.711 law on both legs", _AUDIO),
    Variable(
        "MEDIA_REALTIME_PRIORITY",
        parse.integer(0, 99),
        "1",
        "SCHED_FIFO priority of each call's media thread (its frames leave on time on a busy host); 0: normal",
        _AUDIO,
    ),
    Variable("MAX_CALL_SECONDS", parse.integer(0, 86400), "900", "call time limit; 0: none", _CALLS),
    Variable("IDLE_TIMEOUT_SECONDS", parse.integer(0, 3600), "60", "silence limit; 0: none", _CALLS),
    Variable(
        "FAILURE_PROMPT",
        parse.required_text,
        "sound:an-error-has-occurred",
        "what the caller hears when the agent is unavailable",
        _CALLS,
    ),
    Variable(
        "BUSY_PROMPT",
        parse.required_text,
        "sound:all-circuits-busy-now",
        "what callers over MAX_CONCURRENT_CALLS hear",
        _CALLS,
    ),
    Variable(
        "AGENTS_FILE",
        parse.optional_readable_file,
        "",
        "agents per number, hours, transfers, fallbacks (TOML, docs/agents.md); empty: one agent from these settings",
        _CALLS,
    ),
    Variable(
        "FALLBACK_DESTINATION",
        parse.optional_target,
        "",
        "CONTEXT,EXTENSION[,PRIORITY] callers go to when no call can be taken; empty: BUSY_PROMPT and hang-up",
        _CALLS,
    ),
    Variable("MAX_CONCURRENT_CALLS", parse.integer(1, 2000), "20", "calls at once", _CALLS),
    Variable(
        "MAX_CALLS_PER_CALLER_PER_HOUR",
        parse.integer(0, 100000),
        "0",
        "calls one number may start within an hour; past it, turned away busy; 0: no limit",
        _CALLS,
    ),
    Variable("DRAIN_TIMEOUT_SECONDS", parse.integer(0, 3600), "30", "stop: wait for calls", _CALLS),
    Variable(
        "CONTROL_SOCKET_PATH",
        parse.required_text,
        "/run/callbridge/control.sock",
        "Unix socket for the CLI",
        _OPS,
    ),
    Variable(
        "SHM_PREFIX",
        parse.text,
        "",
        "name prefix of shared-memory segments; empty: callbridge-INSTANCE_ID",
        _OPS,
    ),
    Variable("CALL_RECORDS_DIR", parse.text, "", "JSON record per call; empty: off", _OPS),
    Variable("STATE_DIR", parse.required_text, "/var/lib/callbridge", "the service's own files", _OPS),
    Variable(
        "DATABASE_URL",
        parse.optional_database_url,
        "",
        "call history database; empty: SQLite file STATE_DIR/callbridge.db",
        _OPS,
        secret=True,
    ),
    Variable(
        "RECORDS_TRANSCRIPTS", parse.boolean, "true", "keep what was said; false: turns without text", _OPS
    ),
    Variable(
        "RECORDS_MASK_CALLERS",
        parse.boolean,
        "false",
        "store, log and show caller numbers masked (needs RECORDS_HASH_KEY)",
        _OPS,
    ),
    Variable(
        "RECORDS_MASK_KEEP_DIGITS", parse.integer(0, 8), "3", "digits of a masked number left visible", _OPS
    ),
    Variable(
        "RECORDS_HASH_KEY",
        parse.optional_secret,
        "",
        "key of the caller number's hash, so a full number finds masked calls",
        _OPS,
        secret=True,
    ),
    Variable(
        "RECORDS_RETENTION_DAYS",
        parse.integer(0, 36500),
        "0",
        "delete calls older than this; 0: keep all",
        _OPS,
    ),
    Variable(
        "RECORDS_PRICES",
        PriceTable.parse,
        "",
        'cost estimate: JSON {"MODEL": {"input_audio": PRICE, ...}} per 1M tokens'
        ' ({"transcription_minute": PRICE} per minute for a transcription model), over the defaults',
        _OPS,
    ),
    Variable("RECORDS_CURRENCY", parse.text, "USD", "the currency of RECORDS_PRICES", _OPS),
    Variable(
        "RECORDS_TIMEZONE",
        parse.timezone,
        "",
        "timezone of the CLI's dates (Europe/Madrid); empty: the machine's",
        _OPS,
    ),
    Variable(
        "RECORDS_SPOOL_DIR",
        parse.text,
        "",
        "records on their way to the database; empty: STATE_DIR/spool/INSTANCE",
        _OPS,
    ),
    Variable(
        "RECORD_CALLS",
        parse.boolean,
        "false",
        "record every call (two-channel WAV); false: only agents with record = true",
        _OPS,
    ),
    Variable(
        "RECORDINGS_DIR",
        parse.text,
        "",
        "where recordings are kept; empty: STATE_DIR/recordings/INSTANCE",
        _OPS,
    ),
    Variable(
        "RECORDINGS_RETENTION_DAYS",
        parse.optional_integer(0, 36500),
        "",
        "delete recordings older than this; 0: keep all; empty: RECORDS_RETENTION_DAYS",
        _OPS,
    ),
    Variable(
        "SUMMARY_MODEL",
        parse.text,
        "",
        "text model that summarizes each call after it ends (gpt-5.4-mini); empty: no summaries",
        _OPS,
    ),
    Variable(
        "OPENAI_RESPONSES_URL",
        parse.text,
        "https://api.openai.com/v1/responses",
        "the Responses API the summaries are asked of",
        _OPS,
    ),
    Variable(
        "SUMMARY_RETRY_HOURS",
        parse.number(0.01, 720.0),
        "24",
        "a summary that keeps failing is retried this long, then set aside",
        _OPS,
    ),
    Variable(
        "METRICS_LISTEN",
        parse.optional_listen,
        "127.0.0.1:9464",
        "HOST:PORT of the Prometheus /metrics page (no login); empty: off",
        _OPS,
    ),
    Variable(
        "WEB_LISTEN",
        parse.optional_listen,
        "127.0.0.1:8470",
        "HOST:PORT of the web dashboard (every page behind a login); empty: off",
        _OPS,
    ),
    Variable(
        "WEB_SESSION_HOURS",
        parse.integer(1, 24 * 90),
        "12",
        "a dashboard login lasts this long",
        _OPS,
    ),
    Variable(
        "WEB_SECRET_KEY",
        parse.optional_secret,
        "",
        "signs the dashboard's cookies; empty: one generated into STATE_DIR/web-secret-key",
        _OPS,
        secret=True,
    ),
    Variable(
        "WEB_TRUSTED_PROXIES",
        parse.networks,
        "",
        "reverse proxies whose X-Forwarded-For and -Proto the dashboard believes (10.0.0.1,10.1.0.0/16)",
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
    Variable("ALERT_EMAIL_FROM", parse.text, "", "sender of alert e-mail; empty: callbridge@HOST", _OPS),
    Variable("ALERT_EMAIL_TO", parse.text, "", "comma-separated recipients of alert e-mail", _OPS),
    Variable(
        "ALERT_SMTP_CA_FILE",
        parse.optional_readable_file,
        "",
        "CA certificates the SMTP server's is checked against; empty: the system's",
        _OPS,
    ),
    Variable(
        "CALL_WEBHOOKS",
        call_webhooks.parse_list,
        "",
        "call.started and call.ended are posted to these comma-separated URLs; empty: none",
        _OPS,
        secret=True,
    ),
    Variable(
        "CALL_WEBHOOK_SECRET",
        parse.optional_secret,
        "",
        "signs each webhook delivery (X-Callbridge-Signature); needed when any webhook is set",
        _OPS,
        secret=True,
    ),
    Variable(
        "CALL_WEBHOOK_RETRY_HOURS",
        parse.number(0.01, 168.0),
        "24",
        "a delivery that keeps failing is retried this long, then moved to the spool's bad/",
        _OPS,
    ),
    # When a built-in alert condition holds (alerts/watch.py::Thresholds); read once at start.
    Variable("ALERT_ARI_DOWN_SECONDS", parse.integer(0, 86400), "30", "alert: ARI down this long", _OPS),
    Variable("ALERT_CRASHES", parse.integer(1, 10000), "3", "alert: this many worker crashes ...", _OPS),
    Variable(
        "ALERT_CRASH_WINDOW_SECONDS", parse.integer(1, 86400), "600", "... within this many seconds", _OPS
    ),
    Variable(
        "ALERT_FAILED_RATIO",
        parse.number(0.0, 1.0),
        "0.2",
        "alert: failed calls over all calls above this fraction (0-1) ...",
        _OPS,
    ),
    Variable(
        "ALERT_FAILED_MIN_CALLS", parse.integer(1, 100000), "5", "... of at least this many calls ...", _OPS
    ),
    Variable(
        "ALERT_FAILED_WINDOW_SECONDS",
        parse.integer(1, 86400),
        "900",
        "... within this many seconds; also how long a Realtime refusal is remembered",
        _OPS,
    ),
    Variable(
        "ALERT_BUSY_WINDOW_SECONDS",
        parse.integer(1, 86400),
        "300",
        "alert: callers turned away this recently",
        _OPS,
    ),
    Variable(
        "ALERT_SHUTDOWN_DAYS",
        parse.integer(0, 3650),
        "30",
        "alert: a model shuts down within this many days",
        _OPS,
    ),
    Variable(
        "ALERT_REPEAT_SECONDS",
        parse.integer(0, 604800),
        "900",
        "least time between two firing alerts of one condition",
        _OPS,
    ),
    Variable("LOG_FILE_PATH", parse.text, "", "log file; empty: stderr only", _OPS),
    Variable("LOG_LEVEL", parse.choice("debug", "info", "warning", "error"), "info", "log level", _OPS),
    Variable("LOG_FORMAT", parse.choice("text", "json"), "text", "text or JSON lines", _OPS),
    Variable(
        "LOG_UTTERANCES",
        parse.boolean,
        "false",
        "log what callers and agents say, and tool arguments, at info; false: only at LOG_LEVEL=debug; never with RECORDS_TRANSCRIPTS=false",
        _OPS,
    ),
)
