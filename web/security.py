"""What every response and every login attempt go through: the client's address (behind a
trusted proxy), whether the browser came over TLS, the login rate limit, and the headers
that keep a page from being framed, sniffed or made to run someone else's script."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque

# No inline script or style anywhere (the pages' JavaScript and CSS are files of
# web/static/), so the policy can forbid both.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def _header(scope, name: bytes) -> str:
    """Every line of a header, joined in order as one list: a proxy that adds its own line
    (HAProxy's `option forwardfor`) instead of appending to the client's must not leave the
    client's line first and believed."""
    return ",".join(value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name)


def _trusted(address: str, proxies: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in proxies)


def client_address(scope, proxies: tuple) -> str:
    """The peer; behind a trusted proxy, the nearest address in X-Forwarded-For that is not
    one of the trusted proxies (anything left of it the client could have written)."""
    peer = (scope.get("client") or ("", 0))[0] or ""
    if not _trusted(peer, proxies):
        return peer
    hops = [h.strip() for h in _header(scope, b"x-forwarded-for").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a proxy that writes garbage: believe only the proxy
    return peer


def over_tls(scope, proxies: tuple) -> bool:
    if scope.get("scheme") == "https":
        return True
    peer = (scope.get("client") or ("", 0))[0] or ""
    if not _trusted(peer, proxies):
        return False
    # the nearest proxy's word: the last value, as with X-Forwarded-For
    said = [v.strip().lower() for v in _header(scope, b"x-forwarded-proto").split(",") if v.strip()]
    return bool(said) and said[-1] == "https"


def limit_key(client: str) -> str:
    """What the login limit counts by: the address, but an IPv6 client by its /64 (one
    host usually holds a whole /64 and could walk through it)."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class LoginLimiter:
    """At most `failures` failed logins per key (a client, a user name) in `window` seconds;
    then the key is refused until the oldest of them is older than the window. An attempt
    counts from its start (`begin`), not from its failure: a burst of concurrent guesses
    sent before the first one failed is refused past the limit like a sequence would be.
    Bounded: the least recently seen keys are forgotten first."""

    def __init__(self, failures: int = 5, window: float = 300.0, clients: int = 10000) -> None:
        self.failures = failures
        self.window = window
        self.clients = clients
        self.seen: OrderedDict[str, deque] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque:
        times = self.seen.get(key)
        if times is None:
            return deque()
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def retry_after(self, key: str) -> float:
        """0 when the key may try; else the seconds until it may."""
        now = time.monotonic()
        times = self._recent(key, now)
        if len(times) < self.failures:
            return 0.0
        return max(1.0, self.window - (now - times[0]))

    def begin(self, key: str) -> float:
        """An attempt starts: counted at once (as a failure until `succeeded`); returns its mark."""
        now = time.monotonic()
        times = self._recent(key, now)
        times.append(now)
        self.seen[key] = times
        self.seen.move_to_end(key)
        while len(self.seen) > self.clients:
            self.seen.popitem(last=False)
        return now

    def failed(self, key: str) -> None:
        self.begin(key)

    def succeeded(self, key: str, mark: float | None = None) -> None:
        """A success forgets the key's failures (`mark`: its own attempt, when only that
        one is taken back, as for a user name others may be guessing)."""
        if mark is None:
            self.seen.pop(key, None)
            return
        times = self.seen.get(key)
        if times is not None:
            try:
                times.remove(mark)
            except ValueError:
                pass


def with_headers(app, proxies: tuple):
    """ASGI middleware: the security headers on every response, HSTS over TLS, and no
    caching of anything but the static files."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        tls = over_tls(scope, proxies)
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + HEADERS
                headers.append((b"cache-control", b"public, max-age=3600" if static else b"no-store"))
                if tls:
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped
