"""Deterministic names derived from a call's id (the caller channel's id).

Because the bridge and the externalMedia channel are named after the call, teardown is
idempotent (DELETE by name, 404 means done) and a restarted supervisor can tell which
leftovers in Asterisk are ours: everything whose id starts with `PREFIX`.
"""

from __future__ import annotations

PREFIX = "cb-"


def bridge_id(call_id: str) -> str:
    return f"{PREFIX}br-{call_id}"


def external_channel_id(call_id: str) -> str:
    return f"{PREFIX}em-{call_id}"


def call_id_of(derived_id: str) -> str | None:
    """The call a derived id belongs to, or None when the id is not one of ours."""
    for head in (f"{PREFIX}br-", f"{PREFIX}em-"):
        if derived_id.startswith(head):
            return derived_id[len(head) :]
    return None


def is_our_channel(channel: dict) -> bool:
    """Our own externalMedia channels (UnicastRTP/..., or named with our prefix) are not calls."""
    return str(channel.get("name", "")).startswith("UnicastRTP/") or str(channel.get("id", "")).startswith(
        PREFIX
    )


_ID_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def valid_call_id(channel_id: str) -> bool:
    """Asterisk's channel ids (`1732512345.42`, or a UUID) fit this; anything else is refused,
    because the id ends up in a shared-memory name, ARI URL paths and a file name."""
    return 0 < len(channel_id) <= 64 and set(channel_id) <= _ID_ALPHABET and channel_id[0] not in ".-"
