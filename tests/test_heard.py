"""The definition of "heard text" (call_worker/heard.py): the transcript's prefix in
proportion to the audio heard, never cut inside a word."""

from __future__ import annotations

import pytest

from call_worker.heard import heard_text

TEXT = "Our opening hours are nine to five, Monday to Friday."


def test_nothing_heard_is_empty():
    assert heard_text(TEXT, 0, 4000) == ""


def test_everything_heard_is_the_whole_text():
    assert heard_text(TEXT, 4000, 4000) == TEXT
    assert heard_text(TEXT, 4100, 4000) == TEXT  # audio_end_ms past the end: capped


def test_an_item_without_audio_or_text_hears_nothing():
    assert heard_text(TEXT, 500, 0) == ""
    assert heard_text("", 500, 1000) == ""
    assert heard_text("   ", 500, 1000) == ""


def test_half_the_audio_is_about_half_the_text_cut_before_the_unfinished_word():
    half = heard_text(TEXT, 2000, 4000)
    assert half == "Our opening hours are nine"  # len 26 of 53: "to" starts at 27
    assert TEXT.startswith(half)


@pytest.mark.parametrize("end_ms", range(0, 4001, 37))
def test_every_cut_is_a_prefix_ending_on_a_whole_word(end_ms):
    heard = heard_text(TEXT, end_ms, 4000)
    assert TEXT.startswith(heard)
    assert len(heard) <= len(TEXT) * end_ms / 4000
    assert heard == "" or TEXT[len(heard) :][:1] in ("", " ")  # the next character ends the word
    assert heard == heard.strip()


def test_more_audio_never_means_less_text():
    lengths = [len(heard_text(TEXT, ms, 4000)) for ms in range(0, 4001, 10)]
    assert lengths == sorted(lengths)


def test_a_word_ending_exactly_at_the_cut_is_heard():
    assert heard_text("ab cd", 2, 5) == "ab"  # 2 characters of 5: "ab" is complete
    assert heard_text("ab cd", 1, 5) == ""


def test_punctuation_stays_with_its_word():
    text = "Hello, world. How are you?"
    assert heard_text(text, 6, len(text)) == "Hello,"
    assert heard_text(text, 13, len(text)) == "Hello, world."
    assert heard_text(text, 12, len(text)) == "Hello,"  # "world." unfinished without its full stop


def test_a_single_long_word_is_heard_only_whole():
    assert heard_text("Supercalifragilistic", 900, 1000) == ""
    assert heard_text("Supercalifragilistic", 1000, 1000) == "Supercalifragilistic"


def test_unicode_letters_count_as_characters_not_bytes():
    text = "Grüße aus Köln, schönen Tag"
    assert heard_text(text, 15, len(text)) == "Grüße aus Köln,"
    cyrillic = "Добрый день, чем могу помочь"
    assert heard_text(cyrillic, 12, len(cyrillic)) == "Добрый день,"


def test_combining_marks_and_emoji_are_never_split():
    decomposed = "cafe\u0301 ou\u0300 the\u0301"  # e + combining acute: one letter, two code points
    for end in range(len(decomposed) + 1):
        heard = heard_text(decomposed, end, len(decomposed))
        assert heard == "" or decomposed[len(heard) :][:1] in ("", " ")
    emoji = "Thanks 👍🏽 see you 👩‍💻"
    for end in range(len(emoji) + 1):
        heard = heard_text(emoji, end, len(emoji))
        assert heard == "" or emoji[len(heard) :][:1] in ("", " ")


def test_scripts_without_spaces_are_cut_between_characters():
    text = "営業時間は九時から五時までです"
    heard = heard_text(text, 5, len(text))
    assert heard == "営業時間は"


def test_other_whitespace_separates_words():
    assert heard_text("one\u00a0two\tthree\nfour", 8, 18) == "one\u00a0two"


def test_korean_is_written_with_spaces_and_cut_only_between_words():
    """Hangul is wide like Chinese, but Korean puts spaces between words."""
    text = "안녕하세요 여러분"
    assert heard_text(text, 3, len(text)) == ""
    assert heard_text(text, 5, len(text)) == "안녕하세요"
    assert heard_text(text, 8, len(text)) == "안녕하세요"
    jamo = "\u1100\u1161 \u3131\u314f"  # conjoining and compatibility jamo: letters of words too
    assert heard_text(jamo, 1, len(jamo)) == ""
