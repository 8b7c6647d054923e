"""`callbridge check`: the pre-flight of the seed's start script, done properly.

Each check prints one line: a pass, a warning, or exactly what is wrong and how to fix it.
The command exits non-zero when any check fails (78 when the configuration itself is
invalid, which `callbridge.cli` handles before these checks run); warnings do not fail it.
The model lines come from callbridge/model_lifecycle.py: a model whose shutdown date has
come fails, one within 60 days warns, and so does a key that may not read models (403).
"""

from __future__ import annotations

import os
import random
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from call_worker.adapter import ConnectError, MalformedEvent, ServiceError, SettingsApplied, adapter_for
from callbridge import model_lifecycle
from callbridge.agents import load_book
from callbridge.ari_rest import AriError, AriRest
from callbridge.config import ConfigError, Settings
from callbridge.env_file import PLACEHOLDERS
from callbridge.netaddr import rtp_bind_address
from callbridge.secret import SHORT
from shm_ring import wire

PORT_SAMPLE = 20


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passes, but the operator should act (ok is True)


def run_checks(settings: Settings, offline: bool = False) -> Iterator[Result]:
    checks: list[Callable[[Settings], Result | list[Result]]] = [check_secrets, check_ari, check_app_name]
    if not offline:
        checks += [check_realtime, check_models]
    checks += [check_rtp, check_paths, check_recordings, check_summaries, check_plaintext, check_capacity]
    failed: set[str] = set()
    for check in checks:
        if check is check_app_name and "ARI" in failed:
            continue  # it would only say again that ARI cannot be reached
        try:
            outcome = check(settings)
        except Exception as exc:  # a check must report, never crash the command
            outcome = Result(
                check.__name__.removeprefix("check_"), False, f"unexpected {type(exc).__name__}: {exc}"
            )
        results = outcome if isinstance(outcome, list) else [outcome]
        failed.update(r.name for r in results if not r.ok)
        yield from results


def check_secrets(settings: Settings) -> Result:
    left = [
        name
        for name, secret in (
            ("ASTERISK_PASSWORD", settings.asterisk_password),
            ("OPENAI_API_KEY", settings.openai_api_key),
        )
        if secret.reveal() in PLACEHOLDERS
    ]
    if left:
        return Result(
            "configuration",
            False,
            f"{', '.join(left)} still hold the .env.example placeholder: set the real values",
        )
    short = short_passwords(settings)
    if short:
        return Result(
            "configuration",
            True,
            f"{', '.join(short)}: shorter than {SHORT} characters (guessed quickly, and the logs "
            "redact short values poorly): use a long random one",
            warning=True,
        )
    return Result("configuration", True, "loaded; secrets set")


def check_capacity(settings: Settings) -> Result:
    """Warns (never fails) when MAX_CONCURRENT_CALLS cannot fit the memory and tasks the
    unit (or this machine) allows (callbridge/capacity.py)."""
    from callbridge import capacity

    unit = (
        f"openai-inbound-calls@{settings.instance_id}.service"
        if settings.instance_id
        else "openai-inbound-calls.service"
    )
    limits = capacity.effective(
        [capacity.unit_limits(unit), capacity.cgroup_limits(), capacity.machine_limits()]
    )
    found = capacity.problems(settings.max_concurrent_calls, limits)
    if found:
        return Result("capacity", True, "; ".join(found), warning=True)
    fit = limits.calls_that_fit()
    room = f"about {fit} calls fit ({limits.source})" if fit is not None else "no memory or task limit found"
    return Result("capacity", True, f"MAX_CONCURRENT_CALLS={settings.max_concurrent_calls}: {room}")


def check_plaintext(settings: Settings) -> Result:
    """Refused at load unless ALLOW_PLAINTEXT_CREDENTIALS=true (callbridge/cleartext.py);
    allowed, it is still said here."""
    from callbridge.cleartext import exposures_for

    found = exposures_for(settings)
    if not found:
        return Result("credentials on the wire", True, "encrypted, or to this machine only")
    names = ", ".join(dict.fromkeys(name for name, _ in found))
    return Result(
        "credentials on the wire",
        True,
        f"in the clear to another host ({names}), allowed by ALLOW_PLAINTEXT_CREDENTIALS=true",
        warning=True,
    )


def short_passwords(settings: Settings) -> list[str]:
    """The settings whose password is set but short."""
    from urllib.parse import unquote, urlsplit

    found = []
    ari = settings.asterisk_password.reveal()
    if ari and len(ari) < SHORT:
        found.append("ASTERISK_PASSWORD")
    if settings.database_url is not None:
        db = settings.database_url.password()
        if db and len(db) < SHORT:
            found.append("DATABASE_URL's password")
    smtp = settings.alert_smtp_url.reveal()
    if smtp:
        password = unquote(urlsplit(smtp).password or "")
        if password and len(password) < SHORT:
            found.append("ALERT_SMTP_URL's password")
    return found


def check_ari(settings: Settings) -> Result:
    ari = AriRest.for_settings(settings, timeout=5)
    try:
        info = ari.info()
    except AriError as exc:
        if exc.status == 401:
            fix = "ASTERISK_USERNAME/ASTERISK_PASSWORD do not match a user in ari.conf"
        elif exc.status is None:
            fix = (
                f"cannot reach {settings.ari_base_url}: is Asterisk running, http.conf enabled on that "
                "address, and ASTERISK_HOST/ASTERISK_PORT right?"
            )
        else:
            fix = f"ARI answered HTTP {exc.status}: is ARI enabled in ari.conf?"
        return Result("ARI", False, fix)
    finally:
        ari.close()
    version = ((info or {}).get("system") or {}).get("version", "?")
    return Result(
        "ARI",
        True,
        f"{settings.ari_base_url} reachable, user {settings.asterisk_username} accepted (Asterisk {version})",
    )


def _service_running(settings: Settings) -> bool:
    try:
        return bool(wire.request(settings.control_socket_path, {"cmd": "status"}, timeout=2).get("ok"))
    except (OSError, wire.WireError):
        return False


def check_app_name(settings: Settings) -> Result:
    ari = AriRest.for_settings(settings, timeout=5)
    try:
        app = ari.application(settings.ari_app_name)
    except AriError as exc:
        return Result("ARI app", False, f"cannot ask ARI about app {settings.ari_app_name}: {exc}")
    finally:
        ari.close()
    if app is None:
        return Result("ARI app", True, f"{settings.ari_app_name} is free")
    if _service_running(settings):
        return Result("ARI app", True, f"{settings.ari_app_name} is held by this callbridge (running)")
    return Result(
        "ARI app",
        False,
        f"another program is connected as app {settings.ari_app_name}: stop it "
        "(the old script?) or choose another ARI_APP_NAME and the same name in Stasis()",
    )


def check_realtime(settings: Settings) -> Result:
    """A real handshake through the worker's own adapter (call_worker/adapter.py): connect,
    send the opening (Realtime's session.update, GPT-Live's session.start), wait for its
    acknowledgement or an error."""
    adapter = adapter_for(settings)
    live = settings.openai_api == "live"
    name, url = ("GPT-Live", settings.openai_live_url) if live else ("Realtime", settings.openai_realtime_url)
    accepted = Result(name, True, f"{url} accepted the key and model {settings.openai_realtime_model}")
    try:
        link = adapter.connect(10, "cb_check")
    except ConnectError as exc:
        return Result(name, False, str(exc))
    deadline = time.monotonic() + 10
    try:
        # GPT-Live's opener waited for session.started already: its acknowledgement is due.
        if any(isinstance(event, SettingsApplied) for event in adapter.poll(time.monotonic())):
            return accepted
        while link.closed is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return Result(name, False, "no answer to the opening within 10 s")
            select.select([link], [link] if link.wants_write else [], [], left)
            link.flush()
            for _is_text, message in link.receive():
                try:
                    events = adapter.events(message)
                except MalformedEvent:
                    continue
                for event in events:
                    if isinstance(event, SettingsApplied):
                        return accepted
                    if isinstance(event, ServiceError):
                        return Result(name, False, f"{event.code}: {event.fix or event.message}")
        return Result(name, False, f"the service closed the connection ({link.closed.reason})")
    finally:
        for text in adapter.closing():
            link.send_text(text)
        link.close()


_MODEL_NAMES = {
    "OPENAI_REALTIME_MODEL": "Realtime model",
    "OPENAI_LIVE_BACKEND_MODEL": "GPT-Live backend model",
    "OPENAI_TRANSCRIPTION_MODEL": "transcription model",
    "SUMMARY_MODEL": "summary model",
}


def check_models(settings: Settings) -> list[Result]:
    """One line per configured model: its announced shutdown date, from OpenAI's model lookup."""
    names = (
        {**_MODEL_NAMES, "OPENAI_REALTIME_MODEL": "GPT-Live model"}
        if settings.openai_api == "live"
        else _MODEL_NAMES
    )
    try:
        agents = tuple(load_book(settings).agents.values())  # their own models are in use too
    except ConfigError:
        agents = ()  # the agents line of this check names what is wrong with the file
    return [
        Result(
            names.get(
                found.variable, f"{found.variable.removeprefix('agents.').removesuffix('.model')}'s model"
            ),
            found.level != model_lifecycle.FAILURE,
            found.detail,
            warning=found.level == model_lifecycle.WARNING,
        )
        for found in model_lifecycle.check_models(settings, agents=agents)
    ]


def check_rtp(settings: Settings) -> Result:
    try:
        address = rtp_bind_address(settings.local_ip_address, settings.asterisk_host)
    except OSError as exc:
        return Result(
            "RTP", False, f"no route to ASTERISK_HOST {settings.asterisk_host} ({exc}): set LOCAL_IP_ADDRESS"
        )
    low, high = settings.rtp_port_range
    ports = list(range(low, high + 1))
    sample = ports if len(ports) <= PORT_SAMPLE else random.sample(ports, PORT_SAMPLE)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    free = 0
    for port in sample:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((address, port))
            except OSError as exc:
                if exc.errno == 99:  # EADDRNOTAVAIL: not an address of this host
                    return Result("RTP", False, f"LOCAL_IP_ADDRESS {address} is not an address of this host")
                continue
            free += 1
    if free == 0:
        return Result(
            "RTP",
            False,
            f"no free UDP port among {len(sample)} tried in RTP_PORT_RANGE {low}-{high}: "
            "choose another range",
        )
    source = "LOCAL_IP_ADDRESS" if settings.local_ip_address else "the route towards ASTERISK_HOST"
    return Result(
        "RTP", True, f"{address} ({source}), {free} of {len(sample)} sampled ports in {low}-{high} free"
    )


def _recording_agents(settings: Settings) -> list:
    """The agents whose calls are recorded (their `record`, else RECORD_CALLS)."""
    from callbridge.agents import default_agent, load_book
    from callbridge.config import ConfigError

    try:
        book = load_book(settings)
    except ConfigError:  # the agents check says what is wrong with the file
        return [default_agent(settings)] if settings.record_calls else []
    return [agent for agent in book.agents.values() if agent.apply(settings).record_calls]


def check_recordings(settings: Settings) -> Result:
    """Recording a call is the operator's to announce: the agent's notice is where callers
    hear it (docs/agents.md). A recorded agent without one is a warning, not a failure."""
    recorded = _recording_agents(settings)
    if not recorded:
        return Result("recordings", True, "off (RECORD_CALLS, agents' record)")
    silent = [agent.name for agent in recorded if not agent.notice]
    days = settings.recordings_retention
    where = f"{settings.recordings_path}, " + (f"deleted after {days} days" if days else "kept until erased")
    if silent:
        return Result(
            "recordings",
            True,
            f"calls of {', '.join(silent)} are recorded but their notice is empty: callers are not told"
            f" (set `notice` in the agents file, docs/agents.md); {where}",
            warning=True,
        )
    return Result("recordings", True, f"{len(recorded)} agents recorded, each says so in its notice; {where}")


def check_summaries(settings: Settings) -> Result:
    """Post-call summaries: on or off, which agents pull out fields or mail them, and whether
    their model has a price (else their cost is not in the estimates or the budgets)."""
    from callbridge.agents import load_book
    from callbridge.config import ConfigError

    try:
        agents = list(load_book(settings).agents.values())
    except ConfigError:  # the agents check says what is wrong with the file
        agents = []
    declared = [agent.name for agent in agents if agent.summary is not None and agent.summary.enabled]
    model = settings.summary_model
    if not model:
        if declared:
            return Result(
                "summaries",
                True,
                f"off, but {', '.join(declared)} declare [agents.NAME.summary]: set SUMMARY_MODEL to summarize their calls",
                warning=True,
            )
        return Result("summaries", True, "off (SUMMARY_MODEL)")
    with_fields = [a.name for a in agents if a.summary is not None and a.summary.enabled and a.summary.fields]
    mailing = [a.name for a in agents if a.summary is not None and a.summary.enabled and a.summary.email]
    parts = [f"{model} through {settings.openai_responses_url}"]
    parts.append(f"fields: {', '.join(with_fields)}" if with_fields else "no agent declares fields")
    if mailing:
        parts.append(f"mailed: {', '.join(mailing)}")
    if not settings.records_transcripts:
        return Result(
            "summaries",
            True,
            "; ".join(parts) + ": but RECORDS_TRANSCRIPTS=false keeps no text, so nothing is summarized",
            warning=True,
        )
    if settings.prices.estimate(model, {}) is None:
        return Result(
            "summaries",
            True,
            "; ".join(parts)
            + f": {model} has no price (RECORDS_PRICES), so its cost is in no estimate or budget",
            warning=True,
        )
    return Result("summaries", True, "; ".join(parts))


def _writable_dir(path: Path) -> bool:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def check_paths(settings: Settings) -> Result:
    problems = []
    if settings.log_file_path:
        log = Path(settings.log_file_path)
        try:
            with open(log, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            problems.append(f"LOG_FILE_PATH {log} is not writable ({exc.strerror})")
    if _recording_agents(settings) and not _writable_dir(settings.recordings_path):
        problems.append(f"RECORDINGS_DIR {settings.recordings_path} is not writable")
    if settings.call_records_dir and not _writable_dir(Path(settings.call_records_dir)):
        problems.append(f"CALL_RECORDS_DIR {settings.call_records_dir} is not writable")
    if not _writable_dir(Path(settings.control_socket_path).parent):
        problems.append(f"cannot create the control socket in {Path(settings.control_socket_path).parent}")
    if problems:
        return Result("paths", False, "; ".join(problems))
    return Result("paths", True, "log file, call records and control socket locations writable")
