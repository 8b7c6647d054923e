"""Small files the service writes in directories others may share: never through a link.

A name in STATE_DIR that someone replaced by a symbolic link (to the call history, to the
env file) must not make the service write there. So a small file (a run marker, the
drainer's figures) is written to a temp file created with O_EXCL | O_NOFOLLOW, then renamed
over its name: the rename replaces a link, it never writes through one. Record files go the
same way with an fsync (records/spool.py::write_json_atomically).
"""

from __future__ import annotations

import os
from pathlib import Path

MODE = 0o640


def write_text(path: Path, text: str, mode: int = MODE) -> None:
    """Write `text` as `path`, whole, never following a link (raises OSError)."""
    temp = path.with_name(path.name + ".tmp")
    try:
        temp.unlink()  # unlink never follows a link: a planted one is removed, not its target
    except FileNotFoundError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, path)
