"""Model shutdown dates (callbridge/model_lifecycle.py): the date rules at their boundaries,
the lookup against the simulated Realtime server's /v1/models, and the function the
service runs in a helper process, whose log lines are what an operator sees."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from harness import API_KEY, ARI_PASSWORD, ARI_USER, RealtimeSim, started
from testenv import days_to

from callbridge import config as cfg
from callbridge import model_lifecycle as ml

TODAY = datetime.now(UTC).date()
PAST, SOON, LATER = (TODAY + timedelta(days=n) for n in (-3, 10, 200))


D = date(2027, 1, 20)


# --- the date rules


@pytest.mark.parametrize(
    ("shutdown", "level"),
    [
        (None, ml.OK),
        (D + timedelta(days=61), ml.OK),
        (D + timedelta(days=60), ml.WARNING),
        (D + timedelta(days=1), ml.WARNING),
        (D, ml.FAILURE),  # the day itself: the model may stop at any hour
        (D - timedelta(days=1), ml.FAILURE),
        (D - timedelta(days=400), ml.FAILURE),
    ],
    ids=["none", "61-days", "60-days", "tomorrow", "today", "yesterday", "long-ago"],
)
def test_classify_at_the_boundaries(shutdown, level):
    assert ml.classify(shutdown, D) == level


def test_classify_warning_window_is_a_parameter():
    assert ml.classify(D + timedelta(days=8), D, warn_days=7) == ml.OK
    assert ml.classify(D + timedelta(days=7), D, warn_days=7) == ml.WARNING


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("2027-01-20", D),
        ("2027-01-20T00:00:00Z", D),
        ("2027-01-20T23:30:00-02:00", date(2027, 1, 21)),  # read in UTC
        (1_800_403_200, date(2027, 1, 20)),  # 2027-01-20T00:00:00Z
        (1_800_489_599, date(2027, 1, 20)),  # its last second
        ("1800403200", date(2027, 1, 20)),
        (1_800_403_200.5, date(2027, 1, 20)),
    ],
)
def test_parse_shutdown_accepts_iso_dates_and_unix_timestamps(raw, expected):
    assert ml.parse_shutdown(raw) == expected


@pytest.mark.parametrize("raw", ["soon", "2027-13-01", "20/01/2027", True, [], {"date": "2027-01-20"}])
def test_parse_shutdown_rejects_anything_else(raw):
    with pytest.raises((ValueError, TypeError)):
        ml.parse_shutdown(raw)


@pytest.mark.parametrize(
    ("realtime_url", "expected"),
    [
        ("wss://api.openai.com/v1/realtime", "https://api.openai.com/v1/models/gpt-realtime-2.1"),
        ("wss://api.openai.com/v1/realtime/", "https://api.openai.com/v1/models/gpt-realtime-2.1"),
        ("ws://127.0.0.1:8765/v1/realtime", "http://127.0.0.1:8765/v1/models/gpt-realtime-2.1"),
        (
            "wss://proxy.example/openai/v1/realtime?x=1",
            "https://proxy.example/openai/v1/models/gpt-realtime-2.1",
        ),
    ],
)
def test_models_url_sits_next_to_the_realtime_endpoint(realtime_url, expected):
    assert ml.models_url(realtime_url, "gpt-realtime-2.1") == expected


def test_models_url_quotes_the_model_name():
    assert ml.models_url("wss://h/v1/realtime", "a/b c").endswith("/v1/models/a%2Fb%20c")


def test_model_watch_is_due_at_start_then_once_a_day():
    watch = ml.ModelWatch()
    assert watch.due(1000.0) and watch.seconds_until_due(1000.0) == 0.0
    watch.started(1000.0)
    assert not watch.due(1000.0 + ml.DAY - 1)
    assert watch.seconds_until_due(1000.0 + ml.DAY - 1) == pytest.approx(1.0)
    assert watch.due(1000.0 + ml.DAY)
    watch.started(1000.0 + ml.DAY + 5)
    assert not watch.due(1000.0 + 2 * ml.DAY)


# --- the lookup against the simulator


@pytest.fixture(scope="module")
def realtime():
    yield from started(
        RealtimeSim(
            "--model-shutdown",
            f"gpt-realtime={PAST}",
            "--model-shutdown",
            f"gpt-4o-mini-transcribe={SOON}",
            "--model-shutdown",
            f"gpt-realtime-2.1-mini={LATER}",
            "--model-shutdown",
            # a unix timestamp, as some answers carry: midday UTC, SOON
            f"gpt-realtime-mini={int(datetime(SOON.year, SOON.month, SOON.day, 12, tzinfo=UTC).timestamp())}",
        )
    )


def settings_at(url: str, **overrides: str) -> cfg.Settings:
    env = {
        "ASTERISK_USERNAME": ARI_USER,
        "ASTERISK_PASSWORD": ARI_PASSWORD,
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_REALTIME_URL": url,
        **overrides,
    }
    return cfg.load(env_file=None, environ=env).settings


def settings_for(realtime, **overrides: str) -> cfg.Settings:
    return settings_at(f"ws://127.0.0.1:{realtime.port}/v1/realtime", **overrides)


def test_no_date_announced_is_ok(realtime):
    found = ml.lookup(settings_for(realtime), "OPENAI_REALTIME_MODEL", "gpt-realtime-2.1")
    assert found.level == ml.OK and found.shutdown is None
    assert found.detail == "gpt-realtime-2.1: no shutdown date announced"


def test_past_date_is_a_failure_naming_model_and_date(realtime):
    found = ml.lookup(settings_for(realtime), "OPENAI_REALTIME_MODEL", "gpt-realtime")
    assert (found.level, found.shutdown) == (ml.FAILURE, PAST)
    assert found.detail.startswith(f"gpt-realtime was shut down on {PAST}: set OPENAI_REALTIME_MODEL")


def test_date_within_60_days_is_a_warning(realtime):
    found = ml.lookup(settings_for(realtime), "OPENAI_TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")
    assert (found.level, found.shutdown) == (ml.WARNING, SOON)
    assert f"shuts down on {SOON}, in {days_to(SOON)} days: move OPENAI_TRANSCRIPTION_MODEL" in found.detail


def test_unix_timestamp_from_the_server_is_read_as_a_utc_date(realtime):
    found = ml.lookup(settings_for(realtime), "OPENAI_REALTIME_MODEL", "gpt-realtime-mini")
    assert (found.level, found.shutdown) == (ml.WARNING, SOON)


def test_date_far_away_is_ok_and_shown(realtime):
    found = ml.lookup(settings_for(realtime), "OPENAI_REALTIME_MODEL", "gpt-realtime-2.1-mini")
    assert (found.level, found.shutdown) == (ml.OK, LATER)
    assert f"shuts down on {LATER} ({days_to(LATER)} days from now)" in found.detail


def test_unknown_model_is_a_failure(realtime):
    found = ml.lookup(settings_for(realtime), "OPENAI_REALTIME_MODEL", "gpt-nope")
    assert found.level == ml.FAILURE and "gpt-nope is not a model OpenAI knows" in found.detail


def test_refused_key_is_a_failure_without_the_key(realtime):
    settings = settings_for(realtime, OPENAI_API_KEY="sk-wrong-key-9876")
    found = ml.lookup(settings, "OPENAI_REALTIME_MODEL", "gpt-realtime-2.1")
    assert found.level == ml.FAILURE and "API key was refused" in found.detail
    assert "sk-wrong-key-9876" not in found.detail


def test_restricted_key_403_is_a_warning():
    sim = RealtimeSim("--models-status", "403")
    try:
        found = ml.lookup(settings_for(sim), "OPENAI_REALTIME_MODEL", "gpt-realtime-2.1")
    finally:
        sim.stop()
    assert found.level == ml.WARNING and "this key may not read models" in found.detail


def test_unreachable_is_a_warning():
    found = ml.lookup(
        settings_at("ws://127.0.0.1:9/v1/realtime"), "OPENAI_REALTIME_MODEL", "gpt-realtime-2.1"
    )
    assert found.level == ml.WARNING
    assert found.detail.startswith("cannot ask http://127.0.0.1:9/v1/models/gpt-realtime-2.1 about")


class OneShotServer:
    """Answers one HTTP request with `head` then `body`; with `trickle`, sends the body one
    byte every `trickle` seconds, as a stalled proxy would, until closed."""

    def __init__(self, head: bytes, body: bytes, trickle: float | None = None) -> None:
        self.head, self.body, self.trickle = head, body, trickle
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(self.head)
            if self.trickle is None:
                conn.sendall(self.body)
                if not self.head:  # silent: hold the connection open until closed
                    self.stop.wait(30)
                return
            for byte in self.body:
                if self.stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                self.stop.wait(self.trickle)

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(5)


def test_a_trickling_answer_is_cut_at_the_total_timeout(monkeypatch):
    monkeypatch.setattr(ml, "TOTAL_TIMEOUT", 1.0)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    server = OneShotServer(head, b" " * 1000, trickle=0.2)
    try:
        begun = time.monotonic()
        found = ml.lookup(settings_at(server.url()), "OPENAI_REALTIME_MODEL", "gpt-realtime-2.1")
        took = time.monotonic() - begun
    finally:
        server.close()
    assert found.level == ml.WARNING and "shutdown date unknown" in found.detail
    assert 0.9 <= took < 3.0  # each byte came within the read timeout: only the total bound ends it


def test_a_silent_server_is_left_at_the_read_timeout(monkeypatch):
    monkeypatch.setattr(ml, "READ_TIMEOUT", 0.5)
    server = OneShotServer(b"", b"")  # accepts, reads the request, never answers
    try:
        begun = time.monotonic()
        found = ml.lookup(settings_at(server.url()), "OPENAI_REALTIME_MODEL", "gpt-realtime-2.1")
        took = time.monotonic() - begun
    finally:
        server.close()
    assert found.level == ml.WARNING and "(ReadTimeout): shutdown date unknown" in found.detail
    assert took < 3.0


def test_a_gzip_answer_is_decoded():
    body = gzip.compress(json.dumps({"id": "gpt-realtime", "shutdown_date": str(SOON)}).encode())
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    )
    server = OneShotServer(head, body)
    try:
        found = ml.lookup(settings_at(server.url()), "OPENAI_REALTIME_MODEL", "gpt-realtime")
    finally:
        server.close()
    assert (found.level, found.shutdown) == (ml.WARNING, SOON)


# --- what the service's helper process logs


def test_log_model_lifecycle_logs_each_model_at_its_level(realtime, caplog):
    settings = settings_for(
        realtime, OPENAI_REALTIME_MODEL="gpt-realtime", OPENAI_TRANSCRIPTION_MODEL="gpt-4o-mini-transcribe"
    )
    with caplog.at_level(logging.INFO, logger="callbridge.model_lifecycle"):
        worst = ml.log_model_lifecycle(settings)
    assert worst == 2
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "callbridge.model_lifecycle"]
    assert len(lines) == 2
    assert lines[0][0] == "ERROR"
    assert lines[0][1].startswith(f"model check OPENAI_REALTIME_MODEL: gpt-realtime was shut down on {PAST}")
    assert lines[1][0] == "WARNING"
    assert f"OPENAI_TRANSCRIPTION_MODEL: gpt-4o-mini-transcribe shuts down on {SOON}" in lines[1][1]
    assert API_KEY not in caplog.text


def test_log_model_lifecycle_all_current_logs_info_and_returns_0(realtime, caplog):
    with caplog.at_level(logging.INFO, logger="callbridge.model_lifecycle"):
        worst = ml.log_model_lifecycle(settings_for(realtime))
    assert worst == 0
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "model check OPENAI_REALTIME_MODEL: gpt-realtime-2.1: no shutdown date announced"),
        ("INFO", "model check OPENAI_TRANSCRIPTION_MODEL: gpt-transcribe: no shutdown date announced"),
    ]


def test_log_model_lifecycle_skips_transcription_when_off(realtime, caplog):
    with caplog.at_level(logging.INFO, logger="callbridge.model_lifecycle"):
        ml.log_model_lifecycle(settings_for(realtime, OPENAI_TRANSCRIPTION_MODEL=""))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["model check OPENAI_REALTIME_MODEL"]


def test_log_model_lifecycle_writes_the_log_file(realtime, tmp_path):
    """The way the service's helper would run it: logging set up by callbridge.logs."""
    from callbridge import logs

    log_file = tmp_path / "callbridge.log"
    settings = settings_for(realtime, OPENAI_REALTIME_MODEL="gpt-realtime", OPENAI_TRANSCRIPTION_MODEL="")
    logs.setup("info", "text", str(log_file))
    try:
        assert ml.log_model_lifecycle(settings) == 2
    finally:
        logs.setup("info", "text", "")
    text = log_file.read_text(encoding="utf-8")
    assert (
        f"ERROR   [-] callbridge.model_lifecycle: model check OPENAI_REALTIME_MODEL: gpt-realtime was shut down on {PAST}"
        in text
    )
    assert API_KEY not in text


# --- the service looks at start-up, from a helper process


def test_the_service_logs_a_near_shutdown_at_start(realtime, tmp_path):
    from harness import AsteriskSim
    from service import Service
    from testenv import TEST_PREFIX

    asterisk = AsteriskSim()
    svc = Service(asterisk, realtime, tmp_path, TEST_PREFIX, OPENAI_REALTIME_MODEL="gpt-realtime-mini")
    try:
        svc.start()
        svc.wait(lambda: svc.status()["supervisor"]["models"] == "warning")
        line = next(x for x in svc.log().splitlines() if "model check OPENAI_REALTIME_MODEL" in x)
        assert "WARNING" in line and "gpt-realtime-mini" in line and str(SOON) in line
        assert API_KEY not in svc.log()
        began = time.monotonic()
        svc.status()
        assert time.monotonic() - began < 0.5  # the loop did not wait for the lookup
    finally:
        svc.stop()
        asterisk.stop()
