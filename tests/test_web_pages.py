"""The dashboard's words: every text a page shows has its Spanish, and names (end reasons)
read as words in English too. Fast: the templates and web/views.py are read, nothing runs."""

from __future__ import annotations

import re
from pathlib import Path

import web
from shm_ring.header import EndReason
from web import i18n, views


def test_every_text_the_pages_show_has_its_spanish():
    root = Path(web.__file__).parent
    called = r"""\bt\(\s*(?:"([^"]+)"|'([^']+)')"""
    used = set()
    for source_file in [*(root / "templates").glob("*.html"), root / "pages.py", root / "views.py"]:
        used |= {a or b for a, b in re.findall(called, source_file.read_text())}
    # the labels web/views.py hands the templates: ("label", value) pairs and chart titles
    source = (root / "views.py").read_text()
    used |= set(re.findall(r'^\s*\("([^"]+)", ', source, re.M)) - {key for key, _ in views.LIVE_COLUMNS}
    used |= set(re.findall(r'bars\(\s*"([^"]+)"', source))
    used |= {label for _, label in views.LIVE_COLUMNS}
    used |= {reason.name.lower() for reason in EndReason}
    assert len(used) > 120  # the regular expressions above do find the texts
    missing = sorted(text for text in used if text not in i18n.SPANISH)
    assert not missing, f"no Spanish for {missing}"
    assert i18n.choose(None, "fr, es;q=0.8") == "es" and i18n.choose("en", "es") == "en"
    assert i18n.choose(None, "") == "en" and i18n.choose("xx", "q=;;,") == "en"


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
