"""What operators install: the installer (into a staging root), the systemd unit, and the
environment template."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from callbridge import config as cfg
from callbridge.cli import app
from supervisor.service import END_GRACE, HELPERS_WAIT, TICK

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "openai-inbound-calls.service"
INSTALLER = REPO / "install_service.sh"
# Variables the code reads that are not callbridge settings: systemd's and the shell's.
SYSTEM_VARIABLES = {
    "NOTIFY_SOCKET",
    "CONTROL_SOCKET_PATH",
    "EDITOR",
    "PYTHON",
}


REQUIRED = {"ASTERISK_USERNAME": "u", "ASTERISK_PASSWORD": "pw-1234", "OPENAI_API_KEY": "sk-1"}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name.upper()} IS NOT INSTALLED: run scripts/setup-e2e.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def _installer_value(name: str) -> str:
    """A plain `NAME=value` assignment of the installer (no shell expansion)."""
    match = re.search(rf"^{name}=(\S+)", INSTALLER.read_text(), re.MULTILINE)
    assert match, f"install_service.sh sets no {name}"
    return match.group(1)


def _within(path: str, folders: list[str]) -> bool:
    return any(Path(path).is_relative_to(folder) for folder in folders)


def test_unit_starts_what_the_installer_installs():
    unit = _unit_settings()
    user = _installer_value("APP_USER")
    # The service's user; its files the operators' group's; the env file's group as well
    assert unit["User"] == [user] and unit["Group"] == [_installer_value("OPS_GROUP")]
    assert unit["SupplementaryGroups"] == [user] and unit["StateDirectoryMode"] == ["2750"]
    # install_service.sh: the program in $PREFIX/venv, PREFIX=/opt/callbridge, the
    # configuration in /etc/callbridge, the documents in $PREFIX/share.
    assert "PREFIX=$(path /opt/callbridge)" in INSTALLER.read_text()
    env_file = "/etc/callbridge/" + _installer_value("ENV_FILE").split("/")[-1]
    assert unit["ExecStart"] == [f"/opt/callbridge/venv/bin/callbridge run --env-file {env_file}"]
    assert "run" in {command.name for command in app.registered_commands}  # `callbridge run`
    assert "ENV_DIR=$(path /etc/callbridge)" in INSTALLER.read_text()
    # One parser for the env file: callbridge's, never systemd's as well (issue 22, item 10).
    assert "EnvironmentFile" not in unit
    for document in unit["Documentation"][0].split():
        name = document.removeprefix("file:/opt/callbridge/share/")
        assert name != document and f'"$PREFIX/share/{name}"' in INSTALLER.read_text(), document


def test_unit_fits_how_the_service_behaves():
    unit = _unit_settings()
    # The supervisor itself sends READY=1 and WATCHDOG=1 (supervisor/systemd.py); workers
    # never do, so only the main process may notify.
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    # WATCHDOG=1 goes out every TICK of the loop: the watchdog must tolerate a few slow ticks.
    assert int(unit["WatchdogSec"][0]) >= 10 * TICK
    # A configuration error is not cured by restarting.
    assert unit["Restart"] == ["on-failure"]
    assert str(cfg.EX_CONFIG) in unit["RestartPreventExitStatus"][0].split()
    # SIGTERM to the supervisor only: it drains, then ends its workers itself. With the
    # default KillMode every worker would get SIGTERM at once and end its call mid-sentence.
    assert unit["KillMode"] == ["mixed"] and unit["KillSignal"] == ["SIGTERM"]
    # One process killed for memory must not stop the unit (and with it every call).
    assert unit["OOMPolicy"] == ["continue"]
    # `systemctl reload` is a SIGHUP to the supervisor alone (Supervisor.reload); no call ends.
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    drain = int(cfg.load(environ=REQUIRED).settings.drain_timeout_seconds)
    # The drain, then the workers' ending, then the helpers a caller waits on (turned-away
    # callers, teardowns): systemd must not kill them first.
    assert int(unit["TimeoutStopSec"][0]) > drain + END_GRACE + HELPERS_WAIT
    # Asterisk may run on another host: order after it when it is here, never require it.
    assert "asterisk.service" in unit["After"][0].split() and "Requires" not in unit
    # The control socket (AF_UNIX), sd_notify (AF_UNIX), ARI, RTP and OpenAI (IPv4 and IPv6).
    assert set(unit["RestrictAddressFamilies"][0].split()) >= {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_every_path_the_service_writes_is_writable_under_the_unit():
    """ProtectSystem=strict makes the whole file system read-only except the directories
    the unit names: the default control socket and the paths docs/operations.md tells
    operators to use must lie inside them."""
    unit = _unit_settings()
    assert unit["ProtectSystem"] == ["strict"]
    writable = [
        f"/run/{unit['RuntimeDirectory'][0]}",
        f"/var/lib/{unit['StateDirectory'][0]}",
        f"/var/log/{unit['LogsDirectory'][0]}",
    ]
    paths = [cfg.load(environ=REQUIRED).settings.control_socket_path]
    documented = re.findall(
        r"`(?:LOG_FILE_PATH|CALL_RECORDS_DIR)=(/[^`\s]+)`", (REPO / "docs/operations.md").read_text()
    )
    assert len(documented) == 2, documented
    paths += documented
    assert [path for path in paths if not _within(path, writable)] == []


def assert_systemd_accepts(unit_file: Path, name: str, tmp_path: Path) -> None:
    """`systemd-analyze verify` is clean and `security` scores at most 2.0 for the unit
    `name` made from `unit_file` (a template's instance name, or the unit's own)."""
    analyze = _tool("systemd-analyze")
    fake = tmp_path / "callbridge"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    unit = tmp_path / name
    unit.write_text(unit_file.read_text().replace("/opt/callbridge/venv/bin/callbridge", str(fake)))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(unit_file, root / "etc/systemd/system" / unit_file.name)
    security = subprocess.run(
        [analyze, "security", "--offline=true", f"--root={root}", name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score, security.stdout[-1000:] + security.stderr
    assert float(score.group(1)) <= 2.0, f"exposure {score.group(1)}"


def test_unit_passes_systemd_analyze_verify_and_security(tmp_path):
    assert_systemd_accepts(UNIT, UNIT.name, tmp_path)


def test_installer_is_shellcheck_clean():
    shellcheck = _tool("shellcheck")
    scripts = [INSTALLER, *sorted((REPO / "scripts").glob("*.sh")), REPO / ".ci/run"]
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


def _install(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(INSTALLER), "--root", str(root), "--non-interactive", *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _ids(root: Path) -> tuple[int, int]:
    user = next(
        line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("callbridge:")
    )
    _, _, uid, gid, *_ = user.split(":")
    return int(uid), int(gid)


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="the installer needs root (chown)")
def test_installer_into_a_staging_root_is_idempotent_and_keeps_the_config(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    first = _install(root)
    assert first.returncode == 0, first.stdout + first.stderr
    uid, gid = _ids(root)
    assert 100 <= uid < 1000 and 100 <= gid < 1000
    program = root / "opt/callbridge/venv/bin/callbridge"
    version = subprocess.run([str(program), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("callbridge ")
    env_file = root / "etc/callbridge/callbridge.env"
    info = env_file.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640 and (info.st_uid, info.st_gid) == (0, gid)
    # The operators' group and its env file, with no secret in it (issue 22, item 6).
    ops_gid = int(_group_line(root, "callbridge-operators").split(":")[2])
    folder = env_file.parent.stat()  # the service and the operators enter; the files decide the rest
    assert stat.S_IMODE(folder.st_mode) == 0o750 and (folder.st_uid, folder.st_gid) == (0, ops_gid)
    ops_env = root / "etc/callbridge/operators.env"
    info = ops_env.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640 and (info.st_uid, info.st_gid) == (0, ops_gid)
    assert "PASSWORD=" not in ops_env.read_text().replace("PASSWORD@", "")
    assert env_file.read_text() == (REPO / ".env.example").read_text()
    unit = root / "etc/systemd/system/openai-inbound-calls.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644 and unit.read_text() == UNIT.read_text()
    assert "skipped daemon-reload and enable" in first.stdout
    # The call history is migrated as the service user with its env file; a staging root
    # cannot (its paths are the target's), so it prints the command the target runs.
    migrate = "runuser -u callbridge -- /opt/callbridge/venv/bin/callbridge db upgrade"
    assert f"skipped migrating the call history; on the target run: {migrate}" in first.stdout
    assert "--env-file /etc/callbridge/callbridge.env" in first.stdout
    # The operator edits the configuration; a second run changes nothing of it. An operator
    # added the old way (to the service's group) is moved to the operators' group.
    env_file.write_text("ASTERISK_PASSWORD=my-real-password\n")
    env_file.chmod(0o600)
    groups = root / "etc/group"
    groups.write_text(groups.read_text().replace(f"callbridge:x:{gid}:\n", f"callbridge:x:{gid}:alice,bob\n"))
    second = _install(root)
    assert second.returncode == 0, second.stdout + second.stderr
    assert env_file.read_text() == "ASTERISK_PASSWORD=my-real-password\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640  # permissions are put right again
    assert "kept the existing configuration" in second.stdout
    assert _group_line(root, "callbridge") == f"callbridge:x:{gid}:"
    assert _group_line(root, "callbridge-operators") == f"callbridge-operators:x:{ops_gid}:alice,bob"
    assert "moved operators from the group callbridge to callbridge-operators: alice bob" in second.stdout
    for table in ("passwd", "group"):
        entries = [
            line for line in (root / "etc" / table).read_text().splitlines() if line.startswith("callbridge:")
        ]
        assert len(entries) == 1, f"{table}: {entries}"
    removed = _install(root, "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists() and not (root / "opt/callbridge").exists() and env_file.exists()


def _group_line(root, name: str) -> str:
    [line] = [g for g in (root / "etc/group").read_text().splitlines() if g.split(":")[0] == name]
    return line


def test_installer_rejects_unknown_options():
    result = subprocess.run(
        ["bash", str(INSTALLER), "--frobnicate"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0 and "unknown option: --frobnicate" in result.stderr


def test_every_variable_the_code_reads_is_in_the_env_template():
    example = (REPO / ".env.example").read_text()
    read = set()
    pattern = re.compile(r"""(?:os\.environ(?:\.get)?[\[(]|os\.getenv\()\s*["']([A-Z_][A-Z0-9_]*)["']""")
    for folder in ("callbridge", "supervisor", "call_worker", "shm_ring"):
        for source in (REPO / folder).rglob("*.py"):
            read.update(pattern.findall(source.read_text()))
    read.update(var.name for var in cfg.VARIABLES)
    undocumented = sorted(name for name in read - SYSTEM_VARIABLES if f"{name}=" not in example)
    assert undocumented == []
    assert "NOTIFY_SOCKET" in read  # the scan does see environment reads
