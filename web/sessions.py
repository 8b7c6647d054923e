"""Who is asking: the dashboard's session cookie, its CSRF token and the signing key.

The cookie holds a random session token (records/accounts.py keeps only its hash) with an
HMAC of it under the signing key, so that a forged or damaged cookie is refused without a
database read. The CSRF token of a session is an HMAC of its token too: nothing more to
store, the same on every instance that shares the key, and useless without the cookie.

The signing key is WEB_SECRET_KEY, else one generated once into STATE_DIR/web-secret-key
(mode 0600). Instances sharing a database share logins; to share a browser's cookie
between them they also need one key (the same WEB_SECRET_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import OrderedDict
from pathlib import Path

from records.accounts import User

log = logging.getLogger(__name__)

COOKIE = "callbridge_session"
KEY_FILE = "web-secret-key"
CACHE_SECONDS = (
    5.0  # a session checked this recently is not read again (a logout elsewhere: at most this late)
)
CACHE_SIZE = 1000


MIN_KEY_BYTES = 32


def load_key(configured: str, state_dir: str) -> bytes:
    """WEB_SECRET_KEY's bytes, else the state directory's key, made on first use. A key file
    that is too short (left empty by a crash or a full disk) is made again: an empty key
    would sign anybody's cookie."""
    if configured:
        return configured.encode()
    path = Path(state_dir) / KEY_FILE
    broken = False
    try:
        key = path.read_bytes().strip()
        if len(key) >= MIN_KEY_BYTES:
            return key
        log.warning("web: %s holds no usable key (%d bytes); making a new one", path, len(key))
        broken = True
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    # Whole or not at all: written beside it, then linked into place, which fails if another
    # process made it first (theirs is the key then). A broken one is replaced.
    temp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key)
            out.flush()
            os.fsync(out.fileno())
        if broken:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                return path.read_bytes().strip()
    finally:
        temp.unlink(missing_ok=True)
    log.info("web: generated the dashboard's signing key in %s", path)
    return key


def _same(offered: str, expected: str) -> bool:
    """A constant-time comparison that refuses, rather than raises on, text that is not
    ASCII (compare_digest takes str only when it is)."""
    return hmac.compare_digest(offered.encode("utf-8", "surrogateescape"), expected.encode())


class Signer:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, purpose: str, token: str) -> str:
        digest = hmac.new(self.key, f"{purpose}:{token}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")

    def cookie(self, token: str) -> str:
        return f"{token}.{self._mac('session', token)}"

    def token(self, cookie: str | None) -> str | None:
        """The session token of a cookie we signed, else None."""
        if not cookie or cookie.count(".") != 1:
            return None
        token, mac = cookie.split(".")
        return token if _same(mac, self._mac("session", token)) else None

    def csrf(self, token: str) -> str:
        return self._mac("csrf", token)

    def csrf_ok(self, token: str, offered: str | None) -> bool:
        return bool(offered) and _same(offered, self.csrf(token))


class SessionCache:
    """Tokens seen valid lately: the live page polls every second, and each poll need not
    be a database read. Bounded, and emptied of a token at its logout."""

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = CACHE_SIZE) -> None:
        # Entries outlive `seconds` (bounded by `size`): an older one still answers while the
        # database does not (web/dashboard.py::Dashboard.seen).
        self.seconds = seconds
        self.size = size
        self.known: OrderedDict[str, tuple[User, float]] = OrderedDict()

    def get(self, token: str, seconds: float | None = None) -> User | None:
        """The token's user if it was seen valid within `seconds` (default: the cache's)."""
        hit = self.known.get(token)
        if hit is None or time.monotonic() - hit[1] > (self.seconds if seconds is None else seconds):
            return None
        return hit[0]

    def put(self, token: str, user: User) -> None:
        self.known[token] = (user, time.monotonic())
        self.known.move_to_end(token)
        while len(self.known) > self.size:
            self.known.popitem(last=False)

    def forget(self, token: str) -> None:
        self.known.pop(token, None)

    def forget_user(self, name: str) -> None:
        for token in [t for t, (u, _) in self.known.items() if u.name == name]:
            del self.known[token]
