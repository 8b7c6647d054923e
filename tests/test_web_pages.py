"""The dashboard's words: every text a page shows has its Spanish, and names (end reasons)
read as words in English too. Fast: the templates and web/views.py are read, nothing runs."""

from __future__ import annotations

import ast
import re
from datetime import UTC, datetime

from harness import REPO

from shm_ring.header import EndReason
from web import i18n, views

TEMPLATES = REPO / "web" / "templates"
LITERAL = re.compile(r"""\bt\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def template_texts() -> set[str]:
    found = set()
    for path in TEMPLATES.glob("*.html"):
        for double, single in LITERAL.findall(path.read_text()):
            found.add(double or single)
    return found


def python_texts() -> set[str]:
    """The literals web/*.py hands to a translator (`t("...")`, `seen.t("...")`)."""
    found = set()
    for path in (REPO / "web").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "t" and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def shown_labels() -> set[str]:
    """Labels web/views.py builds and the templates pass through t()."""
    status = {"ok": True, "supervisor": {"ari": "connected", "calls_live": 0, "max_concurrent_calls": 5}}
    labels = {label for _, label in views.LIVE_COLUMNS}
    labels |= {label for label, _, _ in views.health(status, {}, {}, 0, lambda s: s)}
    labels |= {c["title"] for c in views.overview([], datetime.now(UTC).replace(tzinfo=None), UTC)["charts"]}
    call = views.call_view({"started_at": datetime(2026, 1, 1), "turns": [], "events": []}, UTC)
    labels |= {label for label, _ in call["audio"] + call["usage"]}
    return labels


def test_every_text_a_page_shows_has_its_spanish():
    texts = template_texts() | python_texts() | shown_labels()
    assert len(texts) > 80  # the scan found the pages' words, not nothing
    missing = sorted(t for t in texts if t not in i18n.SPANISH)
    assert not missing, f"texts without Spanish in web/i18n.py: {missing}"


def test_end_reasons_read_as_words_in_both_languages():
    for reason in EndReason:
        name = reason.name.lower()
        english, spanish = i18n.translator("en")(name), i18n.translator("es")(name)
        assert " " in english or english == "transferred" or english == "none", (name, english)
        assert spanish != english or name == "none", (name, spanish)
        assert name in i18n.SPANISH and name in i18n.ENGLISH


def test_the_language_is_the_cookie_then_the_browser_then_english():
    assert i18n.choose("es", "en-US,en;q=0.9") == "es"
    assert i18n.choose(None, "fr-FR,es;q=0.8,en;q=0.5") == "es"
    assert i18n.choose(None, "en;q=0.2,es;q=0.9") == "es"
    assert i18n.choose("klingon", "de-DE") == "en"
    assert i18n.choose(None, "es;q=notanumber,en") == "en"
    assert i18n.translator("es")("{n} calls", n=3) == "3 llamadas"
    assert i18n.translator("es")("a text nobody translated") == "a text nobody translated"
