"""Whether MAX_CONCURRENT_CALLS fits the memory and tasks allowed (issue 22, item 3):
callbridge/capacity.py on cgroup trees made here (v2 and v1), `check`'s line, and the
service's warning at start."""

from __future__ import annotations

import logging

from callbridge import capacity
from callbridge.capacity import CALL_MEMORY, Limits, cgroup_limits, problems

GIB = 1024**3


def _tree(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_unit_s_4_gib_hold_about_340_calls_not_2000(tmp_path):
    _tree(
        tmp_path,
        {
            "proc": "0::/system.slice/openai-inbound-calls.service\n",
            "cg/system.slice/openai-inbound-calls.service/memory.max": f"{4 * GIB}\n",
            "cg/system.slice/openai-inbound-calls.service/pids.max": "8192\n",
            "cg/system.slice/memory.max": "max\n",
            "cg/system.slice/pids.max": "max\n",
        },
    )
    limits = cgroup_limits(tmp_path / "proc", tmp_path / "cg")
    assert (limits.memory, limits.tasks) == (4 * GIB, 8192)
    assert 320 <= limits.calls_that_fit() <= 350
    found = problems(2000, limits)
    assert len(found) == 2 and "about 3" in found[0] and "calls fit" in found[0] and "TasksMax" in found[1]
    assert problems(20, limits) == []


def test_a_parent_s_tighter_limit_wins_and_v1_trees_are_read(tmp_path):
    _tree(
        tmp_path,
        {
            "proc": "4:memory:/a/b\n3:pids:/a/b\n0::/\n",
            "cg/memory/a/b/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
            "cg/memory/a/memory.limit_in_bytes": f"{GIB}\n",
            "cg/pids/a/b/pids.max": "max\n",
        },
    )
    limits = cgroup_limits(tmp_path / "proc", tmp_path / "cg")
    assert limits.memory == GIB and limits.tasks is None
    assert limits.calls_that_fit() == (GIB - capacity.SERVICE_MEMORY) // CALL_MEMORY


def test_no_limit_anywhere_is_no_problem():
    assert problems(2000, Limits(None, None, "nowhere")) == []


def test_check_says_how_many_calls_fit_and_warns_past_it(monkeypatch):
    from callbridge import config as cfg
    from callbridge.cli.check import check_capacity

    base = {"ASTERISK_USERNAME": "u", "ASTERISK_PASSWORD": "a-long-ari-password", "OPENAI_API_KEY": "sk-x"}
    monkeypatch.setattr(capacity, "unit_limits", lambda unit: Limits(4 * GIB, 8192, f"the unit {unit}"))
    fine = check_capacity(cfg.load(environ={**base, "MAX_CONCURRENT_CALLS": "20"}).settings)
    assert fine.ok and not fine.warning and "calls fit" in fine.detail
    over = check_capacity(cfg.load(environ={**base, "MAX_CONCURRENT_CALLS": "2000"}).settings)
    assert over.ok and over.warning and "the unit openai-inbound-calls.service allows 4.0 GiB" in over.detail


def test_the_service_warns_at_start(monkeypatch, caplog):
    from supervisor import start_checks

    monkeypatch.setattr(capacity, "cgroup_limits", lambda: Limits(GIB, None, "this process's cgroup"))
    with caplog.at_level(logging.WARNING, logger="supervisor.service"):
        start_checks.warn_capacity(2000)
    assert any("capacity: MAX_CONCURRENT_CALLS=2000 needs about" in r.getMessage() for r in caplog.records)
