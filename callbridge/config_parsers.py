"""The parsers of callbridge's configuration values: each turns a variable's raw text into
a typed value, or raises `ValueError(problem)`.

The problem is a phrase that follows the variable's name in the one-line message `check`
builds (`ASTERISK_PORT: must be between 1 and 65535 (got 0)`, callbridge/config.py), so it
says what is wanted and what was given. `check` masks a secret's text should a parser quote
it. They live apart from the table that names them (callbridge/config_variables.py) so
that the table reads as the list of variables it is.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callbridge import ids
from callbridge.database_url import DatabaseUrl
from callbridge.dialplan import DialplanTarget, parse_target
from callbridge.netaddr import ListenAddress
from callbridge.secret import Secret


def text(raw: str) -> str:
    return raw.strip()


def required_text(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return value


def app_name(raw: str) -> str:
    """ARI_APP_NAME goes into ARI's URLs (`/applications/NAME`, the events link's `app=`)
    and the dialplan's `Stasis(NAME)`: a `/`, `?`, space or comma there would change what is
    asked for, so only the alphabet of the ids callbridge builds is accepted."""
    value = required_text(raw)
    if not ids.valid_app_name(value):
        raise ValueError(
            f"must be 1 to {ids.APP_NAME_MAX} letters, digits, '_', '.' or '-', not starting with "
            f"'.' or '-' (got {value[:80]!r})"
        )
    return value


def secret(raw: str) -> Secret:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    return Secret(value)


def optional_secret(raw: str) -> Secret:
    value = raw.strip()
    if value and len(value) < 16:
        raise ValueError("must be at least 16 characters (a short key is guessed quickly)")
    return Secret(value)


def timezone(raw: str) -> str:
    value = raw.strip()
    if value:
        try:
            ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(
                f"must be a timezone name like Europe/Madrid or UTC (got {value[:60]!r})"
            ) from None
    return value


def host(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("is empty")
    if "://" in value or "/" in value or " " in value:
        raise ValueError(f"must be a host name or address, without scheme or path (got {value!r})")
    return value


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"must be a whole number (got {raw.strip()!r})") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high} (got {value})")
        return value

    return parse


def optional_integer(low: int, high: int) -> Callable[[str], int | None]:
    """A whole number, or None when empty (another setting's value applies)."""
    whole = integer(low, high)

    def parse(raw: str) -> int | None:
        return whole(raw) if raw.strip() else None

    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number (got {raw.strip()!r})") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high} (got {value})")
        return value

    return parse


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false (got {raw.strip()!r})")


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            named = ", ".join(a or "empty" for a in allowed)
            raise ValueError(f"must be one of {named} (got {raw.strip()!r})")
        return value

    return parse


def optional_ip(raw: str) -> str:
    value = raw.strip()
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"must be an IP address or empty (got {value!r})") from None
    return value


def port_range(raw: str) -> tuple[int, int]:
    text = raw.strip()
    low_text, sep, high_text = text.partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"must look like 10000-20000 (got {text!r})") from None
    if not sep or not 1024 <= low < high <= 65535:
        raise ValueError(f"must be LOW-HIGH with 1024 <= LOW < HIGH <= 65535 (got {text!r})")
    return low, high


def instance_id(raw: str) -> str:
    value = raw.strip()
    problem = ids.instance_problem(value) if value else None
    if problem:
        raise ValueError(f"{problem} (got {value[:40]!r})")
    return value


def optional_listen(raw: str) -> ListenAddress | None:
    """HOST:PORT to listen on, or None when empty (off)."""
    value = raw.strip()
    if not value:
        return None
    try:
        return ListenAddress.parse(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, or empty for off") from None


def networks(raw: str) -> tuple:
    """Comma-separated IP addresses or networks (10.0.0.0/8); empty: none."""
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(
                f"must be IP addresses or networks like 10.0.0.0/8, comma-separated (got {part[:40]!r})"
            ) from None
    return tuple(found)


def optional_database_url(raw: str) -> DatabaseUrl | None:
    value = raw.strip()
    return DatabaseUrl.parse(value) if value else None


def language(raw: str) -> str:
    value = raw.strip()
    if value and not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?", value):
        raise ValueError(f'must be a language code like "es" or "pt-BR", or empty (got {value[:20]!r})')
    return value


def optional_target(raw: str) -> DialplanTarget | None:
    return parse_target(raw)


def optional_readable_file(raw: str) -> str:
    value = raw.strip()
    if value and not os.access(value, os.R_OK):
        raise ValueError(f"cannot read {value!r}")
    return value
