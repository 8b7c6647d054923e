"""Deterministic names derived from a call's id (the caller channel's id), scoped by instance.

Because the bridge and the externalMedia channel are named after the call, teardown is
idempotent (DELETE by name, 404 means done) and a restarted supervisor can tell which
leftovers in Asterisk are its own. Several callbridge instances may share one Asterisk,
so every name carries the instance: `cb.<instance>.br.<call>`. The dot cannot appear in
an instance id, so one instance's prefix is never the start of another's (with `-` as the
separator, instance `a` would take `cb-a-br-...` of an instance called `a-br` for its own).
"""

from __future__ import annotations

import hashlib

_INSTANCE_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
INSTANCE_MAX = 32
_ID_ALPHABET = _INSTANCE_ALPHABET | {"."}


def instance_problem(instance: str) -> str | None:
    """Why `instance` cannot name an instance's ARI objects and segments, or None if it can."""
    if not 0 < len(instance) <= INSTANCE_MAX:
        return f"must be 1 to {INSTANCE_MAX} characters"
    if not set(instance) <= _INSTANCE_ALPHABET:
        return "may hold only letters, digits, '_' and '-'"
    return None


def instance_from_app(app: str) -> str:
    """The instance id of an ARI app name: the name itself when it fits, else its fitting
    characters plus a hash of the whole name, so that two app names never share an id
    (`a.b` and `a/b` would both read `a_b` with the characters replaced alone)."""
    if instance_problem(app) is None:
        return app
    kept = "".join(c for c in app if c in _INSTANCE_ALPHABET)[: INSTANCE_MAX - 9]
    return f"{kept}-{hashlib.sha1(app.encode()).hexdigest()[:8]}"


class InstanceIds:
    """The names one instance gives to what it creates in Asterisk and in shared memory."""

    def __init__(self, instance: str) -> None:
        problem = instance_problem(instance)
        if problem:
            raise ValueError(f"instance id {instance[:40]!r} {problem}")
        self.instance = instance
        self.prefix = f"cb.{instance}."
        self._bridge = f"{self.prefix}br."
        self._external = f"{self.prefix}em."
        self._transfer = f"{self.prefix}tr"

    def bridge(self, call_id: str) -> str:
        return self._bridge + call_id

    def external_channel(self, call_id: str) -> str:
        return self._external + call_id

    def transfer_channel(self, call_id: str, attempt: int) -> str:
        """The channel a transfer dials (ARI originate), one per attempt: a new attempt
        never waits for Asterisk to forget the last one's id. Its Local `;2` half is
        `<id>;2`."""
        return f"{self._transfer}{attempt}.{call_id}"

    def transfer_of(self, channel_id: str) -> tuple[str, int] | None:
        """(call id, attempt) of one of THIS instance's transfer channels (either half), else None."""
        if not channel_id.startswith(self._transfer):
            return None
        attempt, dot, call_id = channel_id[len(self._transfer) :].partition(".")
        call_id = call_id.removesuffix(";2")
        if not dot or not (attempt.isascii() and attempt.isdigit()) or not call_id:
            return None
        return call_id, int(attempt)

    def playback(self, kind: str, key: str) -> str:
        """A playback id (`busy`, `fail`): ours to recognise in PlaybackFinished events."""
        return f"{self.prefix}{kind}.{key}"

    def call_id_of(self, derived_id: str) -> str | None:
        """The call a bridge or externalMedia id of THIS instance belongs to, else None
        (another instance's objects, and everything else in Asterisk, are not ours)."""
        for head in (self._bridge, self._external):
            if derived_id.startswith(head):
                return derived_id[len(head) :] or None
        return None

    def is_media_channel(self, channel: dict) -> bool:
        """An externalMedia channel (any instance's, or one named by Asterisk): not a call.
        It enters Stasis only in the app that created it, so seeing one is never a caller."""
        return str(channel.get("name", "")).startswith("UnicastRTP/") or str(
            channel.get("id", "")
        ).startswith("cb.")


APP_NAME_MAX = 64


def valid_app_name(name: str) -> bool:
    """ARI_APP_NAME's alphabet: the ids' (callbridge/config_parsers.py::app_name says why)."""
    # Not "." or "..", nor any leading "." or "-": a URL's path would resolve them.
    return 0 < len(name) <= APP_NAME_MAX and set(name) <= _ID_ALPHABET and name[0] not in ".-"


def addressable_channel_id(channel_id: str) -> bool:
    """An id we may still name in an ARI path (to turn its caller away) though it is not a
    valid call id: quoting keeps "?", "#" and spaces in their segment, but not "/", and a
    URL's path resolves "." and ".." (requests does), so those would name another resource."""
    return (
        0 < len(channel_id) <= 255
        and channel_id not in (".", "..")
        and "/" not in channel_id
        and "\\" not in channel_id
        and channel_id.isprintable()
    )


def valid_call_id(channel_id: str) -> bool:
    """Asterisk's channel ids (`1732512345.42`, or a UUID) fit this; anything else is refused,
    because the id ends up in a shared-memory name, ARI URL paths and a file name."""
    return 0 < len(channel_id) <= 64 and set(channel_id) <= _ID_ALPHABET and channel_id[0] not in ".-"
