"""Caller speech for sipp: espeak-ng speaks, sox turns it into 8 kHz mu-law WAV with
silences around it (sipp's stream stops at the end of the file, and Asterisk sends
nothing while the caller sends nothing, so the file carries its own trailing silence)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def utterance(text: str, path: Path) -> Path:
    raw = path.with_suffix(".raw.wav")
    _run("espeak-ng", "-s", "165", "-w", str(raw), text)
    _run("sox", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", str(path), "norm", "-3")
    raw.unlink()
    return path


def silence(seconds: float, path: Path) -> Path:
    _run("sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law", str(path), "trim", "0", str(seconds))
    return path


def script(parts: list[str | float], path: Path) -> Path:
    """A WAV of sentences (str) and silences (float seconds), in order."""
    pieces = []
    for index, part in enumerate(parts):
        piece = path.with_name(f"{path.stem}.{index}.wav")
        pieces.append(utterance(part, piece) if isinstance(part, str) else silence(float(part), piece))
    _run("sox", *map(str, pieces), str(path))
    for piece in pieces:
        piece.unlink()
    return path


def duration(path: Path) -> float:
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True, timeout=30)
    return float(out.stdout.strip())
