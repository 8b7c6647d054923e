"""The dashboard's doors (web/dashboard.py, web/security.py, web/sessions.py) against a real
`callbridge web serve` on SQLite: what is refused without a session, without a CSRF token or
as a viewer; the login's rate limit and whose X-Forwarded-For is believed; the headers and
cookies; no secret on any page; sessions that end; hostile requests that change nothing."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

import pytest
import requests
from sqlalchemy import update
from testenv import wait_until
from webtest import ADMIN, VIEWER, WebServe, add_user, csrf_of, hidden, login

from callbridge.database_url import DatabaseUrl
from records.accounts import recent_audit
from records.schema import web_sessions
from records.store import open_engine

SECRETS = {
    "ASTERISK_PASSWORD": "sekret-ari-4242",
    "OPENAI_API_KEY": "sk-sekret-openai-4242",
    "WEB_SECRET_KEY": "sekret-web-signing-4242",
    "RECORDS_HASH_KEY": "sekret-hash-4242",
    "ALERT_SMTP_URL": "smtp://mailer:sekret-smtp-4242@127.0.0.1:2525",
    "ALERT_EMAIL_TO": "ops@example.com",
    "ALERT_WEBHOOKS": "json:http://127.0.0.1:9/hook?token=sekret-hook-4242",
}
PAGES = ["/", "/live", "/calls", "/calls.csv", "/agents", "/account", "/calls/x/y"]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A dashboard with no supervisor behind it, trusting 127.0.0.1 as its proxy; it starts
    with no user, and the module's first test sees that."""
    server = WebServe(tmp_path_factory.mktemp("web"), WEB_TRUSTED_PROXIES="127.0.0.1", **SECRETS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def users(web):
    add_user(web.env, *ADMIN, "admin")
    add_user(web.env, *VIEWER, "viewer")
    return web


def _audit(web) -> list[dict]:
    engine = open_engine(DatabaseUrl.sqlite_file(web.env["STATE_DIR"] + "/callbridge.db"))
    try:
        return recent_audit(engine, 200)
    finally:
        engine.dispose()


def test_with_no_user_yet_the_login_page_names_the_command_that_makes_one(web):
    page = requests.get(web.base + "/login", timeout=5)
    assert page.status_code == 200
    assert "callbridge web add-user NAME --role admin" in page.text


def test_every_page_and_api_needs_a_session(users):
    base = users.base
    for path in PAGES:
        reply = requests.get(base + path, allow_redirects=False, timeout=5)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next="), path
    assert requests.get(base + "/api/live", timeout=5).status_code == 401
    assert requests.post(base + "/api/calls/1.1/hangup", timeout=5).status_code == 401
    # a cookie we did not sign is no session, whatever it holds
    forged = {"callbridge_session": "abc.def"}
    assert requests.get(base + "/api/live", cookies=forged, timeout=5).status_code == 401
    assert requests.get(base + "/static/app.css", timeout=5).status_code == 200  # the only open files


def test_a_state_change_without_this_session_s_csrf_token_is_refused_and_audited(users):
    admin = login(users.base, *ADMIN)
    token = csrf_of(admin.get(users.base + "/live", timeout=5).text)
    url = users.base + "/api/calls/1733.1/hangup"
    assert admin.post(url, timeout=5).status_code == 403
    assert admin.post(url, headers={"X-CSRF-Token": "x" * len(token)}, timeout=5).status_code == 403
    other = login(users.base, *ADMIN)  # another session's token is not this one's
    theirs = csrf_of(other.get(users.base + "/live", timeout=5).text)
    assert theirs != token
    assert admin.post(url, headers={"X-CSRF-Token": theirs}, timeout=5).status_code == 403
    # with it, the request goes through to the supervisor (none here: not live, 409)
    done = admin.post(url, headers={"X-CSRF-Token": token}, timeout=5)
    assert done.status_code == 409 and "does not answer" in done.json()["error"]
    assert admin.post(users.base + "/logout", data={}, allow_redirects=False, timeout=5).status_code == 403
    actions = [(a["user_name"], a["action"], a["target"]) for a in _audit(users)]
    assert actions.count(("ana", "refused_csrf", "/api/calls/1733.1/hangup")) == 3
    assert ("ana", "hangup", "1733.1") in actions


def test_a_viewer_sees_but_may_not_hang_up(users):
    viewer = login(users.base, *VIEWER)
    live = viewer.get(users.base + "/live", timeout=5).text
    assert 'data-admin="0"' in live
    token = csrf_of(live)
    refused = viewer.post(users.base + "/api/calls/1733.2/hangup", headers={"X-CSRF-Token": token}, timeout=5)
    assert refused.status_code == 403
    assert ("vic", "refused_role", "/api/calls/1733.2/hangup") in [
        (a["user_name"], a["action"], a["target"]) for a in _audit(users)
    ]


def test_logins_are_limited_per_client_as_the_trusted_proxy_names_it(users):
    def attempt(client: str, password: str = "wrong-password-0") -> requests.Response:
        s = requests.Session()
        s.headers["X-Forwarded-For"] = f"198.51.100.7, {client}"  # the left part is the client's to write
        form = s.get(users.base + "/login", timeout=5)
        return s.post(
            users.base + "/login",
            data={"csrf": hidden(form.text), "name": ADMIN[0], "password": password},
            allow_redirects=False,
            timeout=10,
        )

    for _ in range(5):
        assert attempt("203.0.113.5").status_code == 401
    limited = attempt("203.0.113.5", ADMIN[1])  # even the right password waits now
    assert limited.status_code == 429 and "try again in" in limited.text
    assert attempt("203.0.113.6", ADMIN[1]).status_code == 303  # another client is not held up
    failed = [a for a in _audit(users) if a["action"] == "login_failed"]
    assert {a["client"] for a in failed} >= {"203.0.113.5"}
    assert "198.51.100.7" not in {a["client"] for a in _audit(users)}


def test_an_untrusted_peer_s_forwarded_for_is_not_believed(tmp_path):
    web = WebServe(tmp_path).start()  # no WEB_TRUSTED_PROXIES
    try:
        add_user(web.env, *ADMIN, "admin")
        for n in range(5):
            s = requests.Session()
            s.headers["X-Forwarded-For"] = f"203.0.113.{n}"  # a new "client" each time: ignored
            form = s.get(web.base + "/login", timeout=5)
            data = {"csrf": hidden(form.text), "name": ADMIN[0], "password": "wrong-password-0"}
            assert s.post(web.base + "/login", data=data, timeout=10).status_code == 401
        s = requests.Session()
        form = s.get(web.base + "/login", timeout=5)
        data = {"csrf": hidden(form.text), "name": ADMIN[0], "password": ADMIN[1]}
        assert s.post(web.base + "/login", data=data, timeout=10).status_code == 429
    finally:
        web.stop()


def test_headers_and_cookies(users):
    plain = requests.get(users.base + "/login", timeout=5)
    headers = plain.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store" and "strict-transport-security" not in headers
    s = requests.Session()
    form = s.get(users.base + "/login", timeout=5)
    reply = s.post(
        users.base + "/login",
        data={"csrf": hidden(form.text), "name": ADMIN[0], "password": ADMIN[1]},
        allow_redirects=False,
        timeout=10,
    )
    cookie = reply.headers["set-cookie"]
    assert "callbridge_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never come back
    # behind the trusted proxy, which says the browser came over TLS
    tls = requests.Session()
    tls.headers["X-Forwarded-Proto"] = "https"
    form = tls.get(users.base + "/login", timeout=5)
    assert "strict-transport-security" in form.headers
    reply = tls.post(
        users.base + "/login",
        data={"csrf": hidden(form.text), "name": ADMIN[0], "password": ADMIN[1]},
        allow_redirects=False,
        timeout=10,
    )
    assert "Secure" in reply.headers["set-cookie"]


def test_no_secret_is_on_any_page_or_in_the_log(users):
    admin = login(users.base, *ADMIN)
    seen = [admin.get(users.base + path, timeout=10).text for path in [*PAGES, "/api/live", "/login"]]
    seen.append(requests.get(users.base + "/nowhere", timeout=5).text)
    seen.append(users.log())
    for name, value in SECRETS.items():
        needle = value.split(":")[-1].split("@")[0].split("=")[-1]  # the secret part of a URL too
        assert not any(needle in text for text in seen), f"{name} is shown"


def test_logout_and_expiry_end_a_session(users):
    admin = login(users.base, *ADMIN)
    token = csrf_of(admin.get(users.base + "/live", timeout=5).text)
    assert admin.post(users.base + "/logout", data={"csrf": token}, timeout=5).url.endswith("/login")
    assert admin.get(users.base + "/api/live", timeout=5).status_code == 401
    kept = login(users.base, *ADMIN)
    assert kept.get(users.base + "/api/live", timeout=5).status_code == 200
    engine = open_engine(DatabaseUrl.sqlite_file(users.env["STATE_DIR"] + "/callbridge.db"))
    with engine.begin() as conn:  # WEB_SESSION_HOURS later
        conn.execute(update(web_sessions).values(expires_at=datetime.utcnow() - timedelta(seconds=1)))
    engine.dispose()
    # a session seen lately is trusted for a few seconds more (web/sessions.py::CACHE_SECONDS)
    wait_until(
        lambda: kept.get(users.base + "/api/live", timeout=5).status_code == 401, timeout=15, interval=0.5
    )


def test_a_login_returns_only_to_a_page_of_ours(users):
    for target, expected in [
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/calls?x=1", "/calls?x=1"),
    ]:
        s = requests.Session()
        form = s.get(users.base + "/login", timeout=5)
        reply = s.post(
            users.base + "/login",
            data={"csrf": hidden(form.text), "name": ADMIN[0], "password": ADMIN[1], "next": target},
            allow_redirects=False,
            timeout=10,
        )
        assert reply.status_code == 303 and reply.headers["location"] == expected


def test_a_password_change_ends_the_other_sessions(users):
    name, old = "pat", "pat-password-1"
    add_user(users.env, name, old, "viewer")
    here, elsewhere = login(users.base, name, old), login(users.base, name, old)
    page = here.get(users.base + "/account", timeout=5).text
    wrong = here.post(
        users.base + "/account/password",
        data={
            "csrf": csrf_of(page),
            "current": "not-it-at-all",
            "new": "pat-password-2",
            "again": "pat-password-2",
        },
        timeout=10,
    )
    assert wrong.status_code == 403
    done = here.post(
        users.base + "/account/password",
        data={"csrf": csrf_of(page), "current": old, "new": "pat-password-2", "again": "pat-password-2"},
        timeout=10,
    )
    assert done.status_code == 200 and "password is changed" in done.text
    assert here.get(users.base + "/api/live", timeout=5).status_code == 200  # this browser stays in
    wait_until(
        lambda: elsewhere.get(users.base + "/api/live", timeout=5).status_code == 401,
        timeout=15,
        interval=0.5,
    )
    login(users.base, name, "pat-password-2")
    actions = [(a["user_name"], a["action"]) for a in _audit(users)]
    assert (name, "password_changed") in actions and (name, "password_refused") in actions


def test_the_browser_s_language_is_spoken_and_the_switch_keeps_it(users):
    spanish = requests.get(
        users.base + "/login", headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}, timeout=5
    )
    assert '<html lang="es">' in spanish.text and ">Entrar<" in spanish.text
    english = requests.get(users.base + "/login", headers={"Accept-Language": "de, en;q=0.3"}, timeout=5)
    assert '<html lang="en">' in english.text
    s = requests.Session()
    s.headers["Accept-Language"] = "es"
    switched = s.get(users.base + "/lang/en?next=/login", timeout=5)
    assert '<html lang="en">' in switched.text and switched.url.endswith("/login")


def test_hostile_requests_change_nothing(users):
    base = users.base
    admin = login(base, *ADMIN)
    token = csrf_of(admin.get(base + "/live", timeout=5).text)
    # a form far over the limit is not read (no session change, no crash)
    big = admin.post(base + "/account/password", data={"csrf": token, "current": "x" * 40000}, timeout=10)
    assert big.status_code == 403
    for path in [
        "/calls?page=abc&since=yesterday&until=%00",
        "/calls?text=%25%27%22--",
        "/calls/%2e%2e/%2e%2e",
    ]:
        assert admin.get(base + path, timeout=10).status_code in (200, 404), path
    assert (
        admin.get(base + "/lang/xx?next=//evil", allow_redirects=False, timeout=5).headers["location"] == "/"
    )
    with socket.create_connection(("127.0.0.1", users.port), timeout=5) as raw:  # not HTTP at all
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200) + b"\r\n\r\n")
        raw.settimeout(5)
        try:
            raw.recv(100)
        except (TimeoutError, ConnectionResetError):
            pass
    assert admin.get(base + "/api/live", timeout=5).status_code == 200  # still serving, still logged in


def _raw_login(base: str, port: int, name: str, password: str, forwarded: list[str]) -> int:
    """A login whose X-Forwarded-For comes as several header lines (requests merges them)."""
    import http.client

    form = requests.get(base + "/login", timeout=5)
    body = f"csrf={hidden(form.text)}&name={name}&password={password}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("POST", "/login")
    for line in forwarded:
        conn.putheader("X-Forwarded-For", line)
    conn.putheader("Cookie", "; ".join(f"{k}={v}" for k, v in form.cookies.items()))
    conn.putheader("Content-Type", "application/x-www-form-urlencoded")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body.encode())
    status = conn.getresponse().status
    conn.close()
    return status


def test_a_client_s_own_forwarded_for_line_is_not_believed_before_the_proxy_s(users):
    # The proxy added its own line (HAProxy does) after the client's forged one: the client is
    # the last untrusted address of both lines together, so the forged one changes nothing.
    for n in range(5):
        assert (
            _raw_login(users.base, users.port, "ghost", "wrong-password-0", [f"192.0.2.{n}", "203.0.113.40"])
            == 401
        )
    assert (
        _raw_login(users.base, users.port, "ghost", "wrong-password-0", ["192.0.2.99", "203.0.113.40"]) == 429
    )


def test_a_burst_of_concurrent_guesses_gets_no_more_tries_than_a_sequence(users):
    from concurrent.futures import ThreadPoolExecutor

    def guess(_n: int) -> int:
        return _raw_login(users.base, users.port, "burst", "wrong-password-0", ["203.0.113.50"])

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(guess, range(20)))
    assert statuses.count(401) <= 5 and statuses.count(429) >= 15, statuses


def test_a_name_guessed_from_many_addresses_is_limited_too(users):
    for address in range(4):  # four addresses, five guesses each: no address is over its limit
        for _ in range(5):
            assert (
                _raw_login(users.base, users.port, "roamer", "wrong-0000000", [f"198.18.0.{address}"]) == 401
            )
    assert _raw_login(users.base, users.port, "roamer", "wrong-0000000", ["198.18.0.200"]) == 429
    # an IPv6 client is one client across its /64
    for n in range(5):
        assert (
            _raw_login(users.base, users.port, f"v6-{n}", "wrong-0000000", [f"2001:db8:1:2::{n + 1}"]) == 401
        )
    assert _raw_login(users.base, users.port, "v6-x", "wrong-0000000", ["2001:db8:1:2:ffff::9"]) == 429


def test_bad_bytes_and_dates_are_refused_or_ignored_not_errors(users):
    base = users.base
    admin = login(base, *ADMIN)
    for path in ["/calls?since=0001-01-01&until=9999-12-31", "/calls.csv?until=9999-12-31"]:
        assert admin.get(base + path, timeout=10).status_code == 200, path
    odd = requests.Session()
    odd.headers["Cookie"] = "callbridge_session=\u00e9t\u00e9.\u00e9t\u00e9".encode().decode("latin-1")
    assert odd.get(base + "/live", allow_redirects=False, timeout=5).status_code == 303  # no session
    token_header = {"X-CSRF-Token": "caf\u00e9".encode().decode("latin-1")}
    refused = admin.post(base + "/api/calls/x/hangup", headers=token_header, timeout=5)
    assert refused.status_code == 403
    assert "Traceback" not in users.log()


def test_a_password_change_is_limited_apart_from_the_logins(users):
    viewer = login(users.base, *VIEWER)
    token = csrf_of(viewer.get(users.base + "/account", timeout=5).text)
    data = {
        "csrf": token,
        "current": "not-the-password",
        "new": "a-new-password-9",
        "again": "a-new-password-9",
    }
    for _ in range(5):
        assert viewer.post(users.base + "/account/password", data=data, timeout=10).status_code == 403
    assert viewer.post(users.base + "/account/password", data=data, timeout=10).status_code == 429
    assert login(users.base, *VIEWER)  # the address may still log in


def test_a_masking_instance_masks_every_stored_number_on_every_page(tmp_path):
    """Rows stored unmasked (before masking was on, or by an instance that does not mask)
    show masked on a masking instance's history, call page and CSV; a caller name that is a
    number too; a display name that is a formula is defused in the CSV."""
    from records_fixtures import a_record

    from records.migrate import upgrade
    from records.store import store_record

    web = WebServe(tmp_path, RECORDS_MASK_CALLERS="true", RECORDS_HASH_KEY="sekret-hash-4242").start()
    try:
        engine = open_engine(DatabaseUrl.sqlite_file(web.env["STATE_DIR"] + "/callbridge.db"))
        upgrade(engine)
        store_record(engine, a_record("1733.7", "clinic", caller="+34600111222", caller_name="+34600111222"))
        store_record(
            engine, a_record("1733.8", "clinic", caller="+34600999888", caller_name='=HYPERLINK("x")')
        )
        engine.dispose()
        add_user(web.env, *ADMIN, "admin")
        admin = login(web.base, *ADMIN)
        pages = [
            admin.get(web.base + p, timeout=10).text for p in ("/calls", "/calls/clinic/1733.7", "/calls.csv")
        ]
        for text in pages:
            assert "600111222" not in text and "600999888" not in text
        assert "+********222" in pages[0] and "+********222" in pages[1]
        assert "'=HYPERLINK" in pages[2] and "\n=HYPERLINK" not in pages[2] and ",=HYPERLINK" not in pages[2]
    finally:
        web.stop()
