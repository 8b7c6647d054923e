"""`callbridge alert test`: one test notice through every configured alert channel.

It runs in the CLI's own process (not the service's), so it works whether or not the
service runs: what it proves is that the channels' settings reach their receivers.
Exit 0 when every channel delivered; 1 when one failed (each outcome on its own line);
78 for a configuration error; 1 when no channel is configured.
"""

from __future__ import annotations

from typing import Annotated

import typer

alert_app = typer.Typer(
    help="Built-in alerts (ALERT_WEBHOOKS, ALERT_SMTP_URL).", no_args_is_help=True, rich_markup_mode=None
)


def register(app: typer.Typer) -> None:
    app.add_typer(alert_app, name="alert")


@alert_app.command("test")
def test_command(
    env_file: Annotated[
        str | None, typer.Option("--env-file", help="Env file to read.", show_default=False, metavar="PATH")
    ] = None,
) -> None:
    """Send a test message through each configured channel and say what became of it."""
    from alerts.conditions import Notice
    from alerts.send import deliver
    from callbridge.cli import fail, load_or_exit

    settings = load_or_exit(env_file).settings
    channels = settings.alert_channels
    if not channels:
        raise fail("no alert channel is configured (ALERT_WEBHOOKS, ALERT_SMTP_URL)")
    notice = Notice("test", "event", "info", "test message from `callbridge alert test`: this channel works")
    failed = 0
    for channel in channels:
        delivered, how = deliver(channel, notice, settings.instance)
        typer.echo(f"{'✓' if delivered else '✗'} {channel.name}: {how}", err=not delivered)
        failed += not delivered
    if failed:
        raise fail(f"{failed} of {len(channels)} alert channels failed")
