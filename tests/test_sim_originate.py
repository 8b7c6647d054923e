"""The simulated Asterisk's originate and transfer destinations (simulators/originate.py,
simulators/destinations.py), seen by a raw ARI client (requests and the events WebSocket):
each scripted behaviour gives the event sequence the real Asterisk 22 gave, and a caller
bridged with an answered destination hears the destination's tone once our externalMedia
channel has left."""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests
import websocket
from analysis import gaps_ms
from harness import ARI_PASSWORD, ARI_USER
from testenv import wait_until

APP = "sim-originate-test"
ENDPOINT = "Local/100@from-internal"


class Ari:
    """REST and events for one app, as callbridge would hold them."""

    def __init__(self, asterisk) -> None:
        self.base = f"{asterisk.base}/ari"
        self.sim = asterisk
        self.auth = (ARI_USER, ARI_PASSWORD)
        token = base64.b64encode(f"{ARI_USER}:{ARI_PASSWORD}".encode()).decode()
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{asterisk.port}/ari/events?app={APP}",
            header=[f"Authorization: Basic {token}"],
            timeout=5,
        )
        self.events: list[dict] = []

    def post(self, path: str, **params) -> requests.Response:
        return requests.post(self.base + path, params=params, auth=self.auth, timeout=5)

    def delete(self, path: str) -> requests.Response:
        return requests.delete(self.base + path, auth=self.auth, timeout=5)

    def channel_ids(self) -> list[str]:
        return [c["id"] for c in requests.get(self.base + "/channels", auth=self.auth, timeout=5).json()]

    def pump(self, timeout: float = 0.05) -> None:
        self.ws.settimeout(timeout)
        try:
            while True:
                self.events.append(json.loads(self.ws.recv()))
                self.ws.settimeout(0.001)
        except (websocket.WebSocketTimeoutException, TimeoutError):
            return

    def until(self, predicate, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            assert time.monotonic() < deadline, f"not seen within {timeout} s: {self.events}"
            self.pump()
        return self.events

    def sequence(self, channel_id: str) -> list[tuple]:
        """(type, channel, detail) of the events about the pair `channel_id`, `channel_id;2`."""
        rows = []
        for event in self.events:
            chan = (event.get("peer") or event.get("channel") or {}).get("id", "")
            if chan not in (channel_id, f"{channel_id};2"):
                continue
            half = ";2" if chan.endswith(";2") else ";1"
            kind = event["type"]
            if kind == "Dial":
                rows.append((kind, half, event["dialstatus"]))
            elif kind == "ChannelStateChange":
                rows.append((kind, half, event["channel"]["state"]))
            elif kind in ("ChannelHangupRequest", "ChannelDestroyed"):
                rows.append((kind, half, event["cause"]))
            else:
                rows.append((kind, half, None))
        return rows

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def ari(asterisk):
    requests.delete(f"{asterisk.base}/sim/destinations", timeout=5)
    client = Ari(asterisk)
    yield client
    client.close()
    requests.delete(f"{asterisk.base}/sim/destinations", timeout=5)


def _script(ari, endpoint: str = ENDPOINT, **params) -> None:
    reply = requests.post(
        f"{ari.sim.base}/sim/destination", params={"endpoint": endpoint, **params}, timeout=5
    )
    assert reply.status_code == 200, reply.text


def _originate(ari, channel_id: str, endpoint: str = f"{ENDPOINT}/n", timeout: int = 30) -> dict:
    reply = ari.post(
        "/channels",
        endpoint=endpoint,
        app=APP,
        appArgs="transfer",
        channelId=channel_id,
        timeout=timeout,
        callerId='"Clinic" <5551000>',
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _destroyed(channel_id: str):
    return lambda events: any(
        e["type"] == "ChannelDestroyed" and e["channel"]["id"] == channel_id for e in events
    )


def _both_destroyed(channel_id: str):
    return lambda events: _destroyed(channel_id)(events) and _destroyed(f"{channel_id};2")(events)


def _origination(ari, channel_id: str) -> dict:
    return requests.get(f"{ari.sim.base}/sim/originations/{channel_id}", timeout=5).json()


def test_an_answering_destination_rings_answers_and_enters_stasis(ari):
    _script(ari, behaviour="answer", after=0.3)
    reply = _originate(ari, "tr-answer")
    assert reply["id"] == "tr-answer" and reply["state"] == "Down"
    assert reply["name"].startswith("Local/100@from-internal-") and reply["name"].endswith(";1")
    events = ari.until(lambda ev: any(e["type"] == "StasisStart" for e in ev))
    assert ari.sequence("tr-answer") == [
        ("Dial", ";1", ""),
        ("ChannelStateChange", ";1", "Ringing"),
        ("Dial", ";1", "RINGING"),
        ("ChannelStateChange", ";2", "Up"),
        ("ChannelStateChange", ";1", "Up"),
        ("Dial", ";1", "ANSWER"),
        ("ChannelVarset", ";1", None),
        ("StasisStart", ";1", None),
    ]
    start = [e for e in events if e["type"] == "StasisStart"][0]
    assert start["args"] == ["transfer"] and start["channel"]["state"] == "Up"
    assert start["channel"]["caller"]["number"] == "5551000"
    assert {"tr-answer", "tr-answer;2"} <= set(ari.channel_ids())  # both halves, for reconciliation
    assert ari.post("/channels", endpoint=ENDPOINT, app=APP, channelId="tr-answer").status_code == 409

    assert ari.delete("/channels/tr-answer").status_code == 204
    ari.until(_both_destroyed("tr-answer"))
    assert ari.sequence("tr-answer")[8:] == [
        ("ChannelHangupRequest", ";1", 16),
        ("StasisEnd", ";1", None),
        ("ChannelDestroyed", ";1", 16),
        ("ChannelDestroyed", ";2", 16),
    ]
    assert not {"tr-answer", "tr-answer;2"} & set(ari.channel_ids())
    record = _origination(ari, "tr-answer")
    assert (record["outcome"], record["ended_by"], record["endpoint"]) == ("answered", "ari", f"{ENDPOINT}/n")


@pytest.mark.parametrize(
    ("params", "expected", "outcome"),
    [
        (
            {"behaviour": "busy"},
            [
                ("Dial", ";1", ""),
                ("ChannelStateChange", ";2", "Busy"),
                ("Dial", ";1", "BUSY"),
                ("ChannelHangupRequest", ";2", 0),
                ("ChannelDestroyed", ";1", 0),
                ("ChannelHangupRequest", ";2", 16),
                ("ChannelDestroyed", ";2", 17),
            ],
            "busy",
        ),
        (
            {"behaviour": "hangup", "cause": 17},
            [
                ("Dial", ";1", ""),
                ("ChannelHangupRequest", ";1", 17),
                ("ChannelDestroyed", ";2", 17),
                ("Dial", ";1", "BUSY"),
                ("ChannelDestroyed", ";1", 17),
            ],
            "hangup",
        ),
        (
            {"behaviour": "congestion"},
            [
                ("Dial", ";1", ""),
                ("Dial", ";1", "CONGESTION"),
                ("ChannelDestroyed", ";1", 0),
                ("ChannelDestroyed", ";2", 34),
            ],
            "congestion",
        ),
        (
            {"behaviour": "unavailable"},
            [("ChannelDestroyed", ";1", 0), ("ChannelDestroyed", ";2", 0)],
            "unavailable",
        ),
    ],
)
def test_a_destination_that_fails_ends_with_the_sequence_asterisk_sends(ari, params, expected, outcome):
    channel_id = f"tr-{outcome}"
    _script(ari, **params)
    _originate(ari, channel_id)
    ari.until(_both_destroyed(channel_id))
    assert ari.sequence(channel_id) == expected
    destroyed = [
        e for e in ari.events if e["type"] == "ChannelDestroyed" and e["channel"]["id"] == channel_id
    ][0]
    assert destroyed["cause_txt"] == {"busy": "Unknown", "hangup": "User busy", "congestion": "Unknown"}.get(
        outcome, "Unknown"
    )
    assert not {channel_id, f"{channel_id};2"} & set(ari.channel_ids())
    assert _origination(ari, channel_id)["outcome"] == outcome


@pytest.mark.parametrize("behaviour", ["noanswer", "answer"])
def test_a_destination_ringing_past_the_timeout_is_hung_up_with_cause_19(ari, behaviour):
    _script(ari, behaviour=behaviour, after=5)  # an answer due after the timeout never comes
    channel_id = f"tr-timeout-{behaviour}"
    began = time.monotonic()
    _originate(ari, channel_id, timeout=1)
    ari.until(_both_destroyed(channel_id))
    assert time.monotonic() - began >= 1.0
    assert ari.sequence(channel_id) == [
        ("Dial", ";1", ""),
        ("ChannelStateChange", ";1", "Ringing"),
        ("Dial", ";1", "RINGING"),
        ("ChannelHangupRequest", ";2", 19),
        ("ChannelDestroyed", ";1", 19),
        ("ChannelDestroyed", ";2", 19),
    ]
    destroyed = [
        e for e in ari.events if e["type"] == "ChannelDestroyed" and e["channel"]["id"] == channel_id
    ]
    assert destroyed[0]["cause_txt"] == "User alerting, no answer"
    assert _origination(ari, channel_id)["outcome"] == "noanswer"


def test_deleting_a_ringing_destination_ends_it_without_stasis(ari):
    _script(ari, behaviour="answer", after=0.6)
    _originate(ari, "tr-cancel")
    ari.until(lambda ev: ("Dial", ";1", "RINGING") in ari.sequence("tr-cancel"))
    assert ari.delete("/channels/tr-cancel").status_code == 204
    ari.until(_both_destroyed("tr-cancel"))
    time.sleep(0.8)  # past the scripted answer: it must not come
    ari.pump()
    assert ari.sequence("tr-cancel")[3:] == [
        ("ChannelHangupRequest", ";1", 16),
        ("ChannelDestroyed", ";1", 16),
        ("ChannelDestroyed", ";2", 16),
    ]
    record = _origination(ari, "tr-cancel")
    assert (record["outcome"], record["ended_by"]) == ("cancelled", "ari")
    assert ari.delete("/channels/tr-cancel").status_code == 404


def test_an_unscripted_endpoint_answers_and_bad_requests_are_refused(ari):
    _originate(ari, "tr-default", endpoint="Local/999@elsewhere/n")
    ari.until(lambda ev: ("StasisStart", ";1", None) in ari.sequence("tr-default"))
    assert ari.delete("/channels/tr-default;2").status_code == 204  # either half ends the pair
    ari.until(_both_destroyed("tr-default"))
    assert ari.post("/channels", endpoint="PJSIP/100", app=APP).status_code == 400
    assert ari.post("/channels", app=APP).status_code == 400
    bad = requests.post(
        f"{ari.sim.base}/sim/destination", params={"endpoint": ENDPOINT, "behaviour": "x"}, timeout=5
    )
    assert bad.status_code == 400


@pytest.mark.parametrize("leave", ["delete", "removeChannel"])
def test_a_bridged_destination_is_heard_by_the_caller_once_our_media_channel_leaves(ari, leave):
    _script(ari, behaviour="answer", after=0.2, hz=600, hangup_after=30)
    caller_id = ari.sim.place_call([{"say": 400}, {"silence": 200}] * 20, app=APP)
    ari.until(lambda ev: any(e["type"] == "StasisStart" and e["channel"]["id"] == caller_id for e in ev))
    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # callbridge's RTP socket, standing in
    ours.bind(("127.0.0.1", 0))
    try:
        bridge = f"{caller_id}-bridge"
        external = f"{caller_id}-media"
        assert ari.post("/bridges", bridgeId=bridge, type="mixing").status_code == 200
        media = ari.post(
            "/channels/externalMedia",
            app=APP,
            channelId=external,
            external_host=f"127.0.0.1:{ours.getsockname()[1]}",
            format="ulaw",
        )
        assert media.status_code == 200
        assert ari.post(f"/bridges/{bridge}/addChannel", channel=f"{caller_id},{external}").status_code == 204

        transfer = f"{caller_id}-transfer-1"  # named after the call, as callbridge names its objects
        _originate(ari, transfer)
        ari.until(lambda ev: ("StasisStart", ";1", None) in ari.sequence(transfer))
        assert ari.post(f"/bridges/{bridge}/addChannel", channel=transfer).status_code == 204
        ssrc = str(_origination(ari, transfer)["media"]["ssrc"])
        assert ssrc not in ari.sim.call(caller_id)["sources"]  # our media channel still has the caller
        left_at = time.monotonic()
        if leave == "delete":
            assert ari.delete(f"/channels/{external}").status_code == 204
        else:
            assert ari.post(f"/bridges/{bridge}/removeChannel", channel=external).status_code == 204
            ari.until(lambda ev: ("ChannelLeftBridge", ";1", None) in ari.sequence(external))
            assert external in ari.channel_ids()  # out of the bridge, still in Stasis

        def heard():
            source = ari.sim.call(caller_id)["sources"].get(ssrc)
            return source if source and source["loud_packets"] >= 50 else None

        source = wait_until(heard, 10, interval=0.1)
        assert source["first_loud"] >= left_at and abs(source["hz"] - 600) <= 15
        record = ari.sim.call(caller_id)
        rows = [r for r in record["received"] if str(r[3]) == ssrc]
        gaps = gaps_ms([{"arrival": r[0]} for r in rows])
        assert sum(1 for g in gaps if g < 10) == 0 and 18 <= sum(gaps) / len(gaps) <= 23  # paced, no bursts
        assert {r[6] for r in rows} == {160}  # 20 ms frames
        dial = _origination(ari, transfer)
        assert (
            dial["bridged_with"] == [caller_id] and dial["media"]["packets_received"] > 0
        )  # caller heard too
        assert [d["channel_id"] for d in record["originations"]] == [transfer]

        # The caller hangs up: its events as today; the destination stays until it is deleted.
        ari.sim.hangup(caller_id)
        ari.until(_destroyed(caller_id))
        assert transfer in ari.channel_ids()
        assert ari.delete(f"/channels/{transfer}").status_code == 204
        ari.until(_both_destroyed(transfer))
        assert ari.delete(f"/bridges/{bridge}").status_code == 204
        if leave == "removeChannel":
            assert ari.delete(f"/channels/{external}").status_code == 204
    finally:
        ours.close()


def test_a_destination_hangs_up_by_itself_after_hangup_after(ari):
    _script(ari, behaviour="answer", after=0.1, ring=0, hangup_after=0.3)
    _originate(ari, "tr-self")
    ari.until(_both_destroyed("tr-self"))
    assert ari.sequence("tr-self") == [
        ("Dial", ";1", ""),
        ("ChannelStateChange", ";2", "Up"),
        ("ChannelStateChange", ";1", "Up"),
        ("Dial", ";1", "ANSWER"),
        ("ChannelVarset", ";1", None),
        ("StasisStart", ";1", None),
        ("ChannelHangupRequest", ";1", 16),
        ("StasisEnd", ";1", None),
        ("ChannelDestroyed", ";1", 16),
        ("ChannelDestroyed", ";2", 16),
    ]
    assert _origination(ari, "tr-self")["ended_by"] == "destination"
