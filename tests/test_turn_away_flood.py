"""A flood of callers over capacity (issue 22, item 2): each used to fork a helper of its
own for up to about 70 s, without bound. supervisor/turn_aways.py bounds them: a few hear
the busy prompt, the rest are hung up at once with the busy cause by one batch helper."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests
from analysis import assert_paced, gaps_ms, loud
from testenv import ended

from callbridge.dialplan import parse_target
from supervisor.turn_aways import PROMPTS, TRIES, TurnAways, Waiting

FLOOD = 300
LIMIT = 5


def _all_calls(asterisk) -> dict[str, dict]:
    return {c["channel_id"]: c for c in requests.get(f"{asterisk.base}/sim/calls", timeout=10).json()}


@pytest.mark.slow
def test_300_callers_at_once_never_fork_past_the_limit_and_none_is_left(service, asterisk):
    svc = service(MAX_CONCURRENT_CALLS=str(LIMIT))
    # Long enough for the flood (2.4 s here) to come and go while they talk.
    live = [asterisk.place_call([{"say": 1000}, {"silence": 12000}, {"hangup": True}]) for _ in range(LIMIT)]
    svc.wait(lambda: all((r := svc.call_row(c)) and r["phase"] == "active" for c in live), timeout=20)

    supervisor = psutil.Process(svc.proc.pid)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], len(supervisor.children()))
            except psutil.Error:
                pass
            stop.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(30) as pool:
            flood = list(pool.map(lambda _: asterisk.place_call([{"silence": 60000}]), range(FLOOD)))
        svc.wait(lambda: ended(asterisk, *flood), timeout=90)
    finally:
        stop.set()
        sampler.join(5)
    calls = _all_calls(asterisk)
    prompted = [c for c in flood if calls[c]["playbacks"]]
    refused = [c for c in flood if not calls[c]["playbacks"]]
    print(f"peak children {peak[0]}; {len(prompted)} heard the prompt, {len(refused)} refused busy at once")
    assert peak[0] <= LIMIT + 10, peak[0]
    assert all(calls[c]["hangup_by"] == "ari" for c in flood)
    assert all(calls[c]["hangup_cause"] == 17 for c in refused)
    assert len(refused) >= FLOOD - 50  # most were refused at once, not queued for the prompt
    summary = svc.status()["supervisor"]
    assert summary["calls_rejected_busy"] == FLOOD
    assert summary["calls_taken"] == LIMIT
    # Nobody is left in Stasis: every flood channel is gone from Asterisk.
    channels = {c["id"] for c in asterisk.state()["channels"]}
    assert not channels & set(flood)
    # The live calls kept their audio through it all.
    svc.wait(lambda: ended(asterisk, *live), timeout=40)
    for call_id in live:
        reply = loud(asterisk.call(call_id))
        assert len(reply) == 150, f"{call_id}: {len(reply)} reply frames"
        assert_paced(gaps_ms(reply), tolerance=3.0)


# --- the queue, pure


def test_the_queue_starts_a_few_prompts_and_one_batch():
    queue = TurnAways()
    for n in range(50):
        assert queue.add(Waiting(f"c{n}", "at MAX_CONCURRENT_CALLS"))
    assert not queue.add(Waiting("c3", "again"))  # counted once
    prompts = []
    while (w := queue.next_prompt()) is not None:
        prompts.append(w.channel_id)
    assert prompts == [f"c{n}" for n in range(PROMPTS)]
    batch = queue.next_batch()
    assert [w.channel_id for w in batch] == [f"c{n}" for n in range(PROMPTS, 50)]
    assert queue.next_batch() == []  # one batch at a time
    assert "c49" in queue and len(queue) == 50
    queue.prompt_done("c0")
    assert "c0" not in queue


def test_a_batch_s_leftovers_go_first_and_are_given_up_after_some_tries():
    fallback = parse_target("operators,100,1")
    queue = TurnAways(prompts=0)
    queue.add(Waiting("a", "why", fallback))
    queue.add(Waiting("b", "why"))
    batch = queue.next_batch()
    queue.add(Waiting("c", "why"))
    assert queue.batch_done([batch[1]]) == []
    batch = queue.next_batch()
    assert [w.channel_id for w in batch] == ["b", "c"]
    given_up = []
    for _ in range(TRIES - 1):  # "b" fails every time; it was in one batch already
        given_up = queue.batch_done([w for w in batch if w.channel_id == "b"])
        batch = queue.next_batch()
    assert [w.channel_id for w in given_up] == ["b"] and given_up[0].tries == TRIES
    assert "b" not in queue


def test_an_unstarted_helper_leaves_its_caller_first_in_line():
    queue = TurnAways(prompts=1)
    queue.add(Waiting("a", "why"))
    queue.add(Waiting("b", "why"))
    first = queue.next_prompt()
    queue.unstarted(first, prompting=True)
    assert list(queue.queue) == ["a", "b"] and not queue.prompting


# --- one caller calling again and again (issue 22, item 21)


def test_a_caller_past_its_hourly_limit_is_turned_away_busy_and_counted(service, asterisk):
    svc = service(MAX_CALLS_PER_CALLER_PER_HOUR="2")
    short = [{"say": 400}, {"silence": 600}, {"hangup": True}]
    taken = [asterisk.place_call(short, caller="+15550001") for _ in range(2)]
    svc.wait(lambda: ended(asterisk, *taken), timeout=20)
    third = asterisk.place_call([{"silence": 8000}], caller="+15550001")
    svc.wait(lambda: ended(asterisk, third), timeout=15)
    assert asterisk.call(third, packets=False)["hangup_by"] == "ari"
    other = asterisk.place_call(short, caller="+15550002")  # another number is taken
    withheld = [asterisk.place_call(short, caller="anonymous") for _ in range(3)]  # never limited
    svc.wait(lambda: ended(asterisk, other, *withheld), timeout=20)
    summary = svc.status()["supervisor"]
    assert summary["calls_over_caller_limit"] == 1 and summary["calls_taken"] == 6
    assert "1 over the limit of 2 calls per caller an hour" in svc.cli("status").stdout


def test_the_caller_limit_forgets_after_an_hour():
    from supervisor.caller_limit import CallerLimit

    limit = CallerLimit(1, window=10.0)
    key = CallerLimit.key("+1555", "")
    limit.taken(key, 0.0)
    assert limit.over(key, 5.0) and not limit.over(key, 11.0)
    limit.prune(30.0)
    assert limit.calls == {} and CallerLimit.key("anonymous", "h") == ""
    assert not CallerLimit(0).over(key, 0.0)  # off
