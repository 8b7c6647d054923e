"""Built-in alerts: the condition tracker (dedup, hold, rate limit, resolve) with a fake
clock; the conditions from the supervisor's state; the webhook channel against a real HTTP
receiver (up, down, slow, answering garbage); and a real service that announces its start,
its stop, crashes and an unclean restart to that receiver."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from testenv import ended, free_port

from alerts.conditions import Holding, Notice, Tracker
from alerts.send import send_all
from alerts.watch import Recent, holding, opened_since
from callbridge.alert_settings import Thresholds, Webhook

CRASHES = Thresholds().crashes

# --- the tracker, pure


def test_a_condition_is_announced_once_and_resolved_once():
    tracker = Tracker(repeat_after=100.0)
    crash = {"worker_crashes": Holding("3 crashed")}
    assert tracker.update(0.0, crash) == [Notice("worker_crashes", "firing", "warning", "3 crashed")]
    assert tracker.update(1.0, crash) == []  # still holding: said already
    assert tracker.update(50.0, crash) == []
    assert tracker.update(500.0, crash) == []  # past the rate limit too: it is the same condition
    assert tracker.update(501.0, {}) == [Notice("worker_crashes", "resolved", "info", "resolved: 3 crashed")]
    assert tracker.update(502.0, {}) == []


def test_a_condition_must_hold_for_its_hold_time_and_a_blip_says_nothing():
    tracker = Tracker()
    down = {"ari_unreachable": Holding("ARI down", "critical", hold=30.0)}
    assert tracker.update(0.0, down) == []
    assert tracker.update(20.0, {}) == []  # back within 30 s: nothing fired, nothing to resolve
    assert tracker.update(21.0, down) == []
    assert tracker.update(50.0, down) == []  # 29 s since it began again
    assert [n.kind for n in tracker.update(51.0, down)] == ["firing"]


def test_a_flapping_condition_is_rate_limited_and_announced_when_the_limit_allows():
    tracker = Tracker(repeat_after=100.0)
    busy = {"callers_turned_away": Holding("busy")}
    assert [n.kind for n in tracker.update(0.0, busy)] == ["firing"]
    assert [n.kind for n in tracker.update(10.0, {})] == ["resolved"]
    assert tracker.update(20.0, busy) == []  # back within the limit: held back
    assert tracker.update(30.0, {}) == []  # and gone again: it was never said, so no resolve
    assert tracker.update(40.0, busy) == []
    assert tracker.firing() == ["callers_turned_away"]
    assert [n.kind for n in tracker.update(100.0, busy)] == ["firing"]  # still there when allowed
    assert [n.kind for n in tracker.update(101.0, {})] == ["resolved"]


def test_conditions_are_tracked_apart():
    tracker = Tracker()
    both = {"a": Holding("A"), "b": Holding("B")}
    assert sorted(n.key for n in tracker.update(0.0, both)) == ["a", "b"]
    assert [(n.key, n.kind) for n in tracker.update(1.0, {"b": Holding("B")})] == [("a", "resolved")]


# --- the conditions, from the supervisor's state


def test_the_conditions_from_the_supervisor_s_state():
    recent = Recent()
    assert holding(0.0, True, recent, {}) == {}
    assert "ari_unreachable" in holding(0.0, False, recent, {})
    for i in range(CRASHES):
        recent.call_ended(float(i), "worker_crashed", {})
    for i in range(3):
        recent.call_ended(float(i), "caller_hangup", {"invalid_api_key": 1} if i == 0 else {})
    found = holding(10.0, True, recent, {"gpt-realtime": 12, "gpt-transcribe": 400})
    assert set(found) == {
        "worker_crashes",
        "failed_calls",
        "realtime_invalid_api_key",
        "model_shutdown_gpt-realtime",
    }
    assert found["realtime_invalid_api_key"].severity == "critical"
    recent.turned_away(10.0)
    assert "callers_turned_away" in holding(11.0, True, recent, {})
    later = holding(10_000.0, True, recent, {})  # every window has passed
    assert later == {}


def test_the_thresholds_decide_every_condition():
    strict = Thresholds(
        ari_down_seconds=2.0,
        crashes=1,
        crash_window_seconds=5.0,
        failed_ratio=0.5,
        failed_min_calls=2,
        failed_window_seconds=8.0,
        busy_window_seconds=3.0,
        shutdown_days=100,
    )
    recent = Recent(strict)
    assert holding(0.0, False, recent, {})["ari_unreachable"].hold == 2.0
    recent.call_ended(0.0, "worker_crashed", {})
    assert set(holding(1.0, True, recent, {})) == {"worker_crashes"}  # 1 of 1 call: too few calls
    recent.call_ended(1.0, "caller_hangup", {})
    assert set(holding(2.0, True, recent, {})) == {"worker_crashes"}  # 1 of 2 is not over 0.5
    recent.call_ended(2.0, "setup_failed", {})
    assert set(holding(3.0, True, recent, {})) == {"worker_crashes", "failed_calls"}
    assert set(holding(6.0, True, recent, {})) == {"failed_calls"}  # the crash left its 5 s window
    assert holding(11.0, True, recent, {}) == {}  # and every call its 8 s one
    recent.turned_away(11.0)
    assert set(holding(14.0, True, recent, {"m": 90})) == {"callers_turned_away", "model_shutdown_m"}
    assert holding(14.5, True, recent, {"m": 101}) == {}
    assert Recent().thresholds == Thresholds()  # the defaults: ALERT_*'s


def _header(created_s: float, frames_to_realtime: int) -> dict:
    return {"created_ns": int(created_s * 1e9), "frames_to_realtime": frames_to_realtime}


def test_a_refusal_resolves_when_a_later_call_opens_a_session_fine():
    recent = Recent(Thresholds(failed_window_seconds=100.0))
    recent.call_ended(10.0, "realtime_failed", {"invalid_api_key": 1}, opened_since(_header(9.0, 3)))
    recent.call_ended(11.0, "realtime_failed", {"insufficient_quota": 1}, opened_since(_header(10.5, 0)))
    assert set(holding(12.0, True, recent, {})) >= {"realtime_invalid_api_key", "realtime_insufficient_quota"}
    # No proof: a caller who left before a session opened; a call admitted before the refusal
    # was seen (its session opened then); a refused call; a session that took no audio.
    recent.call_ended(13.0, "caller_hangup", {}, opened_since(_header(12.5, 0)))
    recent.call_ended(14.0, "caller_hangup", {}, opened_since(_header(5.0, 200)))
    recent.call_ended(15.0, "realtime_failed", {}, opened_since(_header(14.5, 10)))
    recent.call_ended(16.0, "caller_hangup", {"invalid_api_key": 1}, opened_since(_header(15.5, 10)))
    assert "realtime_invalid_api_key" in holding(17.0, True, recent, {})
    # Proof: admitted after the last refusal, its session opened and took the caller's audio.
    recent.call_ended(20.0, "caller_hangup", {"rate_limit_exceeded": 1}, opened_since(_header(18.0, 90)))
    assert not [key for key in holding(21.0, True, recent, {}) if key.startswith("realtime_")]


def test_a_refusal_without_a_good_call_resolves_when_its_window_passes():
    recent = Recent(Thresholds(failed_window_seconds=60.0))
    recent.call_ended(0.0, "realtime_failed", {"model_not_found": 1})
    assert "realtime_model_not_found" in holding(59.0, True, recent, {})
    assert "realtime_model_not_found" not in holding(61.0, True, recent, {})


# --- the webhook channel, against a real receiver


class Receiver:
    """A real HTTP server on loopback that keeps what it is sent; it can be slow or rude."""

    def __init__(self) -> None:
        self.got: list[tuple[str, dict]] = []
        self.done_at: list[float] = []  # when each request had been kept, before the reply
        self.delay = 0.0
        self.status = 200
        self.body = b"ok"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"null")
                time.sleep(receiver.delay)
                receiver.got.append((self.path, payload))
                receiver.done_at.append(time.monotonic())
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def texts(self) -> list[str]:
        return [body.get("text", "") for _, body in self.got]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def test_webhooks_parse_their_forms_and_never_quote_a_url():
    hooks = Webhook.parse_list(
        "slack:https://hooks.slack.com/services/T/B/SECRETX, json:http://h/x ,http://h/y"
    )
    assert [(h.form, h.url.reveal()) for h in hooks] == [
        ("slack", "https://hooks.slack.com/services/T/B/SECRETX"),
        ("json", "http://h/x"),
        ("json", "http://h/y"),
    ]
    assert "SECRETX" not in str(hooks[0]) and "SECRETX" not in repr(hooks)
    with pytest.raises(ValueError) as refused:
        Webhook.parse_list("http://ok/x, ftp://SECRETY/z")
    assert "webhook 2" in str(refused.value) and "SECRETY" not in str(refused.value)
    assert Webhook.parse_list("") == ()


def test_each_form_reaches_a_real_receiver(receiver):
    notice = Notice("worker_crashes", "firing", "warning", "3 call workers crashed")
    channels = Webhook.parse_list(f"slack:{receiver.url('/slack')},json:{receiver.url('/json')}")
    outcomes = send_all(channels, [notice], "main")
    assert [o["delivered"] for o in outcomes] == [True, True]
    got = dict(receiver.got)
    assert got["/slack"] == {"text": ":rotating_light: callbridge main: 3 call workers crashed"}
    assert {k: got["/json"][k] for k in ("instance", "key", "kind", "severity", "text")} == {
        "instance": "main",
        "key": "worker_crashes",
        "kind": "firing",
        "severity": "warning",
        "text": "3 call workers crashed",
    }


def test_a_receiver_that_is_down_or_rude_is_an_outcome_not_an_exception(receiver):
    notice = Notice("started", "event", "info", "callbridge started")
    closed = free_port()  # nothing listens there
    receiver.status, receiver.body = 500, b"\x00garbage"
    channels = Webhook.parse_list(f"json:http://127.0.0.1:{closed}/x,slack:{receiver.url('/r')}")
    outcomes = send_all(channels, [notice], "main")
    assert [(o["delivered"], o["how"]) for o in outcomes] == [(False, "ConnectionError"), (False, "HTTP 500")]


# --- a real service


def _texts_with(receiver, fragment: str) -> list[str]:
    return [t for t in receiver.texts() if fragment in t]


def _kinds(receiver, key: str) -> list[str]:
    """The kinds of every notice the receiver got for `key`, in order."""
    return [body["kind"] for _, body in receiver.got if body.get("key") == key]


def _metric(port: int, name: str) -> float | None:
    """One sample of the service's /metrics page; None while it cannot be read."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def _alerting(service, receiver, **settings: str):
    svc = service(ALERT_WEBHOOKS=f"json:{receiver.url('/alerts')}", **settings)
    svc.wait(lambda: _kinds(receiver, "started") == ["event"])
    return svc


GOOD_CALL = [{"say": 600}, {"silence": 1200}, {"hangup": True}]


def test_a_service_announces_its_start_crashes_its_stop_and_an_unclean_restart(service, asterisk, receiver):
    svc = service(ALERT_WEBHOOKS=f"slack:{receiver.url('/hook')}", ALERT_CRASH_WINDOW_SECONDS="3")
    svc.wait(lambda: _texts_with(receiver, "started"))
    assert "unclean" not in _texts_with(receiver, "started")[0]
    call_ids = [asterisk.place_call([{"say": 800}, {"silence": 30000}]) for _ in range(CRASHES)]
    rows = svc.wait(
        lambda: len(r := svc.status()["calls"]) == CRASHES and all(x["phase"] == "active" for x in r) and r
    )
    for row in rows:
        os.kill(row["pid"], signal.SIGKILL)
    svc.wait(lambda: _texts_with(receiver, "call workers crashed"), timeout=10)
    svc.wait(lambda: all(asterisk.call(c, packets=False)["hangup"] for c in call_ids), timeout=10)
    svc.wait(
        lambda: _texts_with(receiver, "resolved: 3 call workers crashed"), timeout=10
    )  # its window passed
    receiver.delay = 1.0  # a receiver taking its time: the supervisor waits for the helper
    assert svc.stop() == 0
    exited = time.monotonic()
    assert _texts_with(receiver, "is stopping (SIGTERM)")
    assert receiver.done_at[-1] <= exited  # it was delivered before the supervisor exited
    receiver.delay = 0.0
    assert len(_texts_with(receiver, "call workers crashed")) == 2  # said once, resolved once

    again = service(ALERT_WEBHOOKS=f"slack:{receiver.url('/hook')}")
    again.wait(lambda: len(_texts_with(receiver, "started")) == 2)
    assert "unclean" not in _texts_with(receiver, "started")[1]  # the last run exited
    again.proc.kill()
    again.proc.wait()
    third = service(ALERT_WEBHOOKS=f"slack:{receiver.url('/hook')}")
    third.wait(lambda: _texts_with(receiver, "after an unclean stop"))
    assert "alert started event via webhook 1 (slack): HTTP 200" in third.log()
    assert receiver.url("/hook") not in third.log()


def test_every_alert_and_its_outcome_per_channel_is_stored_in_the_records_database(service, receiver):
    """Two channels, one of them down: the drainer stores each notice once per channel, with
    what became of it (the alert helper spools its outcomes; the database may be away)."""
    from sqlalchemy import select

    from callbridge.database_url import DatabaseUrl
    from records.schema import alerts
    from records.store import open_engine

    down = f"http://127.0.0.1:{free_port()}/nobody"
    svc = service(ALERT_WEBHOOKS=f"slack:{receiver.url('/hook')},json:{down}")
    svc.wait(lambda: _texts_with(receiver, "started"))
    engine = open_engine(DatabaseUrl.sqlite_file(Path(svc.env["STATE_DIR"]) / "callbridge.db"))

    def stored() -> list:
        try:
            with engine.connect() as conn:
                return list(conn.execute(select(alerts).order_by(alerts.c.seq)).mappings())
        except Exception:  # the drainer has not created the tables yet
            return []

    rows = svc.wait(lambda: len(r := stored()) == 2 and r, timeout=20)
    assert {row["alert_key"] for row in rows} == {"started"} and {row["kind"] for row in rows} == {"event"}
    by_channel = {row["delivered"]: row for row in rows}
    assert by_channel[True]["outcome"] == "HTTP 200" and "started" in by_channel[True]["text"]
    assert not by_channel[False]["delivered"] and by_channel[False]["outcome"]
    assert "nobody" not in " ".join(row["channel"] for row in rows)  # no URL (a webhook is a secret)
    engine.dispose()


def test_a_slow_receiver_changes_nothing_for_calls(service, asterisk, receiver):
    receiver.delay = 8.0  # each notice takes the helper 8 s
    svc = service(ALERT_WEBHOOKS=f"json:{receiver.url('/slow')}")
    started = time.monotonic()
    call_id = asterisk.place_call([{"say": 600}, {"silence": 1500}, {"hangup": True}])
    svc.wait(lambda: ended(asterisk, call_id), timeout=15)
    assert time.monotonic() - started < 8.0  # the call did not wait for the receiver
    svc.wait(lambda: receiver.got, timeout=20)
    assert receiver.got[0][1]["key"] == "started"


def test_ari_unreachable_fires_after_its_hold_time_and_resolves_when_asterisk_returns(
    realtime, receiver, tmp_path
):
    """Its own simulated Asterisk, stopped for longer than ALERT_ARI_DOWN_SECONDS, then
    started again on the same port: one "firing" notice, then one "resolved"."""
    from harness import AsteriskSim
    from service import Service
    from testenv import TEST_PREFIX

    hold = 3.0
    pbx = AsteriskSim()
    port = pbx.port
    svc = Service(
        pbx,
        realtime,
        tmp_path,
        TEST_PREFIX,
        ALERT_WEBHOOKS=f"json:{receiver.url('/hook')}",
        ALERT_ARI_DOWN_SECONDS=str(int(hold)),
    )
    try:
        svc.start()
        svc.wait(lambda: _kinds(receiver, "started"))
        pbx.stop()
        down_at = time.monotonic()
        svc.wait(lambda: _kinds(receiver, "ari_unreachable"), timeout=hold + 15)
        assert time.monotonic() - down_at >= hold - 1  # not before the hold time
        assert _kinds(receiver, "ari_unreachable") == ["firing"]
        pbx = AsteriskSim("--port", str(port))
        svc.wait(lambda: _kinds(receiver, "ari_unreachable") == ["firing", "resolved"], timeout=30)
    finally:
        svc.stop()
        pbx.stop()


# --- each condition fires and then resolves, through a real service
#
# Small thresholds and windows (the ALERT_* settings) keep each test to seconds. The
# receiver takes the generic JSON form, so each notice names its key and kind.


@pytest.mark.parametrize(
    ("fault", "key"),
    [("invalid_key", "realtime_invalid_api_key"), ("insufficient_quota", "realtime_insufficient_quota")],
)
def test_a_realtime_refusal_fires_and_resolves_when_a_later_call_opens_a_session(
    service, asterisk, realtime, receiver, fault, key
):
    """The simulator refuses one connection (the key; or the quota: session created, then
    the `insufficient_quota` error event); the next call's session opens fine: proof enough."""
    svc = _alerting(service, receiver)
    realtime.fault(fault)
    try:
        refused = asterisk.place_call([{"say": 600}, {"silence": 8000}])
        svc.wait(lambda: _kinds(receiver, key) == ["firing"], timeout=20)
        svc.wait(lambda: ended(asterisk, refused), timeout=15)
        svc.wait(lambda: "end=realtime_failed" in svc.log())
        fine = asterisk.place_call(GOOD_CALL)
        svc.wait(lambda: _kinds(receiver, key) == ["firing", "resolved"], timeout=20)
        assert ended(asterisk, fine)
    finally:
        realtime.reset()
    assert {body["key"] for _, body in receiver.got} == {"started", key}  # nothing else, nothing twice


def test_the_failed_call_ratio_fires_and_resolves_when_good_calls_bring_it_down(
    service, asterisk, realtime, receiver
):
    """Over half of at least 2 calls: 2 refused calls of 2 fire; 2 good ones make it 2 of 4."""
    svc = _alerting(service, receiver, ALERT_FAILED_MIN_CALLS="2", ALERT_FAILED_RATIO="0.5")
    realtime.fault("invalid_key", count=2)
    try:
        refused = [asterisk.place_call([{"say": 600}, {"silence": 8000}]) for _ in range(2)]
        svc.wait(lambda: _kinds(receiver, "failed_calls") == ["firing"], timeout=20)
        svc.wait(lambda: ended(asterisk, *refused), timeout=15)
        fine = [asterisk.place_call(GOOD_CALL) for _ in range(2)]
        svc.wait(lambda: _kinds(receiver, "failed_calls") == ["firing", "resolved"], timeout=20)
        assert ended(asterisk, *fine)
    finally:
        realtime.reset()
    assert _kinds(receiver, "realtime_invalid_api_key") == ["firing", "resolved"]


def test_callers_turned_away_fire_and_resolve_when_the_window_passes(service, asterisk, receiver):
    svc = _alerting(service, receiver, MAX_CONCURRENT_CALLS="1", ALERT_BUSY_WINDOW_SECONDS="2")
    kept = asterisk.place_call([{"silence": 6000}, {"hangup": True}])
    svc.wait(lambda: svc.status()["supervisor"]["calls_live"] == 1)
    extra = asterisk.place_call([{"silence": 5000}])
    svc.wait(lambda: _kinds(receiver, "callers_turned_away") == ["firing"], timeout=10)
    turned_away = time.monotonic()
    svc.wait(lambda: _kinds(receiver, "callers_turned_away") == ["firing", "resolved"], timeout=10)
    assert time.monotonic() - turned_away >= 1.0  # not before the window passed
    svc.wait(lambda: ended(asterisk, kept, extra), timeout=15)
    assert {body["key"] for _, body in receiver.got} == {"started", "callers_turned_away"}


def test_a_model_shutdown_fires_and_a_reload_resolves_it_without_touching_a_call(
    service, asterisk, realtime, receiver
):
    """The simulator announces a shutdown within ALERT_SHUTDOWN_DAYS; then it moves the date
    past them, and SIGHUP (systemctl reload) makes the service look again at once."""
    from datetime import date, timedelta

    model, key = "gpt-realtime-2.1", "model_shutdown_gpt-realtime-2.1"
    realtime.model_shutdown(model, (date.today() + timedelta(days=15)).isoformat())
    try:
        svc = _alerting(service, receiver, ALERT_SHUTDOWN_DAYS="20")
        svc.wait(lambda: _kinds(receiver, key) == ["firing"], timeout=15)
        call_id = asterisk.place_call([{"say": 600}, {"silence": 4000}, {"hangup": True}])
        svc.wait(lambda: (row := svc.call_row(call_id)) and row["phase"] == "active")
        realtime.model_shutdown(model, (date.today() + timedelta(days=25)).isoformat())
        svc.signal(signal.SIGHUP)
        svc.wait(lambda: _kinds(receiver, key) == ["firing", "resolved"], timeout=15)
        assert svc.call_row(call_id)["phase"] == "active"  # the reload left the call alone
        svc.wait(lambda: "end=caller_hangup" in svc.log(), timeout=15)  # as its caller chose
        assert ended(asterisk, call_id)
        assert svc.log().count("reload (SIGHUP)") == 1
    finally:
        realtime.model_shutdown(model, "")
    assert {body["key"] for _, body in receiver.got} == {"started", key}


def test_a_record_that_cannot_be_spooled_is_counted_lost_and_alerted(service, asterisk, receiver, tmp_path):
    """Issue 22, item 12: with the spool unwritable the call goes on and the log said "may be
    lost", but no metric moved and no alert fired."""

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the spool directory should be")
    port = free_port()
    svc = _alerting(service, receiver, RECORDS_SPOOL_DIR=str(blocked), METRICS_LISTEN=f"127.0.0.1:{port}")
    call_id = asterisk.place_call(GOOD_CALL)
    svc.wait(lambda: ended(asterisk, call_id), timeout=20)
    svc.wait(lambda: _kinds(receiver, "records_lost") == ["firing"], timeout=20)
    assert "could not be written to the spool" in _texts_with(receiver, "records")[0]

    svc.wait(lambda: _metric(port, "callbridge_records_lost_total") == 1, timeout=15)
    assert "the call's record could not be written to the spool" in svc.log()


def test_a_recording_stopped_by_a_full_disk_is_counted_and_alerted_and_the_call_goes_on(
    service, asterisk, receiver, tmp_path
):
    """Issue 29: RECORDINGS_DIR on a real 64 KiB tmpfs fills up two seconds into a call:
    the call goes on to its end, its recording stops (its record says so), and the metric
    and the alert say it."""
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], check=True)
    try:
        port = free_port()
        svc = _alerting(
            service,
            receiver,
            RECORD_CALLS="true",
            RECORDINGS_DIR=str(small),
            CALL_RECORDS_DIR=str(tmp_path / "records"),
            METRICS_LISTEN=f"127.0.0.1:{port}",
        )
        call_id = asterisk.place_call([{"say": 600}, {"silence": 4500}, {"hangup": True}])
        svc.wait(lambda: ended(asterisk, call_id), timeout=20)
        assert asterisk.call(call_id, packets=False)["hangup_by"] == "caller"  # the call went on
        svc.wait(lambda: _kinds(receiver, "recordings_failed") == ["firing"], timeout=20)
        assert "the calls went on unrecorded" in _texts_with(receiver, "recordings stopped")[0]

        svc.wait(lambda: _metric(port, "callbridge_recordings_failed_total") == 1, timeout=15)
        [record] = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
        assert record["end_reason"] == "caller_hangup"
        assert record["recording"]["state"] == "stopped" and 1.0 < record["recording"]["seconds"] < 2.1
        assert "the call's recording stopped or could not start" in svc.log()
    finally:
        svc.stop()
        subprocess.run(["umount", str(small)], check=True)


def test_a_record_the_drainer_sets_aside_is_alerted(service, receiver, tmp_path):
    """Issue 22, item 11: a record the database can never take is moved to bad/, counted and
    alerted on, and the records after it are stored."""
    svc = _alerting(service, receiver)
    spool_dir = tmp_path / "state" / "spool" / "openai-app"
    spool_dir.mkdir(parents=True, exist_ok=True)
    (spool_dir / "0000000000001_poison.json").write_text('{"instance": "x", "call_id": "y", "turns": [1]}')
    svc.wait(lambda: (spool_dir / "bad" / "0000000000001_poison.json").exists(), timeout=15)
    svc.wait(lambda: _kinds(receiver, "records_set_aside") == ["firing"], timeout=30)
    assert "kept in the spool's bad/" in _texts_with(receiver, "could not be stored")[0]


# --- a receiver that trickles (issue 22, item 20)


class Trickler:
    """A TCP server that reads the request, then answers one byte a second, forever: per-read
    timeouts never fire. `banner`: speak first (an SMTP server's greeting), trickled too."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", speaks_first=False):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.answer, self.speaks_first = answer, speaks_first
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn) -> None:
        with conn:
            try:
                if not self.speaks_first:
                    conn.recv(65536)
                for byte in self.answer * 100:
                    if self.stop.wait(1.0):
                        return
                    conn.send(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def test_a_trickling_receiver_costs_one_deadline_and_the_others_still_get_every_notice(receiver, monkeypatch):
    import alerts.send

    monkeypatch.setattr(alerts.send, "DELIVERY_DEADLINE", 2.0)
    trickler = Trickler()
    try:
        channels = Webhook.parse_list(f"json:http://127.0.0.1:{trickler.port}/x,json:{receiver.url('/ok')}")
        notices = [Notice(f"k{n}", "firing", "warning", f"notice {n}") for n in range(3)]
        start = time.monotonic()
        outcomes = send_all(channels, notices, "main")
        took = time.monotonic() - start
    finally:
        trickler.close()
    assert took < 6, took  # it used to wait for the trickle to end: 100 s and more per notice
    slow = [o["how"] for o in outcomes if o["channel"].startswith("webhook 1")]
    assert slow[0].startswith("timed out") and all("not tried" in h for h in slow[1:])
    assert [o["delivered"] for o in outcomes if o["channel"].startswith("webhook 2")] == [True] * 3
    assert len(receiver.got) == 3


def test_a_mail_server_that_trickles_its_greeting_is_a_timeout(monkeypatch):
    import alerts.send
    from callbridge.alert_settings import Email

    monkeypatch.setattr(Email, "DEADLINE", 2.0)
    trickler = Trickler(b"220 mail.example ESMTP\r\n", speaks_first=True)
    try:
        from callbridge.secret import Secret

        channel = Email(
            Secret(f"smtp+insecure://127.0.0.1:{trickler.port}"), "cb@example.com", ("ops@example.com",)
        )
        start = time.monotonic()
        outcomes = alerts.send.send_all([channel], [Notice("k", "firing", "warning", "x")], "main")
        took = time.monotonic() - start
    finally:
        trickler.close()
    assert took < 5 and outcomes[0]["delivered"] is False and outcomes[0]["how"].startswith("timed out")


def test_a_marker_planted_as_a_link_is_never_written_through(tmp_path):
    """Issue 22, item 6: the run marker followed a link: one planted as STATE_DIR/run/X.running
    pointing at the call history made the service overwrite it with its pid."""
    from types import SimpleNamespace

    from records.drain_figures import DrainFigures, figures_path
    from supervisor.alerting import Alerting

    victim = tmp_path / "callbridge.db"
    victim.write_text("the call history")
    run = tmp_path / "run"
    run.mkdir()
    (run / "clinic.running").symlink_to(victim)
    (run / "clinic.drainer.json.tmp").symlink_to(victim)
    settings = SimpleNamespace(
        alert_channels=(object(),),
        alert_thresholds=Thresholds(),
        state_dir=str(tmp_path),
        instance="clinic",
        spool_dir=tmp_path / "spool",
    )
    alerting = Alerting(settings, lambda *args, **kwargs: None)
    alerting.started("0")
    assert "after an unclean stop" in alerting.queue[0].text  # the link counted as a marker left
    DrainFigures(service=1.0).save(figures_path(tmp_path, "clinic"))
    assert victim.read_text() == "the call history"
    assert (
        not (run / "clinic.running").is_symlink() and (run / "clinic.running").read_text().strip().isdigit()
    )
