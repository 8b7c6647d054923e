"""The template unit for several instances on one host (openai-inbound-calls@.service): the
same service as the main unit except for the lines that name the instance, and as clean for
systemd-analyze."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from test_deployment import _tool

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "openai-inbound-calls.service"
TEMPLATE = REPO / "openai-inbound-calls@.service"
# The only settings in which an instance differs from the main unit.
PER_INSTANCE = {
    "Description",
    "ExecStart",
    "EnvironmentFile",
    "Environment",
    "RuntimeDirectory",
    "StateDirectory",
}


def _settings(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


def test_the_template_differs_from_the_unit_only_where_the_instance_is_named():
    unit, template = _settings(UNIT), _settings(TEMPLATE)
    shared = {k: v for k, v in unit.items() if k not in PER_INSTANCE}
    assert {k: v for k, v in template.items() if k not in PER_INSTANCE} == shared
    assert template["ExecStart"] == [
        "/opt/callbridge/venv/bin/callbridge run --env-file /etc/callbridge/%i.env"
    ]
    assert "EnvironmentFile" not in template  # never the default instance's file
    assert sorted(template["Environment"]) == [
        "CONTROL_SOCKET_PATH=/run/callbridge-%i/control.sock",
        "INSTANCE_ID=%i",
    ]
    # Not under the main unit's /run/callbridge: systemd removes that when the main unit
    # stops, and the instance's socket would go with it.
    assert template["RuntimeDirectory"] == ["callbridge-%i"] and template["StateDirectory"] == [
        "callbridge-%i"
    ]


def test_an_instance_of_the_template_passes_systemd_analyze(tmp_path):
    analyze = _tool("systemd-analyze")
    fake = tmp_path / "callbridge"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    instance = tmp_path / "openai-inbound-calls@clinic.service"
    instance.write_text(TEMPLATE.read_text().replace("/opt/callbridge/venv/bin/callbridge", str(fake)))
    verify = subprocess.run([analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(TEMPLATE, root / "etc/systemd/system" / TEMPLATE.name)
    security = subprocess.run(
        [analyze, "security", "--offline=true", f"--root={root}", "openai-inbound-calls@clinic.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score, security.stdout[-1000:] + security.stderr
    assert float(score.group(1)) <= 2.0, f"exposure {score.group(1)}"
