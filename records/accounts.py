"""The dashboard's users, their sessions and the audit log, in the records database
(records/schema.py: users, web_sessions, audit), so that instances sharing a database share
its logins. Used by the web helper (web/) and the `callbridge web` commands.

Passwords are kept as scrypt (RFC 7914, hashlib's) with a random salt and the cost written
next to the hash, so that a later, costlier setting still verifies old passwords. A
session's cookie token is random; only its SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Engine

from records.schema import audit, users, web_sessions

ROLES = ("admin", "viewer")
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")
MIN_PASSWORD = 10
# scrypt's cost: 16 MiB and about 50 ms here per check; the login is rate-limited as well.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class AccountError(ValueError):
    """A name, role or password the accounts refuse, said in words."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=256 * 1024 * 1024,
            dklen=len(want),
        )
    except (ValueError, TypeError):  # a damaged row refuses the login, it does not raise
        return False
    return hmac.compare_digest(got, want)


def check_name(name: str) -> str:
    if not name or len(name) > 64 or not set(name) <= NAME_CHARS:
        raise AccountError("a user name is 1 to 64 letters, digits or . _ @ -")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"the role is {' or '.join(ROLES)} (got {role[:20]!r})")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password has at least {MIN_PASSWORD} characters")
    return password


# --- users


def add_user(engine: Engine, name: str, role: str, password: str) -> None:
    row = {
        "name": check_name(name),
        "role": check_role(role),
        "password": hash_password(check_password(password)),
        "created_at": _now(),
        "password_changed_at": _now(),
    }
    with engine.begin() as conn:
        if conn.execute(select(users.c.name).where(users.c.name == name)).first():
            raise AccountError(f"there is a user {name} already (web passwd changes a password)")
        conn.execute(insert(users).values(**row))


def list_users(engine: Engine) -> list[dict]:
    query = select(users.c.name, users.c.role, users.c.created_at, users.c.password_changed_at)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query.order_by(users.c.name))]


def count_users(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(users)).scalar_one()


def remove_user(engine: Engine, name: str) -> bool:
    """False when there was none. Their sessions go with them (and are deleted here too,
    for a SQLite connection that does not enforce foreign keys)."""
    with engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.user_name == name))
        return conn.execute(delete(users).where(users.c.name == name)).rowcount > 0


def set_password(engine: Engine, name: str, password: str) -> bool:
    """False when there is no such user. Every session of theirs ends: a changed password
    is how an operator shuts out whoever knew the old one."""
    stored = hash_password(check_password(password))
    with engine.begin() as conn:
        changed = conn.execute(
            update(users).where(users.c.name == name).values(password=stored, password_changed_at=_now())
        ).rowcount
        conn.execute(delete(web_sessions).where(web_sessions.c.user_name == name))
    return changed > 0


def authenticate(engine: Engine, name: str, password: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(select(users.c.role, users.c.password).where(users.c.name == name)).first()
    if row is None:
        password_matches(password, _DUMMY)  # the same time for a name that does not exist
        return None
    return User(name, row.role) if password_matches(password, row.password) else None


_DUMMY = hash_password("not a password of anybody's")


# --- sessions


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(engine: Engine, user: User, hours: int, client: str) -> str:
    """A new session's token (for the cookie); expired sessions are swept here too."""
    token = secrets.token_urlsafe(32)
    now = _now()
    with engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
        conn.execute(
            insert(web_sessions).values(
                token_hash=_token_hash(token),
                user_name=user.name,
                created_at=now,
                expires_at=now + timedelta(hours=hours),
                client=client[:64],
            )
        )
    return token


def session_user(engine: Engine, token: str) -> User | None:
    """The user of a live session, else None (unknown, expired, or its user removed)."""
    query = (
        select(users.c.name, users.c.role)
        .select_from(web_sessions.join(users, users.c.name == web_sessions.c.user_name))
        .where(web_sessions.c.token_hash == _token_hash(token), web_sessions.c.expires_at > _now())
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return User(row.name, row.role) if row else None


def close_session(engine: Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == _token_hash(token)))


# --- the audit log


def audit_event(
    engine: Engine,
    instance: str,
    user: str,
    action: str,
    target: str = "",
    client: str = "",
    detail: str = "",
) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(audit).values(
                at=_now(),
                instance=instance,
                user_name=user[:64],
                action=action[:32],
                target=target[:160],
                client=client[:64],
                detail=detail,
            )
        )


def recent_audit(engine: Engine, limit: int = 100) -> list[dict]:
    query = select(audit).order_by(audit.c.at.desc(), audit.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
