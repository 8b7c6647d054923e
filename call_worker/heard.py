"""What the caller heard of an agent turn: the one definition of "heard text".

The Realtime API gives no word timings, only the audio and the transcript of an item. So
the heard text is the transcript's prefix in proportion to the audio the caller heard
(`audio_end_ms` of the item's `item_audio_ms`), cut back to a word boundary: a word is
heard only when the whole of it fits in that proportion, never half of one. The re-sent
history after a reconnect uses it; call records and the dashboard reuse it.
"""

from __future__ import annotations

import unicodedata


def heard_text(transcript: str, audio_end_ms: int, item_audio_ms: int) -> str:
    """The part of `transcript` that `audio_end_ms` of the item's `item_audio_ms` carried.

    0 ms (or an item without audio) -> ""; all of the audio -> the whole text.
    """
    text = transcript.strip()
    if not text or audio_end_ms <= 0 or item_audio_ms <= 0:
        return ""
    if audio_end_ms >= item_audio_ms:
        return text
    cut = len(text) * audio_end_ms // item_audio_ms
    while cut > 0 and not _is_boundary(text, cut):
        cut -= 1
    return text[:cut].rstrip()


def _is_boundary(text: str, index: int) -> bool:
    """May the text be cut before `text[index]`? Between words (whitespace, any script's),
    or between two characters of a script written without spaces (Chinese, Japanese), where
    each character stands on its own. Korean is wide too but puts spaces between its words,
    so a Hangul word is cut only whole. Punctuation stays with the word it follows."""
    before, after = text[index - 1], text[index]
    if before.isspace() or after.isspace():
        return True
    return _unspaced_letter(before) and _unspaced_letter(after)


# Hangul: conjoining jamo, compatibility jamo, syllables.
_HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))


def _unspaced_letter(char: str) -> bool:
    if any(low <= ord(char) <= high for low, high in _HANGUL):
        return False
    return unicodedata.category(char) == "Lo" and unicodedata.east_asian_width(char) in ("W", "F")
