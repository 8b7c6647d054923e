"""`callbridge calls audio` and `callbridge calls erase`: the two commands that hand out or
remove what a call left (its recording; everything), each in the audit log before it acts.

They share `callbridge calls`' settings and its database (callbridge/cli/records_commands.py)
and need the service's files too: RECORDINGS_DIR, RECORDS_SPOOL_DIR, CALL_RECORDS_DIR.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from callbridge import config as cfg
from callbridge.cli.records_commands import EnvFile, Where, _fail, _short, calls_app
from records.erasure import Places


def _one_call(where: Where, call_id: str, instance: str | None, engine) -> dict:
    from records.queries import find_calls

    found = find_calls(engine, call_id, instance)
    if not found:
        raise _fail(f"no call {call_id!r} in the call history")
    if len(found) > 1:
        names = ", ".join(call["instance"] for call in found)
        raise _fail(
            f"call {call_id!r} is in several instances' history ({names}): choose one with --instance"
        )
    return found[0]


def _audit(engine, where: Where, action: str, target: str, detail: str = "") -> None:
    """The audit log's row for what this command did; a history that cannot take it stops
    the command (a recording exported or a call erased without a trace is not allowed)."""
    import getpass

    from records.accounts import audit_event

    try:
        user = "cli:" + getpass.getuser()
    except (KeyError, OSError):
        user = "cli"
    try:
        audit_event(engine, where.instance, user, action, target, detail=detail)
    except Exception as exc:
        raise _fail(f"cannot write the audit log ({_short(exc)}): nothing done") from None


@calls_app.command("audio")
def calls_audio(
    call_id: Annotated[str, typer.Argument(help="The call id (see `callbridge calls`).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    instance: Annotated[str | None, typer.Option(help="Only this instance's call of that id.")] = None,
    env_file: EnvFile = None,
) -> None:
    """One call's recording (WAV: left the caller, right the agent as heard), checked
    against the SHA-256 its record keeps. Each export is in the audit log."""
    from records.recordings import checksum, contained

    where = Where(env_file)
    engine = where.engine()
    call = _one_call(where, call_id, instance, engine)
    path = call.get("recording_path") or ""
    if not path:
        raise _fail(f"call {call_id!r} was not recorded")
    source = contained(path, where.recording_roots)
    if source is None:
        raise _fail(
            f"the recording {path} is gone (RECORDINGS_RETENTION_DAYS, or removed by hand), "
            "or not in a recordings directory of this machine"
        )
    if checksum(source) != call["recording_sha256"]:
        raise _fail(f"the recording {path} does not match its record's SHA-256: it changed after the call")
    _audit(engine, where, "recording_export", call_id, str(output or "stdout"))
    data = source.read_bytes()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)
        typer.echo(
            f"{output}: {call['recording_seconds']:.1f} s, {len(data)} bytes "
            f"({call['recording_state']}, SHA-256 checked)",
            err=True,
        )


@calls_app.command("erase")
def calls_erase(
    call_id: Annotated[str, typer.Argument(help="The call id (see `callbridge calls`).")],
    instance: Annotated[str | None, typer.Option(help="That instance's call (default: this one's).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    env_file: EnvFile = None,
) -> None:
    """Remove one call everywhere callbridge keeps it: its record, transcript, recording,
    summary, queued webhooks and files (a caller's erasure request). Audited."""
    from records.erasure import erase_call

    where = Where(env_file)
    owner = instance or where.instance
    if _is_live(where, call_id):
        raise _fail(f"call {call_id!r} is still going on: erase it once it has ended")
    if not yes and not typer.confirm(f"Erase call {call_id!r} of {owner} everywhere?"):
        raise _fail("nothing erased")
    engine = where.engine()
    places = where.places if owner == where.instance else _places_of(where, owner)
    _audit(engine, where, "erase_requested", call_id, owner)  # before anything goes
    try:
        erasure = erase_call(engine, places, owner, call_id, where.recording_roots)
    except Exception as exc:  # the files may be gone, the database's rows not
        _audit(engine, where, "erase_failed", call_id, _short(exc))
        raise _fail(f"the erasure of {call_id!r} stopped half-way ({_short(exc)}): run it again") from None
    if not erasure.removed:
        raise _fail(f"callbridge keeps nothing of call {call_id!r} of {owner}")
    detail = "; ".join(erasure.removed) + (
        f"; INCOMPLETE: {erasure.incomplete}" if erasure.incomplete else ""
    )
    _audit(engine, where, "erase", call_id, detail[:2000])
    for line in erasure.removed:
        typer.echo(f"erased {line}")
    if erasure.incomplete:
        raise _fail(f"not everything could be erased: {erasure.incomplete}")


def _places_of(where: Where, instance: str) -> Places:
    """Another instance's default directories (its own settings are not known here)."""
    return Places(
        spool_dir=cfg.instance_path("", where.state_dir, "spool", instance),
        recordings_dir=cfg.instance_path("", where.state_dir, "recordings", instance),
    )


def _is_live(where: Where, call_id: str) -> bool:
    """Is the call in this instance's `status`? A service that is not running has none."""
    from shm_ring import wire

    try:
        reply = wire.request(where.control_socket, {"cmd": "status"}, timeout=5)
    except (OSError, wire.WireError):
        return False
    return any(row.get("call_id") == call_id for row in reply.get("calls", []))
