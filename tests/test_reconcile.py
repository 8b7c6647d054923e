"""Reconciliation's decisions (supervisor/reconcile.py `plan`) over listings that hold
another instance's objects, a dead run's leftovers, turned-away callers and callers whose
StasisStart was missed. Several instances share one Asterisk: one must never touch the
other's bridges, media channels or callers."""

from __future__ import annotations

from callbridge.ids import InstanceIds
from supervisor.reconcile import plan

OURS, THEIRS = InstanceIds("openai-app"), InstanceIds("peer-app")


def caller(channel_id: str, app: str, **extra) -> dict:
    return {
        "id": channel_id,
        "name": f"PJSIP/{channel_id}",
        "state": "Up",
        "dialplan": {"app_name": "Stasis", "app_data": app},
        **extra,
    }


def media(ids: InstanceIds, call_id: str) -> dict:
    return {"id": ids.external_channel(call_id), "name": f"UnicastRTP/127.0.0.1:4000-{call_id}"}


def listing(*, channels=(), bridges=()) -> dict:
    return {"channels": list(channels), "bridges": [{"id": b} for b in bridges]}


def removed(result) -> set[str]:
    return {target.object_id for target in result.remove}


def test_another_instances_objects_and_callers_are_never_touched():
    theirs = listing(
        channels=[caller("b1", "peer-app"), media(THEIRS, "b1"), caller("b2", "peer-app")],
        bridges=[THEIRS.bridge("b1")],
    )
    result = plan(theirs, live=set(), older=set(), busy=set(), ids=OURS, app="openai-app")
    assert result.remove == [] and result.adopt == [] and result.gone == []


def test_our_dead_runs_leftovers_go_with_their_callers_and_nothing_else():
    mixed = listing(
        channels=[
            caller("a1", "openai-app"),  # a dead run's call: its bridge is still there
            media(OURS, "a1"),
            caller("b1", "peer-app"),
            media(THEIRS, "b1"),
        ],
        bridges=[OURS.bridge("a1"), THEIRS.bridge("b1")],
    )
    result = plan(mixed, live=set(), older=set(), busy=set(), ids=OURS, app="openai-app")
    assert removed(result) == {OURS.bridge("a1"), OURS.external_channel("a1"), "a1"}
    assert result.adopt == []


def test_a_prefix_that_begins_another_instances_is_not_ours():
    """With '-' as the separator, instance 'a' would read 'a-br's bridge as its own."""
    short, longer = InstanceIds("a"), InstanceIds("a-br")
    result = plan(
        listing(channels=[media(longer, "x1")], bridges=[longer.bridge("x1")]),
        live=set(),
        older=set(),
        busy=set(),
        ids=short,
        app="a",
    )
    assert result.remove == []
    assert short.call_id_of(longer.bridge("x1")) is None


def test_waiting_callers_are_adopted_but_turned_away_ones_are_hung_up():
    waiting = listing(
        channels=[
            caller("new1", "openai-app"),
            caller("busy1", "openai-app", turned_away=True),
            caller("busy2", "openai-app", turned_away=True),  # being turned away right now
        ]
    )
    result = plan(waiting, live=set(), older=set(), busy={"busy2"}, ids=OURS, app="openai-app")
    assert [c["id"] for c in result.adopt] == ["new1"]
    assert removed(result) == {"busy1"}


def test_live_calls_keep_their_objects_and_only_older_absent_calls_are_gone():
    now = listing(
        channels=[caller("live1", "openai-app"), media(OURS, "live1")], bridges=[OURS.bridge("live1")]
    )
    result = plan(
        now,
        live={"live1", "left1", "young1"},
        older={"live1", "left1"},  # young1 was admitted after the listing was asked for
        busy=set(),
        ids=OURS,
        app="openai-app",
    )
    assert result.remove == [] and result.adopt == []
    assert result.gone == ["left1"]


def test_a_call_that_ended_while_the_listing_ran_is_not_adopted_again():
    """Its bridge and media channel were gone when the helper listed, its caller not yet: it
    looks like a missed StasisStart, but it is this run's own call (passed as `busy`)."""
    result = plan(
        listing(channels=[caller("1.5", "openai-app")]),
        live=set(),
        older={"1.5"},
        busy={"1.5"},
        ids=OURS,
        app="openai-app",
    )
    assert result.adopt == [] and result.remove == []


def test_a_caller_in_any_bridge_is_never_adopted():
    """Somebody's live call (another program on the same app, by mistake): not ours to take."""
    bridged = {
        "channels": [caller("x1", "openai-app")],
        "bridges": [{"id": "their-bridge", "channels": ["x1"]}],
    }
    result = plan(bridged, live=set(), older=set(), busy=set(), ids=OURS, app="openai-app")
    assert result.adopt == [] and result.remove == []


def test_derived_instance_ids_of_different_apps_differ():
    from callbridge.ids import instance_from_app, instance_problem

    assert instance_from_app("openai-app") == "openai-app"
    derived = {instance_from_app(app) for app in ("a.b", "a/b", "a_b", "a b", "x" * 40, "x" * 41)}
    assert len(derived) == 6 and all(instance_problem(i) is None for i in derived)


def test_a_caller_a_dead_run_was_sending_to_a_fallback_is_sent_on_never_hung_up():
    from callbridge.dialplan import DialplanTarget

    waiting = listing(
        channels=[
            caller("fb1", "openai-app", turned_away=True, turned_away_mark="fallback:from-internal,vm,2"),
            caller("busy1", "openai-app", turned_away=True, turned_away_mark="at MAX_CONCURRENT_CALLS"),
            # After the continue it is out of our app: nothing to do about it.
            {"id": "gone1", "name": "PJSIP/gone1", "dialplan": {"app_name": "VoiceMail", "app_data": "100"}},
        ]
    )
    result = plan(waiting, live=set(), older=set(), busy=set(), ids=OURS, app="openai-app")
    assert result.send_on == [("fb1", DialplanTarget("from-internal", "vm", 2))]
    assert removed(result) == {"busy1"} and result.adopt == []


def _pair(call_id: str, *, caller_there: bool = True, destination_there: bool = True) -> dict:
    """A transferred call as Asterisk lists it: the caller and the transfer's Local channel
    (both halves) in the call's bridge, out of our Stasis app's view as a new caller."""
    destination = OURS.transfer_channel(call_id, 1)
    members = [m for m, there in ((call_id, caller_there), (destination, destination_there)) if there]
    channels = [
        {"id": m, "name": f"X/{m}", "dialplan": {"app_name": "Stasis", "app_data": "openai-app"}}
        for m in members
    ]
    if destination_there:
        channels.append({"id": destination + ";2", "name": "Local/200@ctx-1;2", "dialplan": {}})
    return {"channels": channels, "bridges": [{"id": OURS.bridge(call_id), "channels": members}]}


def test_a_transferred_call_still_talking_is_adopted_and_nothing_of_it_removed():
    result = plan(_pair("t1"), live=set(), older=set(), busy=set(), ids=OURS, app="openai-app")
    assert result.transferred == {"t1": OURS.transfer_channel("t1", 1)}
    assert result.remove == [] and result.adopt == []


def test_a_transferred_call_whose_caller_left_is_removed_with_its_destination():
    result = plan(
        _pair("t1", caller_there=False), live=set(), older=set(), busy=set(), ids=OURS, app="openai-app"
    )
    assert result.transferred == {}
    assert removed(result) == {OURS.bridge("t1"), OURS.transfer_channel("t1", 1)}


def test_a_transfer_attempt_of_a_live_call_is_left_alone_and_one_of_a_dead_run_removed():
    ringing = {"id": OURS.transfer_channel("t2", 3), "name": "Local/200@ctx-2;1", "dialplan": {}}
    half = {"id": OURS.transfer_channel("t2", 3) + ";2", "name": "Local/200@ctx-2;2", "dialplan": {}}
    found = {"channels": [ringing, half], "bridges": []}
    live = plan(found, live={"t2"}, older={"t2"}, busy=set(), ids=OURS, app="openai-app")
    assert live.remove == [] and live.gone == ["t2"]  # (its caller is not in this listing)
    dead = plan(found, live=set(), older=set(), busy=set(), ids=OURS, app="openai-app")
    assert removed(dead) == {ringing["id"]}  # the ;2 half goes with it


def test_a_watched_pair_missing_a_side_is_over_but_one_watched_after_the_listing_is_not():
    watched = {"t1": OURS.transfer_channel("t1", 1), "t3": OURS.transfer_channel("t3", 1)}
    gone_caller = _pair("t1", caller_there=False)
    result = plan(
        gone_caller, set(), set(), set(), OURS, "openai-app", watched=watched, watched_older={"t1", "t3"}
    )
    assert result.pairs_gone == ["t1", "t3"]  # t3 is not in the listing at all
    assert result.remove == []  # the pair's own teardown removes it, not reconciliation
    fresh = plan(gone_caller, set(), set(), set(), OURS, "openai-app", watched=watched, watched_older=set())
    assert fresh.pairs_gone == []
    whole = plan(_pair("t1"), set(), set(), set(), OURS, "openai-app", watched=watched, watched_older={"t1"})
    assert whole.pairs_gone == [] and whole.transferred == {}
