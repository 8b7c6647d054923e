"""`callbridge db`, `callbridge calls` and `callbridge usage`: a thin layer over records/.

These need only the call history's settings (STATE_DIR, DATABASE_URL, INSTANCE_ID,
ARI_APP_NAME), so they work where the rest of the configuration is not readable or not
complete. Times are shown, and read from --since/--until, in RECORDS_TIMEZONE (empty: this
machine's timezone). How one call reads in `calls show` is callbridge/cli/call_view.py.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from callbridge import config as cfg
from callbridge.cli.call_view import call_lines, local_time
from records.erasure import Places

NEEDED = (
    "ARI_APP_NAME",
    "INSTANCE_ID",
    "STATE_DIR",
    "DATABASE_URL",
    "RECORDS_HASH_KEY",
    "RECORDS_TIMEZONE",
    "RECORDS_MASK_CALLERS",
    "RECORDS_MASK_KEEP_DIGITS",
    "RECORDS_SPOOL_DIR",
    "RECORDINGS_DIR",
    "CALL_RECORDS_DIR",
    "CONTROL_SOCKET_PATH",
)

db_app = typer.Typer(help="The call history database.", no_args_is_help=True, rich_markup_mode=None)
calls_app = typer.Typer(
    help="The call history: recent calls, one call, its recording, export, import, erasure.",
    rich_markup_mode=None,
)

EnvFile = Annotated[
    str | None, typer.Option("--env-file", help="Env file to read.", show_default=False, metavar="PATH")
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Since = Annotated[str | None, typer.Option(help="From: 2026-05-01, '2026-05-01 08:00', or 2h / 3d / 1w ago.")]
Until = Annotated[str | None, typer.Option(help="Before: same forms as --since.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"callbridge: {message}", err=True)
    return typer.Exit(code)


class Where:
    """The records settings without the rest of the configuration."""

    def __init__(self, env_file: str | None) -> None:
        try:
            checked = cfg.check(env_file)
        except cfg.ConfigError as exc:
            raise _fail(f"configuration error: {exc}", cfg.EX_CONFIG) from None
        values = {}
        for entry in checked.entries:
            if entry.var.name in NEEDED:
                if entry.problem is not None:
                    raise _fail(f"configuration error: {entry.var.name}: {entry.problem}", cfg.EX_CONFIG)
                values[entry.var.field] = entry.value
        self.state_dir = values["state_dir"]
        self.database_url = values["database_url"]
        self.instance = values["instance_id"] or cfg.ids.instance_from_app(values["ari_app_name"])
        self.hash_key = values["records_hash_key"]  # a Secret: `--caller` is hashed with it
        self.mask_callers = values["records_mask_callers"]
        self.mask_keep_digits = values["records_mask_keep_digits"]
        # None: this machine's zone (astimezone(None)); the name was checked by config.py
        self.zone = ZoneInfo(values["records_timezone"]) if values["records_timezone"] else None
        self.places = Places(
            spool_dir=cfg.instance_path(values["records_spool_dir"], self.state_dir, "spool", self.instance),
            recordings_dir=cfg.instance_path(
                values["recordings_dir"], self.state_dir, "recordings", self.instance
            ),
            call_records_dir=values["call_records_dir"],
        )
        self.control_socket = values["control_socket_path"]
        # where a record's recording may be: this instance's RECORDINGS_DIR, or any
        # instance's default under STATE_DIR (records/recordings.py::contained)
        self.recording_roots = [self.places.recordings_dir, Path(self.state_dir) / "recordings"]

    def say(self) -> None:
        """Which database is read, on stderr (stdout stays the data: JSON, CSV)."""
        typer.echo(f"call history: {self.database}", err=True)

    @property
    def database(self):
        from callbridge.database_url import DatabaseUrl

        return self.database_url or DatabaseUrl.sqlite_file(Path(self.state_dir) / "callbridge.db")

    def engine(self, migrated: bool = True, read_only: bool = False):
        """`read_only`: for questions; SQLite opens the file so that it cannot change it."""
        from records.migrate import current
        from records.store import open_engine

        database = self.database
        if database.is_sqlite and migrated and not Path(database.url.database).exists():
            raise _fail(f"no call history yet: {database.url.database} does not exist")
        engine = open_engine(database, read_only=read_only)
        if migrated:
            try:
                revision = current(engine)
            except Exception as exc:
                raise _fail(
                    f"cannot read the call history at {database}: {_short(exc)}{_sqlite_hint(database, exc)}"
                ) from None
            if revision is None:
                raise _fail(
                    f"the database at {database} has no call history tables: run `callbridge db upgrade`"
                )
        return engine


def _sqlite_hint(database, exc: Exception) -> str:
    """Why a member of the service's group may not read its SQLite file (records/store.py)."""
    text = str(getattr(exc, "orig", None) or exc)
    if not database.is_sqlite or ("readonly" not in text and "unable to open" not in text):
        return ""
    folder = Path(database.url.database).parent
    return (
        f" (in WAL mode a reader needs to write the database's -shm file, and to create it in {folder}"
        " when the service is not running: the directory must be group-writable and setgid, the"
        " database file 0660, as install_service.sh sets them; see docs/operations.md)"
    )


def _short(exc: Exception) -> str:
    return (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0][:300]


def parse_when(text: str | None, now: datetime | None = None, zone: tzinfo | None = None) -> datetime | None:
    """A date, date and time in `zone` (None: this machine's), or an age (30m, 2h, 3d, 1w),
    as naive UTC."""
    if text is None:
        return None
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount)}.get(unit)
        delta = delta or timedelta(days=amount * (7 if unit == "w" else 1))
        return (now - delta).replace(tzinfo=None)
    try:
        local = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date, a date and time, or an age like 3d") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone) if zone is not None else local.astimezone()
    return local.astimezone(UTC).replace(tzinfo=None)


def _filter(where: Where, since, until, caller, number, end_reason, all_instances: bool = True):
    from records.privacy import number_hash
    from records.queries import CallFilter

    return CallFilter(
        since=parse_when(since, zone=where.zone),
        until=parse_when(until, zone=where.zone),
        caller=caller,
        # a masked caller (RECORDS_MASK_CALLERS) is found by the full number's hash
        caller_hash=number_hash(caller, where.hash_key.reveal()) if caller else None,
        number=number,
        end_reason=end_reason,
        instance=None if all_instances else where.instance,
    )


def _as_json(row: dict) -> dict:
    from records.export import jsonable

    return {key: jsonable(value) for key, value in row.items()}


# --- db


@db_app.command("upgrade")
def db_upgrade(env_file: EnvFile = None) -> None:
    """Create or migrate the call history's tables to this version (the installer runs it)."""
    from records.migrate import current, head, upgrade

    where = Where(env_file)
    database = where.database
    if database.is_sqlite:
        Path(database.url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = where.engine(migrated=False)
    try:
        before = current(engine)
        upgrade(engine)
    except Exception as exc:
        raise _fail(f"cannot migrate the call history at {database}: {_short(exc)}") from None
    after = head()
    if before == after:
        typer.echo(f"call history at {database}: up to date (revision {after})")
    else:
        typer.echo(f"call history at {database}: migrated from {before or 'empty'} to {after}")


@db_app.command("mask-existing")
def db_mask_existing(
    instance: Annotated[
        str | None, typer.Option(help="Only this instance's calls (default: every call in the database).")
    ] = None,
    env_file: EnvFile = None,
) -> None:
    """Mask the caller numbers of calls stored before RECORDS_MASK_CALLERS was turned on."""
    from records.queries import mask_callers

    where = Where(env_file)
    if not where.mask_callers:
        raise _fail("RECORDS_MASK_CALLERS is off: turn it on (with RECORDS_HASH_KEY) first", 2)
    try:
        masked = mask_callers(
            where.engine(), where.mask_keep_digits, where.hash_key.reveal(), instance=instance
        )
    except Exception as exc:  # noqa: BLE001 -- the database's error, shown short, password masked
        raise _fail(f"cannot mask the call history at {where.database}: {_short(exc)}") from None
    typer.echo(
        f"masked the caller numbers of {masked} calls (last {where.mask_keep_digits} digits kept;"
        " `callbridge calls --caller FULL_NUMBER` still finds them)"
    )


# --- calls

SUMMARY_WIDTH = 60  # characters of a call's summary in the list (`calls show` has it whole)


@calls_app.callback(invoke_without_command=True)
def calls_list(
    ctx: typer.Context,
    since: Since = None,
    until: Until = None,
    caller: Annotated[
        str | None, typer.Option(help="The caller's number contains this, or is this full number.")
    ] = None,
    number: Annotated[str | None, typer.Option(help="The number dialled contains this.")] = None,
    end_reason: Annotated[str | None, typer.Option(help="e.g. caller_hangup, worker_crashed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100000, help="At most this many, newest first.")] = 50,
    as_json: AsJson = False,
    env_file: EnvFile = None,
) -> None:
    """Recent calls, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from records.queries import recent_calls

    where = Where(env_file)
    where.say()
    rows = recent_calls(
        where.engine(read_only=True), _filter(where, since, until, caller, number, end_reason), limit
    )
    if as_json:
        typer.echo(json.dumps([_as_json(row) for row in rows], indent=1, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no calls")
        return
    typer.echo(
        f"{'started':<19}  {'call':<24} {'caller':<16} {'dialled':<10} {'secs':>7}  {'end':<16} summary"
    )
    for row in rows:
        mark = "" if row["complete"] else " (rebuilt after a crash)"
        summary = " ".join(row["summary"].split())
        summary = summary if len(summary) <= SUMMARY_WIDTH else summary[: SUMMARY_WIDTH - 3] + "..."
        typer.echo(
            f"{local_time(row['started_at'], where.zone):<19}  {row['call_id'][:24]:<24} {row['caller'][:16]:<16} "
            f"{row['dialled'][:10]:<10} {row['duration_s']:>7.1f}  {row['end_reason'] + mark:<16} {summary}".rstrip()
        )


@calls_app.command("show")
def calls_show(
    call_id: Annotated[str, typer.Argument(help="The call id (see `callbridge calls`).")],
    instance: Annotated[str | None, typer.Option(help="Only this instance's call of that id.")] = None,
    as_json: AsJson = False,
    env_file: EnvFile = None,
) -> None:
    """One call with its transcript."""
    from records.queries import find_calls

    where = Where(env_file)
    found = find_calls(where.engine(read_only=True), call_id, instance)
    if not found:
        raise _fail(f"no call {call_id!r} in the call history")
    if as_json:
        typer.echo(json.dumps([_as_json(call) for call in found], indent=1, ensure_ascii=False))
        return
    for call in found:
        for line in call_lines(call, where.zone):
            typer.echo(line)


@calls_app.command("export")
def calls_export(
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    since: Since = None,
    until: Until = None,
    caller: Annotated[str | None, typer.Option(help="The caller's number contains this.")] = None,
    number: Annotated[str | None, typer.Option(help="The number dialled contains this.")] = None,
    end_reason: Annotated[str | None, typer.Option(help="Only calls that ended so.")] = None,
    env_file: EnvFile = None,
) -> None:
    """Every matching call, oldest first: CSV (one row per call) or JSON lines (with turns)."""
    from records.export import write_csv
    from records.queries import find_calls, iter_calls

    if fmt not in ("csv", "jsonl"):
        raise _fail("--format is csv or jsonl", 2)
    where = Where(env_file)
    where.say()
    engine = where.engine(read_only=True)
    out = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        rows = iter_calls(engine, _filter(where, since, until, caller, number, end_reason))
        if fmt == "csv":
            write_csv(out, rows)
        else:
            for row in list(rows):
                full = find_calls(engine, row["call_id"], row["instance"])[0]
                out.write(json.dumps(_as_json(full), ensure_ascii=False) + "\n")
    finally:
        if output:
            out.close()


@calls_app.command("import")
def calls_import(
    directory: Annotated[Path, typer.Argument(help="A CALL_RECORDS_DIR: one JSON file per call.")],
    instance: Annotated[
        str | None, typer.Option(help="The instance the calls belong to (default: this one).")
    ] = None,
    env_file: EnvFile = None,
) -> None:
    """Store today's CALL_RECORDS_DIR JSON files in the call history (again is harmless)."""
    from records.legacy import from_call_record
    from records.store import store_record

    if not directory.is_dir():
        raise _fail(f"{directory} is not a directory")
    where = Where(env_file)
    where.say()
    if where.database.is_sqlite:  # a new embedded history is made here, as the service makes it
        from records.migrate import upgrade
        from records.store import open_engine

        Path(where.database.url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = open_engine(where.database)
        upgrade(engine)
    else:  # a server's schema is `callbridge db upgrade`'s (the engine says so when it is missing)
        engine = where.engine()
    added = present = bad = 0
    for path in sorted(directory.glob("*.json")):
        try:
            record = from_call_record(
                json.loads(path.read_text(encoding="utf-8")), instance or where.instance, path.stat().st_mtime
            )
            new = store_record(engine, record)
        except (OSError, KeyError, TypeError, ValueError) as exc:
            typer.echo(f"callbridge: skipping {path.name}: {exc}", err=True)
            bad += 1
            continue
        added += new
        present += not new
    typer.echo(f"imported {added} calls, {present} were there already, {bad} files skipped")
    if bad:
        raise typer.Exit(1)


def usage_command(
    per: Annotated[str, typer.Option(help="day or month.")] = "day",
    since: Since = None,
    until: Until = None,
    as_json: AsJson = False,
    env_file: EnvFile = None,
) -> None:
    """Calls, minutes, tokens and cost per day or month (in RECORDS_TIMEZONE)."""
    from records.queries import CallFilter, usage

    if per not in ("day", "month"):
        raise _fail("--per is day or month", 2)
    where = Where(env_file)
    where.say()
    when = CallFilter(since=parse_when(since, zone=where.zone), until=parse_when(until, zone=where.zone))
    rows = usage(where.engine(read_only=True), per, when, zone=where.zone)
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no calls")
        return
    typer.echo(
        f"{per:<10} {'calls':>6} {'minutes':>8} {'in audio':>9} {'in text':>8} {'out audio':>9} {'out text':>8}"
        f" {'transcr. min':>12} {'transcr. cost':>13}  cost"
    )
    for row in rows:
        cost = f"{row['cost']:.4f} {row['currency']}" if row["cost"] is not None else "-"
        spoken = f"{row['transcription_cost']:.4f}" if row["transcription_cost"] is not None else "-"
        typer.echo(
            f"{row['period']:<10} {row['calls']:>6} {row['minutes']:>8.1f} {row['input_audio_tokens']:>9} "
            f"{row['input_text_tokens']:>8} {row['output_audio_tokens']:>9} {row['output_text_tokens']:>8}"
            f" {row['transcription_minutes']:>12.2f} {spoken:>13}  {cost}"
        )


def register(app: typer.Typer) -> None:
    from callbridge.cli import recording_commands  # noqa: F401 -- `calls audio`, `calls erase`

    app.add_typer(db_app, name="db")
    app.add_typer(calls_app, name="calls")
    app.command("usage")(usage_command)
