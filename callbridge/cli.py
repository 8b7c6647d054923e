"""The `callbridge` command line (typer).

Exit codes: 0 success; 1 a command's own failure (explained on stderr); 2 usage error
(typer's); 78 configuration error (EX_CONFIG: the systemd unit does not restart on it).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from callbridge import __version__
from callbridge import config as cfg

app = typer.Typer(
    name="callbridge",
    help="Answer Asterisk calls with an OpenAI Realtime voice agent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EnvFileOption = Annotated[
    str | None,
    typer.Option(
        "--env-file",
        help="Env file to read (default: ./.env, else /etc/callbridge/callbridge.env).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `message` on stderr and return the Exit to raise."""
    typer.echo(f"callbridge: {message}", err=True)
    return typer.Exit(code)


def load_or_exit(env_file: str | None) -> cfg.Loaded:
    try:
        return cfg.load(env_file)
    except cfg.ConfigError as exc:
        raise fail(f"configuration error: {exc}", cfg.EX_CONFIG) from None


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
    """Print the effective configuration, secrets masked, and where each value came from."""
    loaded = load_or_exit(env_file)
    rows = [
        (var.name, cfg.display_value(loaded.settings, var), loaded.sources[var.name]) for var in cfg.VARIABLES
    ]
    if as_json:
        typer.echo(
            json.dumps({name: {"value": value, "source": source} for name, value, source in rows}, indent=2)
        )
        return
    typer.echo(f"env file: {loaded.env_file or '(none)'}")
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        shown = value if len(value) <= 60 else value[:57] + "..."
        typer.echo(f"{name:<{width}}  {shown!s:<40}  ({source})")


def main() -> None:
    app(prog_name="callbridge")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
