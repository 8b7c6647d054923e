"""Call webhooks (callbridge/call_webhooks.py, records/outbox.py, webhooks/sender.py): the
settings and their checks, the signature a receiver verifies, and the sender, a real process
posting to a real HTTP server on loopback (tests/http_services.py) that takes, refuses,
hangs, redirects or answers 10 MB; then a whole service whose calls reach a receiver."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
from http_services import Services
from typer.testing import CliRunner

from alerts.watch import Recent, holding
from callbridge import agents
from callbridge import call_webhooks as hooks
from callbridge import config as cfg
from callbridge.agent_file import AgentFileError
from callbridge.cli import app
from callbridge.secret import Secret
from metrics.collector import webhook_families
from records import outbox, spool
from webhooks import sender

SECRET = "whsec-7d1f0b9e2c4a"
TOKEN = "hook-token-5b8e1f"
BASE = {
    "ASTERISK_HOST": "127.0.0.1",
    "ASTERISK_USERNAME": "u",
    "ASTERISK_PASSWORD": "p",
    "OPENAI_API_KEY": "sk-unit",
}


@pytest.fixture(scope="module")
def receiver():
    running = Services()
    yield running
    running.stop()


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


# --- the signature and the settings


def test_the_signature_is_an_hmac_of_t_dot_body_that_a_receiver_checks():
    body = b'{"id":"e1","type":"call.ended"}'
    header = hooks.signature(SECRET.encode(), 1_765_000_000, body)
    t, _, v1 = header.partition(",")
    assert t == "t=1765000000" and v1.startswith("v1=") and len(v1) == 3 + 64
    assert hooks.verify(SECRET.encode(), header, body, now=1_765_000_010)
    assert not hooks.verify(SECRET.encode(), header, body + b" ", now=1_765_000_010)  # tampered
    assert not hooks.verify(b"another-secret", header, body, now=1_765_000_010)
    assert not hooks.verify(SECRET.encode(), header, body, now=1_765_000_000 + 301)  # replayed later
    assert not hooks.verify(SECRET.encode(), "t=x,v1=00", body)
    # The docs' verifier (docs/operations.md) is the same computation.
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1765000000." + body, hashlib.sha256).hexdigest()
    assert v1 == f"v1={expected}"


def test_the_verifier_docs_operations_md_shows_accepts_ours_and_refuses_the_rest():
    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    section = text[text.index("## Call webhooks") :]
    code = section[
        section.index("```python") + len("```python") : section.index("```", section.index("```python") + 9)
    ]
    scope: dict = {}
    exec(code, scope)  # the reader's own copy, as they would paste it
    is_callbridge = scope["is_callbridge"]
    body = b'{"id":"e2","type":"call.started","data":{}}'
    header = hooks.signature(SECRET.encode(), int(time.time()), body)
    assert is_callbridge(SECRET.encode(), header, body)
    assert not is_callbridge(SECRET.encode(), header, body.replace(b"e2", b"e3"))
    assert not is_callbridge(
        SECRET.encode(), hooks.signature(SECRET.encode(), int(time.time()) - 900, body), body
    )


def test_call_webhooks_are_checked_without_quoting_a_url():
    ok = cfg.load(
        environ={
            **BASE,
            "CALL_WEBHOOKS": f"https://crm.example/hooks?token={TOKEN}, http://127.0.0.1:9/h",
            "CALL_WEBHOOK_SECRET": SECRET,
        }
    ).settings
    assert [t.url.reveal() for t in ok.call_webhooks][0].endswith(TOKEN)
    assert TOKEN not in repr(ok) and SECRET not in repr(ok)
    unsigned = cfg.check(environ={**BASE, "CALL_WEBHOOKS": "https://crm.example/h"})
    assert {e.variable: e.problem for e in unsigned.errors()} == {
        "CALL_WEBHOOK_SECRET": "is empty, but CALL_WEBHOOKS is set: every delivery is signed (X-Callbridge-Signature)"
    }
    bad = cfg.check(environ={**BASE, "CALL_WEBHOOKS": f"ftp://x/{TOKEN}", "CALL_WEBHOOK_SECRET": SECRET})
    problems = {e.variable: e.problem for e in bad.errors()}
    assert "webhook 1 must be an http:// or https:// URL" in problems["CALL_WEBHOOKS"]
    assert TOKEN not in str(problems)
    clear = cfg.check(
        environ={**BASE, "CALL_WEBHOOKS": f"http://crm.example/{TOKEN}", "CALL_WEBHOOK_SECRET": SECRET}
    )
    problems = {e.variable: e.problem for e in clear.errors()}
    assert "in the clear" in problems["CALL_WEBHOOKS"] and TOKEN not in str(problems)


def test_an_agents_webhooks_take_secrets_from_the_environment_and_need_the_signing_secret(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    path = tmp_path / "agents.toml"
    path.write_text(
        '[agents.isp]\nnumbers = ["*"]\nwebhooks = ["https://crm.example/calls?token=${HOOK_TOKEN}"]\n'
    )
    settings = cfg.load(environ=BASE | {"AGENTS_FILE": str(path), "CALL_WEBHOOK_SECRET": SECRET}).settings
    [target] = agents.load_book(settings).agents["isp"].webhooks
    assert target.url.reveal() == f"https://crm.example/calls?token={TOKEN}" and TOKEN not in str(target)
    unsigned = cfg.load(environ=BASE | {"AGENTS_FILE": str(path)}).settings
    with pytest.raises(AgentFileError, match=r"agents\.isp\.webhooks: needs CALL_WEBHOOK_SECRET"):
        agents.load_book(unsigned)
    path.write_text('[agents.isp]\nnumbers = ["*"]\nwebhooks = ["https://x.example/${NOT_SET_HERE}", 5]\n')
    with pytest.raises(AgentFileError, match="must be a list of URLs"):
        agents.load_book(settings)
    path.write_text('[agents.isp]\nnumbers = ["*"]\nwebhooks = ["https://x.example/${NOT_SET_HERE}"]\n')
    with pytest.raises(AgentFileError, match="names NOT_SET_HERE, which is not set"):
        agents.load_book(settings)


# --- the sender, a real process, against a real receiver


class Sender:
    """webhooks/sender.py::run in a forked process, as the supervisor's keeper starts it."""

    def __init__(self, tmp_path: Path, urls: list[str], give_up_after: float = 3600.0) -> None:
        self.spool = tmp_path / "spool"
        self.figures_file = tmp_path / "run" / "test.webhooks.json"
        self.targets = tuple(hooks.Target(Secret(url)) for url in urls)
        args = (
            "test",
            self.spool,
            self.targets,
            SECRET.encode(),
            os.getpid(),
            give_up_after,
            self.figures_file,
            1.0,
            0.3,  # back-off at most 0.3 s: retries the test can wait for
        )
        self.process = multiprocessing.get_context("fork").Process(target=sender.run, args=args, daemon=True)

    def __enter__(self) -> Sender:
        self.process.start()
        return self

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.join(5)

    def post(self, kind: str, call_id: str, data: dict, urls: list[str] | None = None) -> None:
        keys = [hooks.target_key(u) for u in urls] if urls else [t.key for t in self.targets]
        assert outbox.post(self.spool, kind, "test", call_id, data, keys) == len(keys)

    def figures(self) -> dict:
        return outbox.WebhookFigures.run_counters(self.figures_file, 1.0)

    def outcomes(self) -> list[dict]:
        found = [json.loads(p.read_text()) for p in spool.pending_records(self.spool)]
        return [f for f in found if f.get("kind") == spool.DELIVERY]


def got(receiver: Services, path: str) -> list[dict]:
    return [r for r in receiver.got if r["path"] == path]


def test_events_reach_the_receiver_signed_in_order_and_leave_the_outbox(tmp_path, receiver):
    url = f"{receiver.base}/hooks/ok?case=order"
    with Sender(tmp_path, [url]) as s:
        for n in range(5):
            s.post(
                "call.started" if n % 2 == 0 else "call.ended", f"c{n}", {"n": n, "caller": "+********222"}
            )
        wait_for(lambda: s.figures()["delivered"] == 5, what="five deliveries")
        mine = [r for r in got(receiver, "/hooks/ok") if r["query"] == "case=order"]
        bodies = [json.loads(r["body"]) for r in mine]
        assert [b["data"]["n"] for b in bodies] == [0, 1, 2, 3, 4]  # in the order they happened
        for request, body in zip(mine, bodies, strict=True):
            headers = {k.lower(): v for k, v in request["headers"].items()}
            assert hooks.verify(SECRET.encode(), headers["x-callbridge-signature"], request["body"])
            assert (
                headers["x-callbridge-event-id"] == body["id"]
                and headers["x-callbridge-event"] == body["type"]
            )
            assert (
                set(body) == {"id", "type", "created_at", "instance", "data"} and body["instance"] == "test"
            )
        assert outbox.backlog(s.spool, "test") == (0, None)
        # Each outcome waits in the spool for the drainer: the call's record shows it.
        outcomes = wait_for(lambda: len(s.outcomes()) == 5 and s.outcomes())
        assert {o["call_id"] for o in outcomes} == {f"c{n}" for n in range(5)}
        assert all(o["delivered"] and o["attempts"] == 1 and o["outcome"] == "HTTP 204" for o in outcomes)


def test_a_refusing_receiver_is_retried_with_back_off_and_keeps_its_order(tmp_path, receiver):
    receiver.flaky_left = 3
    url = f"{receiver.base}/hooks/flaky"
    with Sender(tmp_path, [url]) as s:
        s.post("call.started", "f1", {"n": 1})
        s.post("call.ended", "f1", {"n": 2})
        wait_for(lambda: s.figures()["delivered"] == 2, what="delivered after the refusals")
        assert s.figures()["failures"] == 3
        taken = [json.loads(r["body"]) for r in got(receiver, "/hooks/flaky")]
        assert [b["data"]["n"] for b in taken] == [1, 1, 1, 1, 2]  # the first, again, until taken
        assert len({b["id"] for b in taken[:4]}) == 1  # one event id across its retries
        started = next(
            o
            for o in wait_for(lambda: len(s.outcomes()) == 2 and s.outcomes())
            if o["type"] == "call.started"
        )
        assert started["attempts"] == 4 and started["delivered"]


def test_a_hanging_receiver_holds_its_own_queue_only(tmp_path, receiver):
    hang, ok = f"{receiver.base}/hang?case=lanes", f"{receiver.base}/hooks/ok?case=lanes"
    with Sender(tmp_path, [hang, ok]) as s:
        s.post("call.started", "h1", {"n": 1})  # to both
        began = time.monotonic()
        wait_for(lambda: any(r["query"] == "case=lanes" for r in got(receiver, "/hooks/ok")), timeout=5)
        assert time.monotonic() - began < 3.0  # not behind the hanging one's 10 s read timeout
        # the other's copy leaves once its answer is read; the hanging receiver's still waits
        wait_for(lambda: outbox.backlog(s.spool, "test")[0] == 1, timeout=3)
        assert len(outbox.waiting(outbox.outbox_dir(s.spool, "test") / hooks.target_key(hang))) == 1


def test_hostile_answers_cost_a_delivery_nothing_and_a_redirect_is_not_followed(tmp_path, receiver):
    big, redirect = f"{receiver.base}/big", f"{receiver.base}/redirect"
    with Sender(tmp_path, [big, redirect]) as s:
        before = len(receiver.got)
        began = time.monotonic()
        s.post("call.ended", "b1", {"n": 1})
        wait_for(lambda: s.figures()["delivered"] == 1, what="the 10 MB answer's delivery")
        assert time.monotonic() - began < 3.0  # its body is never read
        wait_for(lambda: s.figures()["failures"] >= 2, what="the redirect retried")
        assert not any(r["path"] == "/api/lines/stolen" for r in receiver.got[before:])
        assert outbox.backlog(s.spool, "test")[0] == 1  # the redirect's copy waits for a real answer


def test_an_event_retried_too_long_is_given_up_into_bad_and_alerted(tmp_path, receiver):
    with Sender(tmp_path, [f"{receiver.base}/error"], give_up_after=1.5) as s:
        s.post("call.ended", "g1", {"n": 1})
        wait_for(lambda: s.figures()["given_up"] == 1, timeout=10, what="given up")
        assert s.figures()["failures"] >= 2
        [kept] = list((outbox.outbox_dir(s.spool, "test") / outbox.BAD).iterdir())
        assert json.loads(kept.read_text())["call_id"] == "g1"
        [outcome] = wait_for(lambda: s.outcomes())
        assert outcome["delivered"] is False and outcome["outcome"] == "retried for too long"
        assert outcome["attempts"] >= 2
    recent = Recent()
    recent.webhooks_given_up(100.0, 1)
    found = holding(100.0, True, recent, {})
    assert "CALL_WEBHOOK_RETRY_HOURS" in found["webhooks_given_up"].text


def test_a_queue_without_a_configured_url_and_broken_event_files_do_not_stop_the_sender(tmp_path, receiver):
    ok = f"{receiver.base}/hooks/ok?case=broken"
    with Sender(tmp_path, [ok], give_up_after=2.0) as s:
        s.post("call.ended", "u1", {"n": 1}, urls=["https://removed.example/h"])  # no URL for its key
        queue = outbox.outbox_dir(s.spool, "test") / hooks.target_key(ok)
        queue.mkdir(parents=True)
        (queue / "0000000000001_broken.json").write_bytes(b"\xff{not json")
        s.post("call.ended", "u2", {"n": 2})
        wait_for(lambda: s.figures()["delivered"] == 1, what="the good event after the broken one")
        wait_for(lambda: s.figures()["given_up"] == 2, what="the broken file and the orphan set aside")
        assert outbox.backlog(s.spool, "test") == (0, None)


def test_an_event_the_receiver_refuses_for_good_is_set_aside_and_another_instances_are_left(
    tmp_path, receiver
):
    gone = f"{receiver.base}/hooks/gone"  # 404: not this event, not ever
    with Sender(tmp_path, [gone]) as s:
        outbox.post(s.spool, "call.ended", "other", "o1", {"n": 0}, [hooks.target_key(gone)])  # not ours
        s.post("call.ended", "r1", {"n": 1})
        wait_for(lambda: s.figures()["given_up"] == 1, what="set aside after three refusals")
        assert s.figures()["failures"] == 3
        [outcome] = wait_for(lambda: s.outcomes())
        assert outcome["outcome"] == "refused by the receiver (HTTP 404)" and outcome["attempts"] == 3
        assert outbox.backlog(s.spool, "other")[0] == 1  # the other instance's sender will send it
    # The same call's event queued twice (a record rebuilt after a crash) has one id.
    assert outbox.event_id("a", "c1", "call.ended") == outbox.event_id("a", "c1", "call.ended")
    assert outbox.event_id("a", "c1", "call.ended") != outbox.event_id("b", "c1", "call.ended")


def test_the_metrics_show_deliveries_by_outcome_and_the_backlog():
    families = {
        f.name: f
        for f in webhook_families(
            {"instance": "a"},
            {"delivered": 7, "failures": 3, "given_up": 1, "waiting": 2, "oldest_at": 90.0},
            now=100.0,
        )
    }
    deliveries = {s.labels["outcome"]: s.value for s in families["callbridge_webhook_deliveries"].samples}
    assert deliveries == {"delivered": 7, "failed": 3, "given_up": 1}
    assert families["callbridge_webhooks_waiting"].samples[0].value == 2
    assert families["callbridge_webhooks_oldest_waiting_seconds"].samples[0].value == 10.0


# --- through the service


@pytest.mark.slow
def test_a_services_calls_reach_the_receiver_masked_and_the_record_shows_the_deliveries(
    service, asterisk, receiver, tmp_path
):
    url = f"{receiver.base}/hooks/ok?case=service"
    key = "clinic-hash-key-for-webhooks"
    svc = service(
        CALL_WEBHOOKS=url,
        CALL_WEBHOOK_SECRET=SECRET,
        RECORDS_MASK_CALLERS="true",
        RECORDS_HASH_KEY=key,
    )
    call = asterisk.place_call([{"say": 1000}, {"silence": 2500}, {"hangup": True}], caller="+34600111222")

    def bodies() -> list[dict]:
        return [json.loads(r["body"]) for r in got(receiver, "/hooks/ok") if r["query"] == "case=service"]

    found = svc.wait(lambda: len(b := bodies()) >= 2 and b, timeout=30)
    assert [b["type"] for b in found] == ["call.started", "call.ended"]
    started, ended = found
    assert started["data"]["call_id"] == call and started["data"]["caller"] == "+********222"
    assert started["data"]["answered_at"] >= started["data"]["started_at"]
    record = ended["data"]
    assert record["call_id"] == call and record["end_reason"] == "caller_hangup" and record["turns"]
    assert "webhooks" not in record
    raw = b"".join(r["body"] for r in got(receiver, "/hooks/ok"))
    assert b"600111222" not in raw and key.encode() not in raw
    environ = {k: svc.env[k] for k in ("STATE_DIR", "ARI_APP_NAME") if k in svc.env}

    def shown() -> dict | None:
        result = CliRunner().invoke(app, ["calls", "show", call, "--json"], env=environ)
        if result.exit_code != 0:
            return None
        [one] = json.loads(result.output)
        return one if len(one.get("webhooks") or []) == 2 else None

    history = svc.wait(shown, timeout=30)
    assert {(d["event_type"], d["delivered"], d["outcome"]) for d in history["webhooks"]} == {
        ("call.started", True, "HTTP 204"),
        ("call.ended", True, "HTTP 204"),
    }
    text = CliRunner().invoke(app, ["calls", "show", call], env=environ).output
    assert "webhook   call.ended to " in text and "delivered" in text
    log = svc.log()
    assert url not in log and SECRET not in log and "delivered (HTTP 204)" in log


def test_the_dashboards_overview_shows_the_webhook_backlog_only_where_webhooks_are_used():
    from web.views import health

    status = {"ok": True, "supervisor": {"ari": "connected", "calls_live": 0}}
    rows = {label: (value, state) for label, value, state in health(status, {}, {}, 0, str, 3)}
    assert rows["webhook events waiting"] == ("3", "warn")
    assert "webhook events waiting" not in {label for label, _, _ in health(status, {}, {}, 0, str)}
