"""The template unit for several instances on one host (openai-inbound-calls@.service): the
same service as the main unit except for the lines that name the instance, and as clean for
systemd-analyze."""

from __future__ import annotations

from test_deployment import REPO, UNIT, _unit_settings, assert_systemd_accepts

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


def test_the_template_differs_from_the_unit_only_where_the_instance_is_named():
    unit, template = _unit_settings(UNIT), _unit_settings(TEMPLATE)
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
    assert_systemd_accepts(TEMPLATE, "openai-inbound-calls@clinic.service", tmp_path)
