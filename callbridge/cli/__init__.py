"""The `callbridge` command line (typer).

Exit codes: 0 success; 1 a command's own failure (explained on stderr); 2 usage error
(typer's); 78 configuration error (EX_CONFIG: the systemd unit does not restart on it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Annotated

import typer

from callbridge import __version__, logs
from callbridge import config as cfg
from shm_ring import wire

app = typer.Typer(
    name="callbridge",
    help="Answer Asterisk calls with an OpenAI Realtime voice agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: typer's boxed help shows every flag as taking a <bool> value (with
    # the click it runs on here), and plain text fits a terminal and a pipe alike.
    rich_markup_mode=None,
)

EnvFileOption = Annotated[
    str | None,
    typer.Option(
        "--env-file",
        metavar="PATH",
        help="Env file to read (default: ./.env, else /etc/callbridge/callbridge.env, else /etc/callbridge/operators.env).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` on stderr and return the Exit to raise."""
    typer.echo(f"callbridge: {message}", err=True)
    return typer.Exit(code)


def config_failure(exc: cfg.ConfigError) -> typer.Exit:
    """Print every problem, one stderr line each naming its variable; return the EX_CONFIG exit."""
    for error in exc.errors:
        typer.echo(f"callbridge: configuration error: {error}", err=True)
    return typer.Exit(cfg.EX_CONFIG)


def load_or_exit(env_file: str | None) -> cfg.Loaded:
    try:
        return cfg.load(env_file)
    except cfg.ConfigError as exc:
        raise config_failure(exc) from None


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"callbridge {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Answer Asterisk calls with an OpenAI Realtime voice agent."""


@app.command("config")
def config_command(
    env_file: EnvFileOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration, secrets masked, and where each value came from.

    Bad or missing values are marked with what is wrong; then the exit status is 78."""
    try:
        checked = cfg.check(env_file)
    except cfg.ConfigError as exc:  # the env file itself: there is no table to show
        raise config_failure(exc) from None
    from callbridge.agent_file import problems_of

    entries = checked.entries
    agents = problems_of(checked)
    file_problems = checked.file.problems if checked.file else []
    if as_json:
        shown = {}
        for e in entries:
            shown[e.var.name] = {"value": e.shown(), "source": e.source}
            if e.problem is not None:
                shown[e.var.name]["problem"] = e.problem
        # lower case: never a variable's name
        shown["env_file"] = {
            "path": str(checked.env_file or ""),
            "problems": file_problems,
            "notes": checked.notes(),
        }
        shown["agents_file"] = {"problems": agents}
        typer.echo(json.dumps(shown, indent=2))
    else:
        typer.echo(f"env file: {checked.env_file or '(none)'}")
        width = max(len(e.var.name) for e in entries)
        for e in entries:
            value = e.shown()
            value = value if len(value) <= 60 else value[:57] + "..."
            mark, problem = ("✗", f"  {e.problem}") if e.problem is not None else (" ", "")
            typer.echo(f"{mark} {e.var.name:<{width}}  {value:<40}  ({e.source}){problem}".rstrip())
        _echo_file_findings(checked, agents)
    bad = [error.variable for error in checked.errors()] + (["AGENTS_FILE"] if agents else [])
    if bad:
        typer.echo(f"callbridge: {len(bad)} configuration problem(s), marked ✗: {', '.join(bad)}", err=True)
        raise typer.Exit(cfg.EX_CONFIG)


def _echo_file_findings(checked: cfg.Checked, agents: list[str]) -> None:
    """The env file's unreadable lines and unknown names, and the agents file's problems."""
    for problem in checked.file.problems if checked.file else []:
        typer.echo(f"✗ env file: {problem}", err=True)
    for note in checked.notes():
        typer.echo(f"! env file: {note}", err=True)
    for problem in agents:
        typer.echo(f"✗ agents: {problem}", err=True)


def _control_path(env_file: str | None, socket_path: str | None) -> str:
    """--socket, else CONTROL_SOCKET_PATH as the environment or the env file say: only that
    variable is needed (an operator's operators.env has no credentials, and needs none)."""
    if socket_path:
        return socket_path
    try:
        checked = cfg.check(env_file)
    except cfg.ConfigError:
        return os.environ.get("CONTROL_SOCKET_PATH", "/run/callbridge/control.sock")
    entry = next(e for e in checked.entries if e.var.name == "CONTROL_SOCKET_PATH")
    if entry.problem is None and entry.value:
        return entry.value
    return os.environ.get("CONTROL_SOCKET_PATH", "/run/callbridge/control.sock")


def _not_running(where: str) -> typer.Exit:
    """The service is not there: say where we looked and how to look elsewhere. The sentence
    names callbridge itself, so it goes without fail()'s "callbridge: " prefix."""
    typer.echo(
        f"callbridge is not running ({where}; use --socket PATH or CONTROL_SOCKET_PATH for another instance)",
        err=True,
    )
    return typer.Exit(1)


def _ask(path: str, request: dict) -> dict:
    try:
        return wire.request(path, request)
    except FileNotFoundError:
        raise _not_running(f"no control socket at {path}") from None
    except ConnectionRefusedError:  # a socket file left behind, nobody behind it
        raise _not_running(f"nobody listens on {path}") from None
    except PermissionError:
        raise fail(
            f"permission denied on {path}: run as root or as a member of the service's group"
        ) from None
    except (OSError, wire.WireError) as exc:
        raise fail(f"cannot talk to callbridge at {path}: {exc}") from None


SocketOption = Annotated[
    str | None,
    typer.Option(
        "--socket", help="Control socket (default: CONTROL_SOCKET_PATH).", show_default=False, metavar="PATH"
    ),
]


@app.command("run")
def run_command(env_file: EnvFileOption = None) -> None:
    """Run the service (what systemd starts): answer calls until SIGTERM."""
    loaded = load_or_exit(env_file)
    settings = loaded.settings
    logs.setup(settings.log_level, settings.log_format, settings.log_file_path)
    for note in loaded.notes:  # in the journal too, not only in `config`
        logging.getLogger("callbridge.config").warning("env file: %s", note)
    from callbridge.agents import load_book
    from supervisor.service import Supervisor

    try:
        agents = load_book(settings)  # an invalid agents file stops the start, like any setting
    except cfg.ConfigError as exc:
        raise config_failure(exc) from None
    try:
        code = Supervisor(settings, agents).run()
    except OSError as exc:
        logging.getLogger("callbridge").error("cannot start: %s", exc)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command("status")
def status_command(
    env_file: EnvFileOption = None,
    socket_path: SocketOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every second until Ctrl-C.")] = False,
) -> None:
    """Show the supervisor and every live call."""
    from supervisor.commands import status

    path = _control_path(env_file, socket_path)
    while True:
        reply = _ask(path, {"cmd": "status"})
        if not reply.get("ok"):
            raise fail(reply.get("error", "status failed"))
        text = json.dumps(reply, indent=2) if as_json else status.render(reply)
        if not watch:
            typer.echo(text)
            return
        typer.echo("\x1b[2J\x1b[H" + text)
        try:
            time.sleep(1)
        except KeyboardInterrupt:
            return


@app.command("hangup")
def hangup_command(
    call_id: Annotated[str | None, typer.Argument(help="The call to end (see `callbridge status`).")] = None,
    all_calls: Annotated[bool, typer.Option("--all", help="End every live call.")] = False,
    env_file: EnvFileOption = None,
    socket_path: SocketOption = None,
) -> None:
    """End a live call (the caller is hung up), or all of them."""
    from supervisor.commands import hangup

    if bool(call_id) == all_calls:
        raise fail("give a CALL_ID or --all", 2)
    request = {"cmd": "hangup", "all": True} if all_calls else {"cmd": "hangup", "call_id": call_id}
    reply = _ask(_control_path(env_file, socket_path), request)
    if not reply.get("ok"):
        raise fail(reply.get("error", "hangup failed"))
    typer.echo(hangup.render(reply))


@app.command("check")
def check_command(
    env_file: EnvFileOption = None,
    offline: Annotated[bool, typer.Option("--offline", help="Skip the Realtime handshake.")] = False,
) -> None:
    """Pre-flight: configuration, the agents file, ARI, the app name, Realtime, model shutdown dates, RTP ports, paths."""
    from callbridge.agent_file import problems_of
    from callbridge.agents import load_book
    from callbridge.cli.check import run_checks

    try:
        checked = cfg.check(env_file)
    except cfg.ConfigError as exc:  # the env file itself
        raise config_failure(exc) from None
    # The environment's problems and the agents file's, in one pass: both are configuration.
    errors = checked.errors() + [cfg.ConfigError("AGENTS_FILE", p) for p in problems_of(checked)]
    for note in checked.notes():
        typer.echo(f"! env file: {note}", err=True)
    if errors:  # what `run` would refuse to start with (EX_CONFIG), each on its line
        for error in errors:
            typer.echo(f"callbridge: configuration error: {error}", err=True)
        raise typer.Exit(cfg.EX_CONFIG)
    loaded = cfg.loaded_from(checked)
    typer.echo(f"✓ configuration: read from {loaded.env_file or 'the environment'}")
    failed = 0
    book = load_book(loaded.settings)
    where = book.source or "the environment (no AGENTS_FILE)"
    typer.echo(f"✓ agents: {len(book.agents)} from {where}: {', '.join(book.agents)}")
    for result in run_checks(loaded.settings, offline=offline):
        mark = "✗" if not result.ok else "!" if result.warning else "✓"
        typer.echo(f"{mark} {result.name}: {result.detail}", err=not result.ok or result.warning)
        failed += not result.ok
    if offline:
        typer.echo("- Realtime, model shutdown dates: skipped (--offline)")
    if failed:
        raise fail(f"{failed} check(s) failed")


@app.command("agents")
def agents_command(
    env_file: EnvFileOption = None,
    number: Annotated[
        str | None, typer.Option("--number", help="Say which agent answers this dialled number.")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="At this time (ISO 8601; without an offset: RECORDS_TIMEZONE's).", show_default=False
        ),
    ] = None,
) -> None:
    """List the agents (AGENTS_FILE, docs/agents.md); with --number, who answers it and why."""
    from callbridge.agent_descriptions import describe_book, describe_choice, parse_at
    from callbridge.agents import load_book

    try:  # which agent answers needs no credentials: it talks to nobody
        settings = cfg.load_without_credentials(env_file).settings
    except cfg.ConfigError as exc:
        raise config_failure(exc) from None
    try:
        book = load_book(settings)
    except cfg.ConfigError as exc:
        raise config_failure(exc) from None
    try:
        when = parse_at(at, settings.records_timezone)
    except ValueError as exc:
        raise fail(f"--at: {exc}", 2) from None
    if number is None:
        typer.echo(describe_book(book))
    else:
        typer.echo(describe_choice(book, number, when))


@app.command("demo")
def demo_command(
    calls: Annotated[int, typer.Option("--calls", min=1, max=50, help="Concurrent calls to place.")] = 3,
    seconds: Annotated[float, typer.Option("--seconds", min=8, max=600, help="Length of each call.")] = 12,
) -> None:
    """Run everything on this machine with the built-in simulators: no Asterisk, no key."""
    from callbridge.cli.demo import run_demo

    raise typer.Exit(run_demo(calls, seconds, echo=typer.echo))


from callbridge.cli import records_commands  # noqa: E402 -- after `app`, which it extends

records_commands.register(app)

from callbridge.cli import alert_commands  # noqa: E402 -- likewise

alert_commands.register(app)

from callbridge.cli import web_commands  # noqa: E402 -- likewise

web_commands.register(app)


def main() -> None:
    app(prog_name="callbridge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
