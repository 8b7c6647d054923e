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


TEMP = ".tmp"  # what a file is called while it is written (records/spool.py skips such names)


def write_text(path: Path, text: str, mode: int = MODE, durable: bool = False) -> None:
    """Write `text` as `path`, whole, never following a link (raises OSError). `durable`:
    still there after a power loss (the file fsynced before the rename, the directory after
    it: the rename lives in the directory)."""
    temp = path.with_name(path.name + TEMP)
    try:
        temp.unlink()  # unlink never follows a link: a planted one is removed, not its target
    except FileNotFoundError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with open(fd, "w", encoding="utf-8") as out:
        out.write(text)
        if durable:
            out.flush()
            os.fsync(out.fileno())
    os.replace(temp, path)
    if durable:
        sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """fsync a directory, so that a rename or a new file in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
