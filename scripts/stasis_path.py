#!/usr/bin/env python3
"""How many of the product's files a call's admission crosses: from the supervisor's handling
of a StasisStart event to the fork of the call's worker.

    python scripts/stasis_path.py [--tree DIR]

An in-process `Supervisor` (nothing started: no ARI link, no helper) is handed one
StasisStart event, as its loop would hand it, with a profile hook that notes every file of
ours a function is entered in, until `call_worker/process.py::spawn` is entered; the hook
stops there (nothing is forked) and the call's segment is removed. `--tree` measures another
checkout (an earlier commit's worktree) with this same script. Prints the files in the order
first entered and their count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


class Forking(BaseException):
    """Raised by the hook at the fork: not an Exception, so no step of the loop catches it."""


def measure(tree: Path) -> list[str]:
    sys.path.insert(0, str(tree))
    from callbridge import config as cfg
    from supervisor.service import Supervisor

    work = Path(tempfile.mkdtemp(prefix="callbridge-path-"))
    environ = {
        "ASTERISK_HOST": "127.0.0.1",
        "ASTERISK_USERNAME": "path",
        "ASTERISK_PASSWORD": "path-password-1234",
        "OPENAI_API_KEY": "sk-path-0000000000000000",
        "LOCAL_IP_ADDRESS": "127.0.0.1",
        "STATE_DIR": str(work),
        "CONTROL_SOCKET_PATH": str(work / "control.sock"),
        "ALLOW_PLAINTEXT_CREDENTIALS": "true",
    }
    (work / "empty.env").write_text("")
    settings = cfg.load(env_file=work / "empty.env", environ=environ).settings
    supervisor = Supervisor(settings)
    channel_id = "1700000000.1"
    event = {
        "type": "StasisStart",
        "channel": {
            "id": channel_id,
            "name": "PJSIP/100-00000001",
            "caller": {"number": "5551234"},
            "dialplan": {"exten": "100"},
        },
    }
    root = str(tree.resolve()) + os.sep
    seen: dict[str, None] = {}
    made = []

    def hook(frame, what, _arg):
        if what != "call":
            return
        path = frame.f_code.co_filename
        if path.startswith(root) and "/tests/" not in path:
            name = path[len(root) :]
            seen.setdefault(name, None)
            if name == "call_worker/process.py" and frame.f_code.co_name == "spawn":
                made.append(frame.f_locals.get("segment"))  # the call's, to remove below
                raise Forking

    sys.setprofile(hook)
    try:
        supervisor._on_ari_event(event)
    except Forking:
        pass
    finally:
        sys.setprofile(None)
        for segment in made:
            segment.destroy()
    return [name for name in seen if name != Path(__file__).name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]))
    args = parser.parse_args()
    files = measure(Path(args.tree))
    for name in files:
        print(name)
    reached = "call_worker/process.py" in files
    print(
        f"files crossed from StasisStart to the worker's fork: {len(files)}"
        + ("" if reached else " (no fork reached)")
    )
    return 0 if reached else 1


if __name__ == "__main__":
    sys.exit(main())
