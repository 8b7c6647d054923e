"""Caller numbers kept private (RECORDS_MASK_CALLERS): masked where they are shown or stored,
and a keyed hash beside the masked number so that the full number still finds its calls.

The supervisor applies both once, when it admits a call (supervisor/admission.py): from then
on the call's entry, its log lines, `callbridge status`, the worker, the spool and the
database hold only the masked number and the hash. `callbridge calls --caller NUMBER`
hashes what it is given the same way (callbridge/cli/records_commands.py). One function each, so
the service and the CLI cannot disagree on a number.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_SEPARATORS = re.compile(r"[\s().-]")


def normal(number: str) -> str:
    """The number without the separators people type ("+34 600-11 22"): what is hashed."""
    return _SEPARATORS.sub("", str(number or ""))


def mask_number(number: str, keep: int) -> str:
    """All but the last `keep` characters as '*', a leading '+' kept: "+34600111222" with
    keep=3 is "+********222". Empty stays empty (an anonymous caller)."""
    text = normal(number)
    plus, body = ("+", text[1:]) if text.startswith("+") else ("", text)
    keep = max(0, min(keep, len(body) - 1))  # never the whole number, even a short one
    return plus + "*" * (len(body) - keep) + (body[len(body) - keep :] if keep else "")


def number_hash(number: str, key: str) -> str:
    """HMAC-SHA256 of the number under RECORDS_HASH_KEY, as hex; "" without a key or number.
    Keyed, so that a leaked table cannot be searched by hashing every phone number."""
    text = normal(number)
    if not key or not text:
        return ""
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


_DIGITS = re.compile(r"\d+")


def mask_within(text: str, number: str, keep: int) -> str:
    """`text` (an Asterisk channel name, "Local/34600111222@from-trunk-0000001;2" or
    "PJSIP/600111222-00000001") with each run of digits that is the caller's number, or
    its end without the country code, masked like the number; other digits stay."""
    digits = normal(number).lstrip("+")
    if len(digits) < 4:
        return text
    return _DIGITS.sub(
        lambda m: (
            mask_number(m.group(), keep) if len(m.group()) >= 4 and digits.endswith(m.group()) else m.group()
        ),
        text,
    )


def private_channel_name(settings, name: str, number: str) -> str:
    """The channel name as the service keeps and logs it: with RECORDS_MASK_CALLERS, the
    caller's number masked wherever the name holds it (dial plans that name channels after
    the caller do)."""
    if not settings.records_mask_callers:
        return name
    return mask_within(name, number, settings.records_mask_keep_digits)


def caller_fields(settings, number: str) -> tuple[str, str]:
    """(the caller as the service keeps it, its hash) for a call's raw caller number."""
    key = settings.records_hash_key.reveal()
    if not settings.records_mask_callers:
        return str(number or ""), number_hash(number, key)
    return mask_number(number, settings.records_mask_keep_digits), number_hash(number, key)
