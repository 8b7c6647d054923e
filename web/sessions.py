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


def load_key(configured: str, state_dir: str) -> bytes:
    """WEB_SECRET_KEY's bytes, else the state directory's key, made on first use."""
    if configured:
        return configured.encode()
    path = Path(state_dir) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another instance made it first: theirs is the key
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    log.info("web: generated the dashboard's signing key in %s", path)
    return key


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
        return token if hmac.compare_digest(mac, self._mac("session", token)) else None

    def csrf(self, token: str) -> str:
        return self._mac("csrf", token)

    def csrf_ok(self, token: str, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(offered, self.csrf(token))


class SessionCache:
    """Tokens seen valid lately: the live page polls every second, and each poll need not
    be a database read. Bounded, and emptied of a token at its logout."""

    def __init__(self, seconds: float = CACHE_SECONDS, size: int = CACHE_SIZE) -> None:
        self.seconds = seconds
        self.size = size
        self.known: OrderedDict[str, tuple[User, float]] = OrderedDict()

    def get(self, token: str) -> User | None:
        hit = self.known.get(token)
        if hit is None or time.monotonic() - hit[1] > self.seconds:
            self.known.pop(token, None)
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
