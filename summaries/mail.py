"""The summary e-mails: one call's summary and fields, or a batch of calls in one message,
to the addresses its agent names (`[agents.NAME.summary] email`), through the alerts' SMTP
server (callbridge/smtp.py, ALERT_SMTP_URL and ALERT_EMAIL_FROM).

Plain text, one block per call: when, who called which number, which agent, how long and
how it ended, the summary, then each field. What the record keeps is all it holds: the
caller's number as stored (masked with RECORDS_MASK_CALLERS), never the transcript.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from callbridge import smtp
from callbridge.alert_settings import Email
from callbridge.summary_spec import field_text


def block(entry: dict, zone=None) -> str:
    """One call's lines; its time in `zone` (RECORDS_TIMEZONE; None: the machine's)."""
    started = entry.get("started_at")
    when = (
        datetime.fromtimestamp(float(started), UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")
        if isinstance(started, int | float)
        else "-"
    )
    caller = entry.get("caller") or "unknown"
    if entry.get("caller_name"):
        caller = f"{entry['caller_name']} <{caller}>"
    lines = [
        f"{when}  {caller} -> {entry.get('dialled') or '-'}  agent {entry.get('agent') or '-'}",
        f"{float(entry.get('duration_s') or 0):.0f} s, ended: {entry.get('end_reason') or '-'}"
        f"  (call {entry.get('call_id')})",
        "",
        str(entry.get("summary") or ""),
    ]
    fields = entry.get("fields") if isinstance(entry.get("fields"), dict) else {}
    if fields:
        lines.append("")
        lines += [f"  {name}: {field_text(value)}" for name, value in fields.items()]
    return "\n".join(lines)


def message(email: Email, entries: list[dict], instance: str, zone=None) -> EmailMessage:
    message = EmailMessage()
    if len(entries) == 1:
        entry = entries[0]
        subject = f"[callbridge {instance}] call from {entry.get('caller') or 'unknown'}: {entry.get('summary') or ''}"
    else:
        subject = f"[callbridge {instance}] {len(entries)} calls summarized"
    message["Subject"] = " ".join(subject.split())[:150]
    message["From"] = email.sender
    message["To"] = ", ".join(email.recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid("callbridge")
    message.set_content("\n\n----\n\n".join(block(entry, zone) for entry in entries) + "\n")
    return message


def send(email: Email, addresses, entries: list[dict], instance: str, zone=None) -> tuple[bool, str]:
    """`email`: the alerts' channel (its server, account and sender); `addresses` take the
    place of its recipients."""
    channel = replace(email, recipients=tuple(addresses))
    return smtp.send(channel, message(channel, entries, instance, zone))
