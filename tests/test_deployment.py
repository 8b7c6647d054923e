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

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "openai-inbound-calls.service"
INSTALLER = REPO / "install_service.sh"
# Variables the code reads that are not callbridge settings: systemd's and the shell's.
SYSTEM_VARIABLES = {
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CONTROL_SOCKET_PATH",
    "EDITOR",
    "PYTHON",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name.upper()} IS NOT INSTALLED: run scripts/setup-e2e.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _unit_settings() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_unit_has_what_operations_need():
    unit = _unit_settings()
    assert unit["Type"] == ["notify"] and unit["WatchdogSec"] == ["30"]
    assert unit["Restart"] == ["on-failure"] and unit["RestartPreventExitStatus"] == ["78"]
    assert "asterisk.service" in unit["After"][0] and "Requires" not in unit
    assert unit["KillMode"] == ["mixed"] and int(unit["TimeoutStopSec"][0]) > 30  # room for the drain
    assert "MemoryMax" in unit and "MemoryLimit" not in unit and "LimitNOFILE" in unit
    assert unit["User"] == ["callbridge"] and unit["EnvironmentFile"] == ["/etc/callbridge/callbridge.env"]
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["RuntimeDirectory"] == ["callbridge"]
    assert cfg.load(
        environ={"ASTERISK_USERNAME": "u", "ASTERISK_PASSWORD": "pw-1234", "OPENAI_API_KEY": "sk-1"}
    ).settings.control_socket_path.startswith("/run/callbridge/")


def test_unit_passes_systemd_analyze_verify_and_security(tmp_path):
    analyze = _tool("systemd-analyze")
    fake = tmp_path / "callbridge"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/callbridge/venv/bin/callbridge", str(fake)))
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    security = subprocess.run(
        [analyze, "security", "--offline=true", f"--root={root}", UNIT.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score, security.stdout[-1000:] + security.stderr
    assert float(score.group(1)) <= 2.0, f"exposure {score.group(1)}"


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
    folder = env_file.parent.stat()
    assert stat.S_IMODE(folder.st_mode) == 0o750 and (folder.st_uid, folder.st_gid) == (0, gid)
    assert env_file.read_text() == (REPO / ".env.example").read_text()
    unit = root / "etc/systemd/system/openai-inbound-calls.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644 and unit.read_text() == UNIT.read_text()
    assert "skipped daemon-reload and enable" in first.stdout
    # The operator edits the configuration; a second run changes nothing of it.
    env_file.write_text("ASTERISK_PASSWORD=my-real-password\n")
    env_file.chmod(0o600)
    second = _install(root)
    assert second.returncode == 0, second.stdout + second.stderr
    assert env_file.read_text() == "ASTERISK_PASSWORD=my-real-password\n"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640  # permissions are put right again
    assert "kept the existing configuration" in second.stdout
    for table in ("passwd", "group"):
        entries = [
            line for line in (root / "etc" / table).read_text().splitlines() if line.startswith("callbridge:")
        ]
        assert len(entries) == 1, f"{table}: {entries}"
    removed = _install(root, "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not unit.exists() and not (root / "opt/callbridge").exists() and env_file.exists()


def test_installer_rejects_unknown_options(tmp_path):
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
    assert {"NOTIFY_SOCKET", "WATCHDOG_USEC"} <= read  # the scan does see environment reads
