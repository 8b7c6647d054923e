"""`callbridge web ...`: serve the dashboard on its own, and manage its users.

The users live in the records database (records/accounts.py), so these commands need no
running service, and instances sharing a database share them. Every change is in the
audit log under the name `cli:<the Unix user>`. A password is asked twice on the terminal,
or read as one line from standard input with --password-stdin (for scripts; never as an
argument, which `ps` would show to everyone).
"""

from __future__ import annotations

import getpass
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from callbridge.cli.records_commands import EnvFile, Where, _fail, _short

web_app = typer.Typer(
    help="The web dashboard: serve it, and its users.", no_args_is_help=True, rich_markup_mode=None
)
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password as one line from standard input.")
]


def _engine(where: Where):
    """The records database, migrated first when it is the embedded SQLite (as the drainer
    does at start); a server database must have been migrated by `callbridge db upgrade`."""
    from records.migrate import current, head, upgrade
    from records.store import open_engine

    database = where.database
    if database.is_sqlite:
        Path(database.url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = open_engine(database)
    try:
        revision = current(engine)
        if revision != head():
            if not database.is_sqlite:
                raise _fail(
                    f"the database at {database} is at revision {revision or 'none'}, not {head()}: "
                    "run `callbridge db upgrade`"
                )
            upgrade(engine)
    except typer.Exit:
        raise
    except Exception as exc:
        raise _fail(f"cannot open the records database at {database}: {_short(exc)}") from None
    return engine


def _password(from_stdin: bool) -> str:
    from records.accounts import check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise _fail("the two passwords differ", 2)
    try:
        return check_password(password)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


def _who() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _audit(engine, where: Where, action: str, target: str) -> None:
    from records.accounts import audit_event

    audit_event(engine, where.instance, _who(), action, target)


@web_app.command("add-user")
def add_user(
    name: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[str, typer.Option("--role", help="admin (may hang up calls) or viewer.")] = "viewer",
    password_stdin: PasswordStdin = False,
    env_file: EnvFile = None,
) -> None:
    """Add a user of the dashboard."""
    from records.accounts import AccountError, add_user, check_name, check_role

    try:
        check_name(name), check_role(role)
    except AccountError as exc:
        raise _fail(str(exc), 2) from None
    where = Where(env_file)
    engine = _engine(where)
    password = _password(password_stdin)
    try:
        add_user(engine, name, role, password)
    except AccountError as exc:
        raise _fail(str(exc)) from None
    _audit(engine, where, "user_added", f"{name} ({role})")
    typer.echo(f"added {role} {name} to the dashboard's users in {where.database}")


@web_app.command("users")
def users(env_file: EnvFile = None) -> None:
    """List the dashboard's users."""
    from records.accounts import list_users

    where = Where(env_file)
    rows = list_users(_engine(where))
    if not rows:
        typer.echo("no users: `callbridge web add-user NAME --role admin` creates the first")
        return
    for row in rows:
        typer.echo(
            f"{row['name']:24} {row['role']:7} password set {row['password_changed_at']:%Y-%m-%d %H:%M} UTC"
        )


@web_app.command("remove-user")
def remove_user(
    name: Annotated[str, typer.Argument(help="The login name.")], env_file: EnvFile = None
) -> None:
    """Remove a user; their sessions end at once."""
    from records.accounts import remove_user

    where = Where(env_file)
    engine = _engine(where)
    if not remove_user(engine, name):
        raise _fail(f"there is no user {name}")
    _audit(engine, where, "user_removed", name)
    typer.echo(f"removed {name}")


@web_app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The login name.")],
    password_stdin: PasswordStdin = False,
    env_file: EnvFile = None,
) -> None:
    """Set a user's password; every session of theirs ends."""
    from records.accounts import set_password

    where = Where(env_file)
    engine = _engine(where)
    if not set_password(engine, name, _password(password_stdin)):
        raise _fail(f"there is no user {name}")
    _audit(engine, where, "password_set", name)
    typer.echo(f"changed the password of {name}; their sessions have ended")


@web_app.command("serve")
def serve(env_file: EnvFile = None) -> None:
    """Serve the dashboard (WEB_LISTEN) and /metrics (METRICS_LISTEN) in the foreground,
    apart from `callbridge run` (which serves them itself when they are set)."""
    from callbridge import config as cfg
    from callbridge import logs
    from callbridge.cli import config_failure
    from web import helper

    try:  # the dashboard talks to neither Asterisk nor OpenAI: their credentials may be absent
        settings = cfg.load_without_credentials(env_file).settings
    except cfg.ConfigError as exc:
        raise config_failure(exc) from None
    logs.setup(settings.log_level, settings.log_format, settings.log_file_path)
    if not settings.web_listen and not settings.metrics_listen:
        raise _fail("WEB_LISTEN and METRICS_LISTEN are both empty: nothing to serve", 2)
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    logging.getLogger("callbridge").info("web: serving on its own (pid in the journal)")
    helper.run(settings, None, lambda: bool(stopping))


def register(app: typer.Typer) -> None:
    app.add_typer(web_app, name="web")
