"""What an agent does with the caller's key presses (`[agents.NAME.dtmf]`, docs/agents.md):
keys mapped to actions taken without asking the model, and how digits are collected for it.

    [agents.isp.dtmf]
    "0" = { transfer = "reception" }     # one of the agent's transfer destinations
    "9" = { end_call = true }
    collect = { until = "#", timeout_seconds = 5, max_digits = 16, secret = false }

The declaration and its reading; the worker's side is call_worker/keypad.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callbridge.agent_file_reader import Reader, dotted

KEYS = tuple("0123456789*#ABCD")
ACTION_KEYS = ("transfer", "end_call")
COLLECT_KEYS = ("until", "timeout_seconds", "max_digits", "secret")


@dataclass(frozen=True)
class Collect:
    until: str = "#"  # the key that ends the digits ("" : only the timeout or max_digits)
    timeout_seconds: float = 5.0  # since the last key
    max_digits: int = 16
    secret: bool = False  # a PIN: the model gets it, the record and logs only its length


@dataclass(frozen=True)
class KeyPlan:
    actions: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # key -> ("transfer", dest) | ("end", "")
    collect: Collect | None = None  # None: each key is told to the model on its own


def read_keypad(r: Reader, where: tuple[str, ...], table: object, destinations) -> KeyPlan:
    if not isinstance(table, dict):
        r.problem(dotted(*where), 'must be a table: [agents.NAME.dtmf] with "0" = { transfer = "..." }')
        return KeyPlan()
    actions: dict[str, tuple[str, str]] = {}
    collect = None
    for key, value in table.items():
        at = dotted(*where, key)
        if key == "collect":
            collect = _collect(r, (*where, key), value)
            continue
        if key not in KEYS:
            r.problem(at, f"not a key: use one of {' '.join(KEYS)}, or collect")
            continue
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ACTION_KEYS:
            r.problem(at, 'must be { transfer = "DESTINATION" } or { end_call = true }')
            continue
        if "end_call" in value:
            if value["end_call"] is not True:
                r.problem(at, "end_call must be true")
                continue
            actions[key] = ("end", "")
        else:
            destination = value["transfer"]
            if not isinstance(destination, str) or destination not in destinations:
                known = ", ".join(destinations) or "none: add [agents.NAME.transfer.DEST]"
                r.problem(
                    at,
                    f"transfer to {str(destination)[:40]!r}: not one of the agent's destinations ({known})",
                )
                continue
            actions[key] = ("transfer", destination)
    if collect is not None and collect.until and collect.until in actions:
        r.problem(dotted(*where, "collect", "until"), f"{collect.until!r} is also mapped to an action")
    return KeyPlan(actions, collect)


def _collect(r: Reader, where: tuple[str, ...], table: object) -> Collect | None:
    if not isinstance(table, dict):
        r.problem(dotted(*where), "must be a table { until, timeout_seconds, max_digits, secret }")
        return None
    r.unknown(where, table, COLLECT_KEYS)
    until = table.get("until", "#")
    if not isinstance(until, str) or until not in ("", *KEYS):
        r.problem(dotted(*where, "until"), 'must be one key ("#", "*") or "" (the timeout alone)')
        until = "#"
    secret = table.get("secret", False)
    if not isinstance(secret, bool):
        r.problem(dotted(*where, "secret"), "must be true or false")
        secret = False
    return Collect(
        until,
        float(r.number(where, table, "timeout_seconds", 1, 60, default=5.0)),
        r.number(where, table, "max_digits", 1, 64, whole=True, default=16),
        secret,
    )
