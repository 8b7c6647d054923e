"""The dashboard in a real browser: Debian's chromium, driven by selenium through
chromedriver, against a real `callbridge run` on the simulators.

An admin logs in, watches calls appear live and leave when they end, hangs one up from the
page (the caller is hung up), opens a finished call's conversation, filters the history,
switches to Spanish and checks that nothing scrolls sideways at 390 px; a viewer sees no
hang-up button and is refused when trying anyway; a request without a CSRF token is
refused. Each page's screenshot is written to the test's directory (and, with
CALLBRIDGE_SCREENSHOTS=DIR, copied there: docs/ holds two of them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from testenv import ended, free_port
from webtest import ADMIN, VIEWER, add_user

pytestmark = pytest.mark.slow

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
LONG_CALL = [{"say": 600}, {"silence": 60000}, {"hangup": True}]
SHORT_CALL = [{"silence": 300}, {"say": 900}, {"silence": 5000}, {"hangup": True}]


@pytest.fixture(scope="module")
def chrome():
    if not (CHROMIUM and DRIVER):
        pytest.skip(
            "NOT TESTED IN A BROWSER: chromium and chromium-driver are not installed (scripts/setup-e2e.sh)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--autoplay-policy=no-user-gesture-required",  # a recording plays from the test's script
    ):
        options.add_argument(arg)
    options.add_argument("--lang=en-US")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


class Page:
    """The browser on one dashboard, with the waits every step needs."""

    def __init__(self, driver, base: str, shots: Path) -> None:
        self.driver, self.base, self.shots = driver, base, shots

    def go(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, predicate, timeout: float = 20.0):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda _d: predicate())

    def login(self, name: str, password: str) -> None:
        if "/login" not in self.driver.current_url:  # else keep the page's ?next=
            self.go("/login")
        self.find("#name").send_keys(name)
        self.find("#password").send_keys(password)
        self.find("#login").click()
        self.until(lambda: "/login" not in self.driver.current_url)

    def logout(self) -> None:
        self.find("#logout").click()
        self.until(lambda: "/login" in self.driver.current_url)

    def shot(self, name: str) -> None:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        wanted = os.environ.get("CALLBRIDGE_SCREENSHOTS")
        if wanted:
            Path(wanted).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(wanted) / f"dashboard-{path.name}")

    def fetch_status(self, path: str, csrf: bool) -> int:
        """A POST from the page's own script context (same origin, the session's cookie)."""
        return self.driver.execute_async_script(
            """
            const [path, withToken, done] = arguments;
            const headers = withToken ? {"X-CSRF-Token": document.querySelector('meta[name="csrf"]').content} : {};
            fetch(path, {method: "POST", credentials: "same-origin", headers}).then(r => done(r.status));
            """,
            path,
            csrf,
        )

    def fits(self, width: int) -> bool:
        return self.driver.execute_script(
            "return document.documentElement.scrollWidth <= arguments[0] && document.body.scrollWidth <= arguments[0];",
            width,
        )


@pytest.fixture
def dashboard(service, chrome, tmp_path):
    port = free_port()
    svc = service(WEB_LISTEN=f"127.0.0.1:{port}", RECORDS_TIMEZONE="Europe/Madrid", RECORD_CALLS="true")
    add_user(svc.env, *ADMIN, "admin")
    add_user(svc.env, *VIEWER, "viewer")
    chrome.delete_all_cookies()
    page = Page(chrome, f"http://127.0.0.1:{port}", tmp_path)
    page.until(lambda: chrome.get(page.base + "/login") or "Log in" in chrome.title, timeout=20)
    return svc, page


def test_an_admin_watches_hangs_up_reads_filters_and_switches_language(dashboard, asterisk):
    svc, page = dashboard
    page.go("/live")  # no session: the login page, which comes back here afterwards
    assert "/login?next=" in page.driver.current_url
    page.login(*ADMIN)
    assert page.driver.current_url.endswith("/live")

    long_call = asterisk.place_call(LONG_CALL, caller="+34600111001", exten="100")
    short_call = asterisk.place_call(SHORT_CALL, caller="+34600222002", exten="100")
    page.until(
        lambda: page.all(f'tr[data-call-id="{long_call}"]') and page.all(f'tr[data-call-id="{short_call}"]')
    )
    row = page.find(f'tr[data-call-id="{long_call}"]')
    assert "+34600111001" in row.text
    frames = lambda: page.find(f'tr[data-call-id="{long_call}"] td[data-key="frames"]').text  # noqa: E731
    first = frames()
    page.until(lambda: frames() != first)  # updating in place
    page.shot("live")

    # the short call ends by itself and leaves the list
    page.until(lambda: not page.all(f'tr[data-call-id="{short_call}"]'), timeout=30)
    assert page.all(f'tr[data-call-id="{long_call}"]')

    # hang up the long one from the page
    page.find(f'tr[data-call-id="{long_call}"] button.hangup').click()
    page.driver.switch_to.alert.accept()
    page.until(lambda: not page.all(f'tr[data-call-id="{long_call}"]'), timeout=20)
    svc.wait(lambda: ended(asterisk, long_call), timeout=10)  # the caller was hung up

    # the history: filter by the short call's caller, open its conversation
    def listed() -> bool:
        page.go("/calls?caller=222002")
        return bool(page.all("#history tbody tr"))

    page.until(listed, timeout=30)
    assert len(page.all("#history tbody tr")) == 1
    page.shot("history")
    page.find("#history tbody tr a").click()
    page.until(lambda: page.all("#transcript"))
    turns = page.all("#transcript li")
    assert turns and any("caller" in t.get_attribute("class") for t in turns)
    assert page.find("#end-reason").text == "the caller hung up"  # in words, not the stored name
    page.shot("call")
    _the_recording_plays_and_is_audited(svc, page)

    # the hung-up call is in the history as the operator's
    page.go("/calls?caller=111001")
    page.until(lambda: page.all("#history tbody tr td.reason-operator_hangup"))

    page.go("/")
    page.until(lambda: page.all("#health"))
    assert "connected" in page.find("#health").text
    page.shot("overview")
    page.go("/agents")
    assert page.all("#routes tbody tr")

    # Spanish, by the switch; it stays on every page
    page.find("#lang").click()
    page.until(lambda: page.find("html").get_attribute("lang") == "es")
    page.go("/live")
    assert "Llamadas en curso" in page.find("h1").text

    # a phone: nothing scrolls sideways on any page
    page.driver.set_window_size(390, 844)
    try:
        width = page.driver.execute_script("return window.innerWidth;")
        assert width <= 390
        for path in ["/", "/live", "/calls", "/agents", "/account"]:
            page.go(path)
            assert page.fits(width), path
        page.go("/calls?caller=222002")
        page.find("#history tbody tr a").click()
        page.until(lambda: page.all("#transcript"))
        assert page.fits(width), "a call"
        page.shot("call-390px")
    finally:
        page.driver.set_window_size(1280, 1000)

    # a state change without the CSRF token is refused, with it an admin's goes through
    assert page.fetch_status("/api/calls/no.such/hangup", csrf=False) == 403
    assert page.fetch_status("/api/calls/no.such/hangup", csrf=True) == 409  # not live
    page.logout()


def _the_recording_plays_and_is_audited(svc, page) -> None:
    """Issue 29: the call page plays the call's recording (RECORD_CALLS=true) for an admin,
    and the playback is in the audit log before a byte is sent."""
    from callbridge.database_url import DatabaseUrl
    from records.accounts import recent_audit
    from records.store import open_engine

    assert "complete" in page.find("#recording").text
    engine = open_engine(DatabaseUrl.sqlite_file(Path(svc.env["STATE_DIR"]) / "callbridge.db"))

    def plays() -> list[dict]:
        return [row for row in recent_audit(engine) if row["action"] == "recording_play"]

    try:
        # A request for any part of the file is a playback, audited before a byte is sent.
        status = page.driver.execute_async_script(
            """const done = arguments[1];
            fetch(arguments[0], {headers: {Range: "bytes=1-"}}).then(r => done(r.status));""",
            page.find("audio").get_attribute("src"),
        )
        assert status == 206 and len(plays()) == 1
        seconds = page.driver.execute_async_script(
            """
            const done = arguments[0], audio = document.querySelector("audio");
            audio.addEventListener("playing", () => setTimeout(() => done([audio.duration, audio.currentTime]), 700));
            audio.addEventListener("error", () => done(["error", audio.error && audio.error.code]));
            audio.play().catch(e => done(["refused", String(e)]));
            """
        )
        assert isinstance(seconds[0], float), seconds
        duration, played = seconds
        assert 4.5 < duration < 9 and played > 0.2  # the short call's 6-7 s, decoded and playing
        [play] = plays()  # the playback that followed, with its range requests, is the same one
        assert play["user_name"] == ADMIN[0]
    finally:
        engine.dispose()


def test_a_viewer_has_no_hang_up_button_and_is_refused_anyway(dashboard, asterisk):
    svc, page = dashboard
    call_id = asterisk.place_call(LONG_CALL, caller="+34600333003")
    page.login(*VIEWER)
    page.go("/live")
    page.until(lambda: page.all(f'tr[data-call-id="{call_id}"]'))
    assert not page.all("button.hangup")
    assert page.fetch_status(f"/api/calls/{call_id}/hangup", csrf=True) == 403
    assert svc.call_row(call_id) is not None  # still live
    # A recording is an admin's to play: a viewer is refused it, by the page and by its URL.
    status = page.driver.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(r => done(r.status));",
        f"/calls/openai-app/{call_id}/recording.wav",
    )
    assert status == 403
    page.logout()
    page.go("/live")
    assert "/login" in page.driver.current_url  # and without a session, nothing
    asterisk.hangup(call_id)
    svc.wait(lambda: ended(asterisk, call_id), timeout=15)
