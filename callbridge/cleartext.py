"""The one rule for credentials on the wire: never in the clear, except to this machine.

Every channel that carries a credential is judged here, once: ARI (Basic auth, on every
request and the events link), the Realtime URL (the API key in a header), webhooks (a
token in the URL, a header), SMTP with a login. Sent in the clear to another host, anyone
on the path can read it. Loopback is the exception: nothing leaves the machine. A host
*name* is never resolved here (a check must not wait on DNS, and a name can change what it
points to): only `localhost` and loopback address literals count as loopback.

`exposures` lists the channels that would break the rule, by variable; config refuses them
(callbridge/config.py::_relations) unless ALLOW_PLAINTEXT_CREDENTIALS=true, an operator's
explicit "I know, it is a private link", which `check` and the start-up log still mention.
Later channels (a Live URL, call webhooks, HTTP and MCP tools with secret headers, a web
listener off loopback) are judged by the same `is_loopback` and `exposures`.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    host = (host or "").strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clear_url_host(url: str, clear_schemes: tuple[str, ...]) -> str | None:
    """The host `url` would reach in the clear (its scheme is one of `clear_schemes`) when
    that host is not loopback; else None."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in clear_schemes or is_loopback(parts.hostname or ""):
        return None
    return parts.hostname or "?"


def exposures(
    asterisk_host: str,
    asterisk_tls: bool,
    realtime_url: str,
    webhook_urls: list[str],
    smtp_url: str,
    call_webhook_urls: list[str] = (),
    live_url: str = "",
    responses_url: str = "",
) -> list[tuple[str, str]]:
    """(variable, what is wrong) for each credential that would cross the network in the
    clear. Never quotes a URL (it may hold a token): a webhook is named by its place."""
    found = []
    if not asterisk_tls and not is_loopback(asterisk_host):
        found.append(
            (
                "ASTERISK_TLS",
                f"is false, but ASTERISK_HOST {asterisk_host} is another host: the ARI password would "
                "cross the network in the clear (set ASTERISK_TLS=true, with ASTERISK_CA_FILE for a "
                "private CA)",
            )
        )
    if clear_url_host(realtime_url, ("ws", "http")):
        found.append(
            ("OPENAI_REALTIME_URL", "is ws:// to another host: the API key would be sent in the clear")
        )
    if live_url and clear_url_host(live_url, ("ws", "http")):
        found.append(("OPENAI_LIVE_URL", "is ws:// to another host: the API key would be sent in the clear"))
    if responses_url and clear_url_host(responses_url, ("http",)):  # only while summaries are on
        found.append(
            ("OPENAI_RESPONSES_URL", "is http:// to another host: the API key would be sent in the clear")
        )
    for position, url in enumerate(webhook_urls, 1):
        if clear_url_host(url, ("http",)):
            found.append(
                (
                    "ALERT_WEBHOOKS",
                    f"webhook {position} is http:// to another host: its URL and token go in the clear",
                )
            )
    for position, url in enumerate(call_webhook_urls, 1):
        if clear_url_host(url, ("http",)):
            found.append(
                (
                    "CALL_WEBHOOKS",
                    f"webhook {position} is http:// to another host: the call's record goes in the clear",
                )
            )
    parts = urlsplit(smtp_url.strip()) if smtp_url.strip() else None
    if (
        parts is not None
        and parts.scheme == "smtp+insecure"
        and parts.username
        and not is_loopback(parts.hostname or "")
    ):
        found.append(
            (
                "ALERT_SMTP_URL",
                "is smtp+insecure:// with a login to another host: the password goes in the clear",
            )
        )
    return found


def exposures_for(settings) -> list[tuple[str, str]]:
    """The same rule over loaded settings (callbridge/config.py::Settings)."""
    return exposures(
        settings.asterisk_host,
        settings.asterisk_tls,
        settings.openai_realtime_url,
        [hook.url.reveal() for hook in settings.alert_webhooks],
        settings.alert_smtp_url.reveal(),
        [target.url.reveal() for target in settings.call_webhooks],
        settings.openai_live_url,
        settings.openai_responses_url if settings.summary_model else "",
    )
