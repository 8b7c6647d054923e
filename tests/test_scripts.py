"""The README's two commands work in either order on a fresh copy of the repository.

Both scripts/demo.sh and scripts/test.sh set up .venv through scripts/venv.sh, so the
demo run first leaves a venv the tests can use, and a venv made by an older script (no
pytest) is brought up to date instead of failing with `No module named pytest`. One real
pip install from the local index (about half a minute, pip's cache reused), hence slow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PIP_NOISE = ("Collecting", "Requirement already", "Successfully installed", "Downloading", "WARNING")


def _fresh_copy(dest: Path) -> Path:
    """The files a clone of this working tree would hold (tracked and new, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell which files a fresh clone holds")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted in the working tree is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _run(copy: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "NOTIFY_SOCKET")}
    return subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True, timeout=600)


def test_demo_then_tests_then_an_old_venv_without_pytest(tmp_path):
    copy = _fresh_copy(tmp_path / "callbridge")

    # The README's order: the demo first, on a clone without .venv. Its output is one line
    # about the set-up, then the demo's own; pip's noise stays in the log.
    demo = _run(copy, "./scripts/demo.sh", "--help")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Usage:" in demo.stdout and "--calls" in demo.stdout
    setup_lines = demo.stderr.strip().splitlines()
    assert len(setup_lines) == 1 and "setting up .venv" in setup_lines[0], demo.stderr
    assert not any(word in demo.stdout + demo.stderr for word in PIP_NOISE)
    assert "Successfully installed" in (copy / ".venv" / "setup.log").read_text()

    # Then the tests, on the demo's venv: pytest is there, and nothing is installed again.
    tests = _run(copy, "./scripts/test.sh", "--version")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "pytest" in tests.stdout + tests.stderr
    assert "setting up .venv" not in tests.stderr

    # A venv without pytest (what the old demo script made) and a changed pyproject.toml:
    # the test command's set-up notices the stale stamp and installs what is missing.
    uninstalled = _run(copy, ".venv/bin/python", "-m", "pip", "uninstall", "-y", "-q", "pytest")
    assert uninstalled.returncode == 0, uninstalled.stderr
    with (copy / "pyproject.toml").open("a") as pyproject:
        pyproject.write("# changed\n")
    repaired = _run(copy, "./scripts/test.sh", "--version")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "setting up .venv" in repaired.stderr and "pytest" in repaired.stdout + repaired.stderr
