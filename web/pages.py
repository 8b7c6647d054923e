"""The dashboard's pages and APIs, one function each; the guard in front of them, the
rendering and the database plumbing are web/dashboard.py's, the shaping of what they show
web/views.py's."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from records import accounts, outbox, queries, recordings
from records.drain_figures import backlog
from records.queries import CallFilter
from web import i18n, views
from web.dashboard import Dashboard, Seen
from web.security import limit_key
from web.sessions import COOKIE

log = logging.getLogger(__name__)

LOGIN_NONCE = "callbridge_login"


def _problem(exc: Exception) -> str:
    """A database failure in words that carry no secret: its kind, never its text (a
    driver's message may quote a URL or a statement)."""
    return type(exc).__name__


def _safe_next(target: str | None) -> str:
    """Where a login returns to: a path of ours only (never //host or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:500]


# --- logging in and out


async def login_form(d: Dashboard, request: Request, problem: str = "", status: int = 200) -> Response:
    seen = await d.seen(request)
    if seen.user is not None and not problem:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    nonce = request.cookies.get(LOGIN_NONCE) or secrets.token_urlsafe(16)
    try:
        no_users = await d.db(accounts.count_users) == 0
    except Exception as exc:
        no_users = False
        problem = problem or seen.t("The call history cannot be read: {e}", e=_problem(exc))
    response = d.render(
        request,
        seen,
        "login.html",
        "Log in",
        status=status,
        page="login",
        problem=problem,
        no_users=no_users,
        login_csrf=d.signer.csrf("login:" + nonce),
        next=_safe_next(request.query_params.get("next") or getattr(request.state, "next", None)),
    )
    response.set_cookie(LOGIN_NONCE, nonce, max_age=3600, **d.cookie_args(seen))
    return response


async def login(d: Dashboard, request: Request) -> Response:
    seen = await d.seen(request)
    t = seen.t
    form = await d.form(request) or {}
    request.state.next = form.get("next")
    name, password = (form.get("name") or "")[:64], (form.get("password") or "")[:1024]
    client, account = limit_key(seen.client), "user:" + name.lower()
    wait = max(d.limiter.retry_after(client), d.user_limiter.retry_after(account))
    if wait:
        return await login_form(
            d, request, t("Too many failed logins: try again in {s} s.", s=round(wait)), 429
        )
    nonce = request.cookies.get(LOGIN_NONCE) or ""
    if not nonce or not d.signer.csrf_ok("login:" + nonce, form.get("csrf")):
        return await login_form(d, request, t("The form expired: try again."), 403)
    # Counted before the check: concurrent guesses cannot all pass the limit above while
    # the first of them is still being hashed.
    mark = d.limiter.begin(client), d.user_limiter.begin(account)
    try:
        async with d.kdf:  # scrypt is 16 MiB and tens of ms: a few at a time, next to the calls
            user = await d.db(accounts.authenticate, name, password)
    except Exception as exc:
        log.error("web: cannot check a login: %s", _problem(exc))
        return await login_form(d, request, t("The call history cannot be read: {e}", e=_problem(exc)), 503)
    if user is None:
        await d.audit(seen, name or "-", "login_failed")
        log.warning("web: failed login for %r from %s", name, seen.client)
        return await login_form(d, request, t("Wrong user or password."), 401)
    d.limiter.succeeded(client)
    d.user_limiter.succeeded(account, mark[1])
    try:
        token = await d.db(accounts.open_session, user, d.settings.web_session_hours, seen.client)
    except Exception as exc:
        log.error("web: cannot open a session: %s", _problem(exc))
        return await login_form(d, request, t("The call history cannot be read: {e}", e=_problem(exc)), 503)
    await d.audit(seen, user.name, "login")
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    response.set_cookie(
        COOKIE, d.signer.cookie(token), max_age=d.settings.web_session_hours * 3600, **d.cookie_args(seen)
    )
    response.delete_cookie(LOGIN_NONCE, path="/")
    return response


async def logout(d: Dashboard, request: Request, seen: Seen) -> Response:
    d.sessions.forget(seen.token)
    try:
        await d.db(accounts.close_session, seen.token)
    except Exception as exc:  # the cookie goes anyway; the session row expires by itself
        log.error("web: cannot end a session in the database: %s", _problem(exc))
    await d.audit(seen, seen.user.name, "logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


async def language(d: Dashboard, request: Request) -> Response:
    """The language switch: a preference of this browser, kept in a cookie."""
    lang = request.path_params["lang"]
    response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    if lang in i18n.LANGUAGES:
        seen = await d.seen(request)
        response.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, **d.cookie_args(seen))
    return response


# --- live calls


async def live(d: Dashboard, request: Request, seen: Seen) -> Response:
    return d.render(request, seen, "live.html", "Live calls", page="live", columns=views.LIVE_COLUMNS)


async def live_json(d: Dashboard, request: Request, seen: Seen) -> Response:
    reply = await d.live.status.get()
    body = {
        "ok": bool(reply.get("ok")),
        "calls": views.live_rows(reply, d.mask_keep) if reply.get("ok") else [],
        "error": "" if reply.get("ok") else reply.get("error", "the supervisor does not answer"),
        "updated": datetime.now().astimezone(d.zone).strftime("%H:%M:%S"),
    }
    return JSONResponse(body)


async def hangup(d: Dashboard, request: Request, seen: Seen) -> Response:
    call_id = request.path_params["call_id"][:128]
    reply = await run_in_threadpool(d.live.hangup, call_id)
    await d.audit(
        seen, seen.user.name, "hangup", call_id, "ok" if reply.get("ok") else str(reply.get("error"))[:200]
    )
    log.info(
        "web: %s hung up call %s: %s",
        seen.user.name,
        call_id,
        "ok" if reply.get("ok") else reply.get("error"),
    )
    return JSONResponse(
        {"ok": bool(reply.get("ok")), "error": reply.get("error", "")},
        status_code=200 if reply.get("ok") else 409,
    )


# --- the history


def _history(engine, where: CallFilter, page: int):
    total = queries.count_calls(engine, where)
    rows = queries.recent_calls(engine, where, limit=views.PAGE_SIZE, offset=(page - 1) * views.PAGE_SIZE)
    choices = {name: queries.distinct_values(engine, name) for name in ("agent", "end_reason", "instance")}
    return total, rows, choices


async def history(d: Dashboard, request: Request, seen: Seen) -> Response:
    q = views.HistoryQuery.parse(request.query_params)
    where = q.call_filter(d.zone, d.settings.records_hash_key.reveal())
    try:
        total, rows, choices = await d.db(_history, where, q.page)
        problem = ""
    except Exception as exc:
        log.error("web: cannot read the call history: %s", _problem(exc))
        total, rows, choices, problem = (
            0,
            [],
            {},
            seen.t("The call history cannot be read: {e}", e=_problem(exc)),
        )
    pages = max(1, -(-total // views.PAGE_SIZE))
    return d.render(
        request,
        seen,
        "history.html",
        "History",
        page="history",
        problem=problem,
        q=q.values,
        choices={k: choices.get(k, []) for k in ("agent", "end_reason", "instance")},
        rows=[views.history_row(views.masked(r, d.mask_keep), d.zone) for r in rows],
        total=total,
        page_no=q.page,
        pages=pages,
        query=q.query(),
        prev_query=q.query(q.page - 1),
        next_query=q.query(q.page + 1),
    )


async def history_csv(d: Dashboard, request: Request, seen: Seen) -> Response:
    from records.export import csv_chunks

    q = views.HistoryQuery.parse(request.query_params)
    where = q.call_filter(d.zone, d.settings.records_hash_key.reveal())
    try:
        rows = await d.db(lambda e: [views.masked(r, d.mask_keep) for r in queries.iter_calls(e, where)])
    except Exception as exc:
        return d.render(
            request, seen, "error.html", "History", status=503,
            message=seen.t("The call history cannot be read: {e}", e=_problem(exc)),
        )  # fmt: skip
    await d.audit(seen, seen.user.name, "export_csv", q.query()[:160], f"{len(rows)} calls")
    name = f"callbridge-calls-{datetime.now().strftime('%Y%m%d-%H%M')}.csv"
    return StreamingResponse(
        csv_chunks(rows),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


async def call(d: Dashboard, request: Request, seen: Seen) -> Response:
    instance, call_id = request.path_params["instance"], request.path_params["call_id"]
    try:
        found = await d.db(queries.find_calls, call_id, instance)
    except Exception as exc:
        return d.render(
            request, seen, "error.html", "Call", status=503,
            message=seen.t("The call history cannot be read: {e}", e=_problem(exc)),
        )  # fmt: skip
    if not found:
        return d.render(
            request,
            seen,
            "error.html",
            "Not found",
            status=404,
            message=seen.t("There is no such call in the history."),
        )
    return d.render(
        request,
        seen,
        "call.html",
        "Call",
        page="call",
        c=views.call_view(views.masked(found[0], d.mask_keep), d.zone),
        playable=seen.user.is_admin and _playable(d, found[0]) is not None,
        recording_url=f"/calls/{quote(instance, safe='')}/{quote(call_id, safe='')}/recording.wav",
    )


def _playable(d: Dashboard, call: dict) -> Path | None:
    """The call's recording file, if it is there and inside a recordings directory of this
    machine's instances (records/recordings.py::contained)."""
    roots = [d.settings.recordings_path, Path(d.settings.state_dir) / "recordings"]
    return recordings.contained(call.get("recording_path") or "", roots)


async def recording(d: Dashboard, request: Request, seen: Seen) -> Response:
    """An admin plays a call's recording. Every request for it is audited before a byte is
    sent, whatever range it asks for; the browser's further requests of one playback (its
    ranges, a seek) within PLAY_WINDOW are that playback's, not new rows."""
    instance, call_id = request.path_params["instance"], request.path_params["call_id"]
    try:
        found = await d.db(queries.find_calls, call_id, instance)
    except Exception as exc:
        return PlainTextResponse(f"The call history cannot be read: {_problem(exc)}", status_code=503)
    file = _playable(d, found[0]) if found else None
    if file is None:
        return PlainTextResponse("No recording of this call.", status_code=404)
    if d.plays.new(seen.user.name, instance, call_id):
        try:
            await d.db(
                accounts.audit_event,
                d.instance,
                seen.user.name,
                "recording_play",
                call_id[:160],
                seen.client,
                instance,
            )
        except Exception as exc:  # unaudited, unplayed
            d.plays.forget(seen.user.name, instance, call_id)
            log.error("web: cannot write the audit log for a playback of %s: %s", call_id, _problem(exc))
            return PlainTextResponse("The audit log cannot be written: not played.", status_code=503)
        log.info("web: %s plays the recording of call %s", seen.user.name, call_id)
    return FileResponse(file, media_type="audio/wav", headers={"cache-control": "no-store"})


# --- the overview


def _overview_rows(engine, since: datetime):
    rows = list(queries.iter_calls(engine, CallFilter(since=since)))
    return rows, queries.recent_alerts(engine, 10)


async def overview(d: Dashboard, request: Request, seen: Seen) -> Response:
    now = datetime.now(UTC).replace(tzinfo=None)
    status = await d.live.status.get()
    totals, grew = await d.live.totals()
    problem = ""
    try:
        rows, alerts = await d.db(_overview_rows, now - timedelta(days=15))
    except Exception as exc:
        rows, alerts, problem = [], [], seen.t("The call history cannot be read: {e}", e=_problem(exc))
    try:
        waiting = (await run_in_threadpool(backlog, Path(d.settings.spool_dir)))[0]
    except OSError:
        waiting = None
    hooks_waiting = await run_in_threadpool(_hooks_waiting, d.settings)
    shaped = await run_in_threadpool(views.overview, rows, now, d.zone)  # 15 days of rows: off the loop
    return d.render(
        request,
        seen,
        "overview.html",
        "Overview",
        page="overview",
        problem=problem,
        health=views.health(status, totals if totals.get("ok") else {}, grew, waiting, seen.t, hooks_waiting),
        alerts=[{**a, "at": views.local(a["sent_at"], d.zone)} for a in alerts],
        **shaped,
    )


def _hooks_waiting(settings) -> int | None:
    """Call events in the webhook outbox; None when no webhook was ever in use."""
    spool_dir = Path(settings.spool_dir)
    if not settings.call_webhooks and not outbox.queues(spool_dir, settings.instance):
        return None
    return outbox.backlog(spool_dir, settings.instance)[0]


# --- agents


def _today_spent(engine, instance: str, since: datetime, until: datetime):
    return queries.cost_by_agent(engine, since, until, instance)


async def agents(d: Dashboard, request: Request, seen: Seen) -> Response:
    from callbridge.agent_descriptions import describe_book
    from callbridge.agents import load_book
    from callbridge.config import ConfigError

    t = seen.t
    problem_book = ""
    try:
        book = await run_in_threadpool(load_book, d.settings)  # the agents file as it is now
    except ConfigError as exc:
        book, problem_book = None, str(exc)
    now = datetime.now(UTC)
    since = views.day_start(now.astimezone(d.zone).date(), d.zone)
    problem = ""
    try:
        spent = await d.db(_today_spent, d.instance, since, since + timedelta(days=1))
    except Exception as exc:  # the budgets then show what is unknown, not 0.00
        spent, problem = None, t("The call history cannot be read: {e}", e=_problem(exc))
    routes, rows = [], []
    currency = d.settings.records_currency
    if book is not None:
        numbers = sorted({n for a in book.agents.values() for n in a.numbers})
        for number in numbers:
            choice = book.choose(number, now)
            routes.append(
                {
                    "number": number,
                    "agent": choice.agent.name if choice.agent else t("no agent"),
                    "how": choice.how,
                }
            )
        for agent in book.agents.values():
            rows.append(
                {
                    "name": agent.name,
                    "hours": agent.hours.describe() if agent.hours is not None else t("always"),
                    "budget": "-" if agent.daily_budget is None else f"{agent.daily_budget:g} {currency}",
                    "spent": "?" if spent is None else f"{spent.get(agent.name, 0.0):.2f} {currency}",
                }
            )
    return d.render(
        request,
        seen,
        "agents.html",
        "Agents",
        page="agents",
        problem=problem,
        problem_book=problem_book,
        routes=routes,
        agents=rows,
        described=describe_book(book) if book is not None else "",
    )


# --- the account


async def account(
    d: Dashboard, request: Request, seen: Seen, notice: str = "", problem: str = "", status: int = 200
):
    return d.render(
        request,
        seen,
        "account.html",
        "Your account",
        page="account",
        notice=notice,
        problem=problem,
        status=status,
    )


async def password(d: Dashboard, request: Request, seen: Seen) -> Response:
    t = seen.t
    form = getattr(request.state, "form", None) or await d.form(request) or {}
    current, new, again = (form.get(k, "")[:1024] for k in ("current", "new", "again"))
    if new != again:
        return await account(d, request, seen, problem=t("The two new passwords differ."), status=400)
    # Its own limit, per user: a stolen session cannot guess the password without end, and
    # its failures do not lock the address out of logging in (others share it behind NAT).
    key = "user:" + seen.user.name
    wait = d.password_limiter.retry_after(key)
    if wait:
        problem = t("Too many failed logins: try again in {s} s.", s=round(wait))
        return await account(d, request, seen, problem=problem, status=429)
    mark = d.password_limiter.begin(key)
    try:
        async with d.kdf:
            known = await d.db(accounts.authenticate, seen.user.name, current)
        if known is None:
            await d.audit(seen, seen.user.name, "password_refused")
            return await account(d, request, seen, problem=t("The current password is wrong."), status=403)
        d.password_limiter.succeeded(key, mark)
        await d.db(accounts.set_password, seen.user.name, new)
        d.sessions.forget_user(seen.user.name)
        await d.audit(seen, seen.user.name, "password_changed")
        # set_password ended every session of theirs, this one too: open a new one for this browser
        token = await d.db(accounts.open_session, seen.user, d.settings.web_session_hours, seen.client)
    except accounts.AccountError as exc:
        return await account(d, request, seen, problem=t(str(exc)), status=400)
    except Exception as exc:
        log.error("web: cannot change a password: %s", _problem(exc))
        problem = t("The call history cannot be read: {e}", e=_problem(exc))
        return await account(d, request, seen, problem=problem, status=503)
    seen.token = token
    response = await account(
        d, request, seen, notice=t("Your password is changed; other sessions of yours have ended.")
    )
    response.set_cookie(
        COOKIE, d.signer.cookie(token), max_age=d.settings.web_session_hours * 3600, **d.cookie_args(seen)
    )
    return response
