"""The call history's tables, declared once (SQLAlchemy Core). Migrations in
records/migrations/versions must produce exactly this; tests/test_records_store.py checks it.

One row per call in `calls`, keyed by (instance, call_id): several instances may share one
MySQL or PostgreSQL database, and a call id (Asterisk's channel id) is unique only within
one Asterisk. Its turns and events hang off the same key. Times are naive UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import mysql

metadata = MetaData()

# Microseconds on every backend: MySQL's DATETIME keeps whole seconds unless told.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

ID = 128  # Asterisk channel ids ("1733412345.42", or uuid-like when the dialplan sets them)

calls = Table(
    "calls",
    metadata,
    Column("instance", String(64), primary_key=True),
    Column("call_id", String(ID), primary_key=True),
    # who and when
    Column("caller", String(64), nullable=False, default=""),  # masked with RECORDS_MASK_CALLERS
    # HMAC-SHA256 of the full number (records/privacy.py), "" without RECORDS_HASH_KEY
    Column("caller_hash", String(64), nullable=False, default="", server_default=""),
    Column("caller_name", String(128), nullable=False, default=""),
    Column("dialled", String(64), nullable=False, default=""),
    Column("started_at", Timestamp, nullable=False),
    Column("answered_at", Timestamp),
    Column("ended_at", Timestamp),
    Column("duration_s", Float, nullable=False, default=0.0),
    Column("end_reason", String(32), nullable=False),
    Column("worker_exit", String(64), nullable=False, default=""),
    Column("agent", String(64), nullable=False, default=""),
    Column("model", String(64), nullable=False, default=""),
    Column("failure", Text, nullable=False, default=""),
    # False when a helper rebuilt the record from the journal after the worker died
    Column("complete", Boolean, nullable=False, default=True),
    # set-up timeline (ms since admission, JSON object) and the worker's audio figures
    Column("setup_ms", Text, nullable=False, default="{}"),
    Column("setup_bridge_retries", Integer, nullable=False, default=0),
    Column("frames_in", BigInteger, nullable=False, default=0),
    Column("frames_out", BigInteger, nullable=False, default=0),
    Column("underruns", BigInteger, nullable=False, default=0),
    Column("barge_ins", Integer, nullable=False, default=0),
    Column("rejected_packets", BigInteger, nullable=False, default=0),
    Column("reconnects", Integer, nullable=False, default=0),
    # usage by kind (tokens), and the estimate made from it when the record was stored
    Column("input_audio_tokens", BigInteger, nullable=False, default=0),
    Column("input_text_tokens", BigInteger, nullable=False, default=0),
    Column("input_cached_tokens", BigInteger, nullable=False, default=0),
    Column("output_audio_tokens", BigInteger, nullable=False, default=0),
    Column("output_text_tokens", BigInteger, nullable=False, default=0),
    Column("transcription_seconds", Float, nullable=False, default=0.0),
    # GPT-Live's session time, billed by the second (0 for Realtime calls)
    Column("session_seconds", Float, nullable=False, default=0.0, server_default="0"),
    # OPENAI_TRANSCRIPTION_MODEL of the call ("" when off), and its per-minute cost, which
    # cost_estimate includes; None: no per-minute price known for it (callbridge/prices.py)
    Column("transcription_model", String(64), nullable=False, default="", server_default=""),
    Column("transcription_cost", Float),
    Column("cost_estimate", Float),  # None: no price known for the model
    Column("currency", String(8), nullable=False, default=""),
    # the call's recording (records/recordings.py), "" and 0 when it was not recorded; the
    # file may be gone since (RECORDINGS_RETENTION_DAYS, `calls erase`)
    Column("recording_path", String(1024), nullable=False, default="", server_default=""),
    Column("recording_bytes", BigInteger, nullable=False, default=0, server_default="0"),
    Column("recording_seconds", Float, nullable=False, default=0.0, server_default="0"),
    Column("recording_sha256", String(64), nullable=False, default="", server_default=""),
    # complete | stopped (during the call: a full disk) | partial (the worker died)
    Column("recording_state", String(16), nullable=False, default="", server_default=""),
    # its post-call summary (summaries/summarizer.py, SUMMARY_MODEL): the text, the agent's
    # fields (a JSON object), which model wrote them with how many tokens, and its cost, which
    # cost_estimate includes; NULL and 0 until (or unless) the call is summarized (the texts
    # are NULL, not "", when empty: MySQL allows a TEXT column no default)
    Column("summary", Text),
    Column("summary_fields", Text),
    Column("summary_model", String(64), nullable=False, default="", server_default=""),
    Column("summary_input_tokens", BigInteger, nullable=False, default=0, server_default="0"),
    Column("summary_output_tokens", BigInteger, nullable=False, default=0, server_default="0"),
    Column("summary_cost", Float),
    Column("summarized_at", Timestamp),
    Index("ix_calls_started_at", "started_at"),
    Index("ix_calls_caller", "caller"),
    Index("ix_calls_caller_hash", "caller_hash"),
)

turns = Table(
    "turns",
    metadata,
    Column("instance", String(64), primary_key=True),
    Column("call_id", String(ID), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("side", String(8), nullable=False),  # "caller" or "agent"
    Column("offset_ms", BigInteger, nullable=False, default=0),  # since the call started
    Column("text", Text, nullable=False, default=""),
    # an interrupted agent turn: `text` is what the model said, `heard` what the caller heard
    Column("interrupted", Boolean, nullable=False, default=False),
    Column("heard", Text),
    # an agent turn's phase, when the model says (gpt-realtime-2.x): "preamble" (said while
    # it works: "let me check that") or "answer"; NULL for the caller and earlier models
    Column("phase", String(16)),
    ForeignKeyConstraint(
        ["instance", "call_id"], ["calls.instance", "calls.call_id"], ondelete="CASCADE", name="fk_turns_call"
    ),
)

events = Table(
    "events",
    metadata,
    Column("instance", String(64), primary_key=True),
    Column("call_id", String(ID), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("offset_ms", BigInteger, nullable=False, default=0),
    Column("kind", String(32), nullable=False),  # later issues: tool calls, transfers, DTMF
    Column("detail", Text, nullable=False, default="{}"),  # JSON object
    ForeignKeyConstraint(
        ["instance", "call_id"],
        ["calls.instance", "calls.call_id"],
        ondelete="CASCADE",
        name="fk_events_call",
    ),
)

# Built-in alerts (alerts/send.py): one row per notice and channel, as the alert helper
# sent it. Keyed by the helper's batch id and the row's place in it, so that a batch the
# drainer stores twice (killed between commit and unlink) is stored once.
alerts = Table(
    "alerts",
    metadata,
    Column("instance", String(64), primary_key=True),
    Column("batch_id", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("sent_at", Timestamp, nullable=False),
    Column("alert_key", String(64), nullable=False),  # the condition (alerts/watch.py), or "test"
    Column("kind", String(16), nullable=False),  # firing, resolved, event
    Column("severity", String(16), nullable=False, default=""),
    Column("text", Text, nullable=False, default=""),
    Column("channel", String(128), nullable=False),  # which webhook or mail, without secrets
    Column("delivered", Boolean, nullable=False),
    Column("outcome", Text, nullable=False, default=""),  # what the receiver said, or why not
    Index("ix_alerts_sent_at", "sent_at"),
)

# Call webhooks (webhooks/sender.py): one row per event and receiver once its fate is known,
# delivered or given up. Keyed by the event's id and the receiver's key (a hash of the URL,
# never the URL), so that an outcome the drainer stores twice is stored once. Not tied to
# the calls table: a call.started delivery is known before the call's record is.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("instance", String(64), primary_key=True),
    Column("event_id", String(32), primary_key=True),
    Column("target", String(16), primary_key=True),  # callbridge/call_webhooks.py::target_key
    Column("call_id", String(ID), nullable=False, default=""),
    Column("event_type", String(32), nullable=False),  # call.started, call.ended
    Column("created_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp, nullable=False),  # taken, or given up
    Column("delivered", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("outcome", Text, nullable=False, default=""),  # "HTTP 204", or why it was given up
    Index("ix_webhook_deliveries_call", "instance", "call_id"),
)

# The web dashboard's logins (web/): shared by every instance on the database, like the
# history. `password` is a KDF's output with its parameters (records/accounts.py), never a
# password.
users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # "admin" or "viewer"
    Column("password", String(255), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("password_changed_at", Timestamp, nullable=False),
)

# A login's session: the cookie holds a random token, the table only its SHA-256, so that
# a copy of the database opens no session.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("expires_at", Timestamp, nullable=False),
    Column("client", String(64), nullable=False, default=""),
    ForeignKeyConstraint(["user_name"], ["users.name"], ondelete="CASCADE", name="fk_web_sessions_user"),
    Index("ix_web_sessions_expires_at", "expires_at"),
)

# Every state change made through the dashboard or the `web` commands: who, what, when.
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("instance", String(64), nullable=False, default=""),
    Column("user_name", String(64), nullable=False),  # kept after the user is removed
    Column("action", String(32), nullable=False),  # login, login_failed, logout, hangup, ...
    Column("target", String(160), nullable=False, default=""),
    Column("client", String(64), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_audit_at", "at"),
)
