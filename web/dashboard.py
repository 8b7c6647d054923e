"""The dashboard's plumbing: who is asking (web/sessions.py), the guard every page and API
passes (a session; a CSRF token on every POST; the admin role where asked), rendering in
the viewer's language (web/i18n.py), and the records database. The pages themselves are
web/pages.py; the routes are listed in `app()`.

Everything that may wait (the database, scrypt, the control socket) runs on a thread, off
the asyncio loop that serves every connection (Starlette runs plain `def` work through
`run_in_threadpool`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from records.accounts import User, audit_event, session_user
from web import i18n
from web.live import LiveFeed
from web.security import LoginLimiter, client_address, over_tls, with_headers
from web.sessions import COOKIE, SessionCache, Signer, load_key

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 16 * 1024  # the largest form here is a password change
FORM_SECONDS = 10.0  # a form's body that trickles in slower is dropped (the slots are few)
STALE_SECONDS = 600.0  # how long a known session outlives a database that does not answer


class Plays:
    """Which recordings each admin played lately: one audit row per playback, however many
    range requests a browser makes for it (at most MAX entries, the oldest forgotten)."""

    WINDOW = 600.0  # seconds a playback's requests count as one
    MAX = 2000

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple, float] = OrderedDict()

    def new(self, user: str, instance: str, call_id: str) -> bool:
        """True when this request starts a playback (audit it); noted as played from now."""
        key, now = (user, instance, call_id), time.monotonic()
        last = self._seen.pop(key, None)
        self._seen[key] = now if last is None or now - last > self.WINDOW else last
        while len(self._seen) > self.MAX:
            self._seen.popitem(last=False)
        return last is None or now - last > self.WINDOW

    def forget(self, user: str, instance: str, call_id: str) -> None:
        self._seen.pop((user, instance, call_id), None)


@dataclass
class Seen:
    """One request's viewer."""

    user: User | None
    token: str | None
    lang: str
    client: str
    tls: bool

    @property
    def t(self):
        return i18n.translator(self.lang)


class Dashboard:
    def __init__(self, settings, live: LiveFeed | None = None) -> None:
        self.settings = settings
        self.instance = settings.instance
        self.zone = ZoneInfo(settings.records_timezone) if settings.records_timezone else None
        self.proxies = tuple(settings.web_trusted_proxies)
        self.mask_keep = settings.records_mask_keep_digits if settings.records_mask_callers else None
        self.signer = Signer(load_key(settings.web_secret_key.reveal(), settings.state_dir))
        self.sessions = SessionCache()
        self.plays = Plays()  # recordings played lately (web/pages.py::recording)
        self.limiter = LoginLimiter()  # per client address (an IPv6 client: its /64)
        # per user name, across addresses: more room (a shared office NAT counts above), but
        # a guesser spread over many addresses is stopped too
        self.user_limiter = LoginLimiter(failures=20)
        self.password_limiter = LoginLimiter()  # the password change's current password, per user
        self.kdf = asyncio.Semaphore(2)
        self._engine_lock = threading.Lock()
        self.live = live or LiveFeed(settings.control_socket_path)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self._engine = None

    # --- the records database

    @property
    def engine(self):
        with self._engine_lock:  # the first requests come on several threads at once
            return self._engine or self._open_engine()

    def _open_engine(self):
        if True:
            from records.migrate import upgrade
            from records.store import open_engine

            database = self.settings.database
            if database.is_sqlite:
                Path(database.url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = open_engine(database)
            if database.is_sqlite:  # embedded: no install step, as the drainer does at its start
                try:
                    upgrade(engine)
                except Exception as exc:  # the drainer's own upgrade may hold the file: it does the work
                    log.warning("web: cannot migrate %s (%s); the drainer will", database, type(exc).__name__)
            self._engine = engine
        return engine

    async def db(self, work: Callable, *args):
        """`work(engine, *args)` on a thread."""
        return await run_in_threadpool(lambda: work(self.engine, *args))

    async def audit(self, seen: Seen, user: str, action: str, target: str = "", detail: str = "") -> None:
        try:
            await self.db(audit_event, self.instance, user, action, target, seen.client, detail)
        except Exception:  # the database being down must not turn a hang-up into an error page
            log.error("web: cannot write the audit log (%s %s by %s)", action, target, user, exc_info=True)

    # --- who is asking

    async def seen(self, request: Request) -> Seen:
        scope = request.scope
        lang = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language", ""))
        seen = Seen(None, None, lang, client_address(scope, self.proxies), over_tls(scope, self.proxies))
        token = self.signer.token(request.cookies.get(COOKIE))
        if token is None:
            return seen
        user = self.sessions.get(token)
        if user is None:
            try:
                user = await self.db(session_user, token)
            except Exception as exc:
                # The database away is not a logout: the live page needs no database, so a
                # session seen valid lately stays valid until the database answers again.
                log.error("web: cannot read the sessions: %s", type(exc).__name__)
                user = self.sessions.get(token, STALE_SECONDS)
            if user is not None:
                self.sessions.put(token, user)
        seen.user, seen.token = (user, token) if user is not None else (None, None)
        return seen

    def csrf(self, seen: Seen) -> str:
        return self.signer.csrf(seen.token) if seen.token else ""

    async def form(self, request: Request) -> dict | None:
        """A small urlencoded form, else None (too large, or not a form)."""
        try:
            size = int(request.headers.get("content-length", ""))
        except ValueError:
            return None
        if size > MAX_FORM_BYTES:
            return None
        try:
            # httpd/bounded.py times out idle connections and slow headers, not a body that
            # trickles: that is bounded here, per form
            form = await asyncio.wait_for(request.form(max_files=0, max_fields=20), FORM_SECONDS)
        except TimeoutError:
            log.warning("web: a form's body took over %.0f s; dropped", FORM_SECONDS)
            return None
        except Exception as exc:  # a body that is not the form it says (starlette's parse errors)
            log.warning("web: an unreadable form: %s", type(exc).__name__)
            return None
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def guard(self, handler: Callable[..., Awaitable[Response]], role: str = "viewer", api: bool = False):
        """A page or API behind the login: no session is a redirect to the login page (an
        API: 401); a POST without this session's CSRF token is 403; `role="admin"` refuses
        viewers (403, and the attempt is in the audit log)."""

        async def endpoint(request: Request) -> Response:
            seen = await self.seen(request)
            if seen.user is None:
                if api:
                    return JSONResponse({"ok": False, "error": "log in first"}, status_code=401)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
            form = None
            if request.method == "POST":
                offered = request.headers.get("x-csrf-token")
                if offered is None:
                    form = await self.form(request)
                    offered = (form or {}).get("csrf")
                if not self.signer.csrf_ok(seen.token, offered):
                    await self.audit(seen, seen.user.name, "refused_csrf", request.url.path)
                    return self.refuse(request, seen, api, "The form expired: try again.")
            if role == "admin" and not seen.user.is_admin:
                await self.audit(seen, seen.user.name, "refused_role", request.url.path)
                return self.refuse(request, seen, api, "Only an admin may do that.")
            if form is not None:
                request.state.form = form
            return await handler(request, seen)

        return endpoint

    def refuse(self, request: Request, seen: Seen, api: bool, why: str) -> Response:
        if api:
            return JSONResponse({"ok": False, "error": seen.t(why)}, status_code=403)
        return self.render(request, seen, "error.html", "Not allowed", status=403, message=seen.t(why))

    # --- pages

    def render(self, request: Request, seen: Seen, template: str, title: str, status: int = 200, **values):
        other = "es" if seen.lang == "en" else "en"
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        context = {
            "t": seen.t,
            "lang": seen.lang,
            "other_lang": other,
            "other_lang_name": i18n.LANGUAGES[other],
            "user": seen.user,
            "csrf": self.csrf(seen),
            "instance": self.instance,
            "title": title,
            "page": values.pop("page", ""),
            "here": here,
            **values,
        }
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def cookie_args(self, seen: Seen) -> dict:
        return {"httponly": True, "samesite": "lax", "secure": seen.tls, "path": "/"}


def app(dashboard: Dashboard):
    """The dashboard as an ASGI app, with the security headers on every response."""
    from web import pages

    d = dashboard

    def open_to_all(page):
        async def endpoint(request: Request) -> Response:
            return await page(d, request)

        return endpoint

    routes = [
        Route("/login", open_to_all(pages.login_form), methods=["GET"]),
        Route("/login", open_to_all(pages.login), methods=["POST"]),
        Route("/lang/{lang}", open_to_all(pages.language), methods=["GET"]),
        Route("/logout", d.guard(lambda r, s: pages.logout(d, r, s)), methods=["POST"]),
        Route("/", d.guard(lambda r, s: pages.overview(d, r, s)), methods=["GET"]),
        Route("/live", d.guard(lambda r, s: pages.live(d, r, s)), methods=["GET"]),
        Route("/api/live", d.guard(lambda r, s: pages.live_json(d, r, s), api=True), methods=["GET"]),
        Route(
            "/api/calls/{call_id}/hangup",
            d.guard(lambda r, s: pages.hangup(d, r, s), role="admin", api=True),
            methods=["POST"],
        ),
        Route("/calls", d.guard(lambda r, s: pages.history(d, r, s)), methods=["GET"]),
        Route("/calls.csv", d.guard(lambda r, s: pages.history_csv(d, r, s)), methods=["GET"]),
        Route("/calls/{instance}/{call_id}", d.guard(lambda r, s: pages.call(d, r, s)), methods=["GET"]),
        Route(
            "/calls/{instance}/{call_id}/recording.wav",
            d.guard(lambda r, s: pages.recording(d, r, s), role="admin"),
            methods=["GET"],
        ),
        Route("/agents", d.guard(lambda r, s: pages.agents(d, r, s)), methods=["GET"]),
        Route("/account", d.guard(lambda r, s: pages.account(d, r, s)), methods=["GET"]),
        Route("/account/password", d.guard(lambda r, s: pages.password(d, r, s)), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def not_found(request: Request, _exc) -> Response:
        seen = await d.seen(request)
        return d.render(request, seen, "error.html", "Not found", status=404, message="")

    starlette = Starlette(routes=routes, exception_handlers={404: not_found})
    return with_headers(starlette, d.proxies)
