"""The README's configuration table is the settings' declaration table (callbridge/config.py
VARIABLES), row for row: a variable added without its README row, a row left after its
variable went, or a default that changed on one side only fails here."""

from __future__ import annotations

import re
from pathlib import Path

from callbridge import config as cfg

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LONG = 40  # a default this long (a prompt) may be described in words instead of quoted


def readme_configuration_table() -> dict[str, str]:
    """Variable name -> the Default cell, from the table under '## Configuration'."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\|\s*`([A-Z0-9_]+)`\s*\|([^|]*)\|.*\|\s*", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} has two rows in README.md"
            rows[match.group(1)] = match.group(2).strip()
    assert rows, "no configuration table found under '## Configuration' in README.md"
    return rows


def default_problem(var: cfg.Variable, cell: str) -> str | None:
    """Why the README's Default cell does not say `var.default`, or None when it does."""
    if var.default is None:
        return None if cell == "*(required)*" else f"is required: write *(required)*, not {cell}"
    if var.default == "":
        return None if cell == "*(empty)*" else f"defaults to empty: write *(empty)*, not {cell}"
    quoted = re.fullmatch(r"`([^`]*)`", cell)
    if quoted:
        got = quoted.group(1)
        return None if got == var.default else f"defaults to `{var.default}`, not `{got}`"
    if len(var.default) > LONG and cell and not cell.startswith("*("):
        return None  # a long prompt, described in words
    return f"defaults to `{var.default}`: quote it, not {cell!r}"


def test_readme_lists_every_variable_with_its_default():
    rows = readme_configuration_table()
    declared = {var.name: var for var in cfg.VARIABLES}
    missing = [name for name in declared if name not in rows]
    extra = [name for name in rows if name not in declared]
    wrong = [
        f"{name} {problem}"
        for name, cell in rows.items()
        if name in declared and (problem := default_problem(declared[name], cell))
    ]
    assert not missing, f"README.md's configuration table lacks {missing}"
    assert not extra, f"README.md's configuration table has rows for unknown variables {extra}"
    assert not wrong, "README.md's configuration table has wrong defaults: " + "; ".join(wrong)


def test_the_comparison_catches_what_it_should():
    """The checker itself: a quoted wrong default, a prose short default, a wrong marker."""
    port = next(v for v in cfg.VARIABLES if v.name == "ASTERISK_PORT")
    user = next(v for v in cfg.VARIABLES if v.name == "ASTERISK_USERNAME")
    log = next(v for v in cfg.VARIABLES if v.name == "LOG_FILE_PATH")
    prompt = next(v for v in cfg.VARIABLES if v.name == "OPENAI_INSTRUCTIONS")
    assert default_problem(port, "`8088`") is None
    assert default_problem(port, "`8089`") and default_problem(port, "the ARI port")
    assert default_problem(user, "*(required)*") is None and default_problem(user, "*(empty)*")
    assert default_problem(log, "*(empty)*") is None and default_problem(log, "`x`")
    assert default_problem(prompt, "a short generic prompt") is None


def test_the_docs_name_the_unit_the_rtp_range_and_the_times_the_code_has():
    """Issue 22, item 19: docs said `systemctl reload callbridge` (the unit is
    openai-inbound-calls), an rtp.conf range on top of the default RTP_PORT_RANGE, and a
    frozen session noticed within 6 s where the code says 4.5."""
    from call_worker import ws_link

    docs = "".join(
        (REPO / name).read_text() for name in ("README.md", "docs/operations.md", "docs/agents.md")
    )
    assert "systemctl reload callbridge" not in docs and "systemctl reload openai-inbound-calls" in docs
    readme = (REPO / "README.md").read_text()
    start, end = (int(re.search(rf"^rtp{k} = (\d+)", readme, re.M).group(1)) for k in ("start", "end"))
    low, high = cfg.load(
        environ={"ASTERISK_USERNAME": "u", "ASTERISK_PASSWORD": "a-long-password", "OPENAI_API_KEY": "sk-x"}
    ).settings.rtp_port_range
    assert end < low or start > high, (start, end, low, high)
    frozen = ws_link.PING_INTERVAL + ws_link.PING_TIMEOUT
    assert f"noticed within {frozen:g} s" in readme
