"""MCP servers as tool sources (callbridge/mcp_servers.py, call_worker/mcp_calls.py): declared
in the agents file with the tools an agent may use, listed and called through the official
SDK against a real MCP server on loopback (tests/mcp_server.py) that answers, hangs, fails,
answers too much, or refuses a wrong token; then through a worker on the simulated
Realtime server, which calls the tool by script."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from analysis import agent_said
from harness import RealtimeSim, last_session, started
from test_phased_replies import conv  # noqa: F401 -- a conversation with a recording link

from call_worker.http_calls import Outcome
from call_worker.mcp_calls import McpCalls, McpTool
from callbridge import agents
from callbridge import config as cfg
from callbridge.agent_descriptions import describe_book
from callbridge.agent_file import AgentFileError
from callbridge.mcp_servers import McpServer
from callbridge.secret import Secret
from records import spool

TOKEN = "tickets-token-8c2e4a"
BASE = {
    "ASTERISK_HOST": "127.0.0.1",
    "ASTERISK_USERNAME": "u",
    "ASTERISK_PASSWORD": "p",
    "OPENAI_API_KEY": "sk-unit",
}
SERVER = Path(__file__).with_name("mcp_server.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory):
    port, log = free_port(), tmp_path_factory.mktemp("mcp") / "calls.jsonl"
    process = subprocess.Popen([sys.executable, str(SERVER), str(port), TOKEN, str(log)])
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise AssertionError("the MCP server did not start") from None
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/mcp", log
    process.kill()
    process.wait(5)


@pytest.fixture(autouse=True)
def tickets_token(monkeypatch):
    monkeypatch.setenv("TICKETS_TOKEN", TOKEN)


def agent_toml(
    url: str, timeout: float = 3.0, tools='["open_ticket", "slow_lookup", "long_report", "broken"]'
) -> str:
    return textwrap.dedent(
        f"""
        [agents.isp]
        numbers = ["*"]
        instructions = "Soporte de una operadora."

        [agents.isp.mcp.tickets]
        url = "{url}"
        headers = {{ Authorization = "Bearer ${{TICKETS_TOKEN}}" }}
        tools = {tools}
        timeout_seconds = {timeout}
        max_response_bytes = 2048
        filler = "Un momento, abro la incidencia."
        """
    )


def book_of(text: str, tmp_path) -> agents.AgentBook:
    path = tmp_path / "agents.toml"
    path.write_text(text)
    settings = cfg.load(env_file=None, environ=BASE | {"AGENTS_FILE": str(path)}).settings
    return agents.load_book(settings)


# --- the agents file


def test_a_server_is_declared_with_the_tools_the_agent_may_use_and_its_secret_is_never_shown(tmp_path):
    book = book_of(agent_toml("https://mcp.example.net/mcp"), tmp_path)
    [server] = book.agents["isp"].mcp.values()
    assert server.name == "tickets" and server.url.reveal() == "https://mcp.example.net/mcp"
    assert server.tools == ("open_ticket", "slow_lookup", "long_report", "broken")
    assert server.timeout_seconds == 3.0 and server.max_response_bytes == 2048
    assert dict(server.headers)["Authorization"].reveal() == f"Bearer {TOKEN}"
    shown = describe_book(book)
    assert "mcp tickets: mcp.example.net tools open_ticket" in shown and TOKEN not in shown


def test_a_key_in_the_servers_url_comes_from_the_environment_and_is_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("MCP_KEY", "k-9f31c7a2")
    book = book_of(agent_toml("https://mcp.example.net/${MCP_KEY}/mcp"), tmp_path)
    [server] = book.agents["isp"].mcp.values()
    assert server.url.reveal() == "https://mcp.example.net/k-9f31c7a2/mcp"
    assert "k-9f31c7a2" not in describe_book(book) and "k-9f31c7a2" not in repr(server)
    from callbridge.secret import redact

    assert "k-9f31c7a2" not in redact("GET https://mcp.example.net/k-9f31c7a2/mcp")


@pytest.mark.parametrize(
    ("server", "fragment"),
    [
        ('url = "https://m.example/mcp"', "tools: must list the server's tools"),
        ('url = "https://m.example/mcp"\ntools = []', "tools: must list the server's tools"),
        ('url = "ftp://m.example/mcp"\ntools = ["a"]', "must be an http:// or https:// URL"),
        ('url = "https://u:pw@m.example/mcp"\ntools = ["a"]', "must not hold a user or password"),
        ('url = "https://m.example/mcp"\ntools = ["end_call"]', "'end_call' is already a tool"),
        ('url = "https://m.example/mcp"\ntools = ["a b"]', "is not a tool name"),
        ('url = "https://m.example/mcp"\ntools = ["a"]\ntimeout_seconds = 99', "timeout_seconds"),
        ('url = "https://m.example/mcp"\ntools = ["a"]\nheaders = { X = "${NOT_SET_HERE}" }', "NOT_SET_HERE"),
        ('url = "https://m.example/mcp"\ntools = ["a"]\nsecret = 1', "unknown key"),
    ],
)
def test_a_bad_server_declaration_is_named(tmp_path, server, fragment):
    text = f'[agents.isp]\nnumbers = ["*"]\n[agents.isp.mcp.tickets]\n{server}\n'
    with pytest.raises(AgentFileError) as refused:
        book_of(text, tmp_path)
    assert fragment in "\n".join(refused.value.problems), refused.value.problems


def test_a_tool_name_may_not_repeat_an_http_tool_or_another_servers(tmp_path):
    text = textwrap.dedent(
        """
        [agents.isp]
        numbers = ["*"]
        [agents.isp.tools.lookup]
        description = "x"
        url = "https://crm.example/x"
        [agents.isp.mcp.one]
        url = "https://m1.example/mcp"
        tools = ["lookup", "open_ticket"]
        [agents.isp.mcp.two]
        url = "https://m2.example/mcp"
        tools = ["open_ticket"]
        """
    )
    with pytest.raises(AgentFileError) as refused:
        book_of(text, tmp_path)
    problems = "\n".join(refused.value.problems)
    assert "mcp.one.tools: 'lookup' is already a tool" in problems
    assert "mcp.two.tools: 'open_ticket' is already a tool" in problems


# --- the SDK against the real server


class Collected:
    def __init__(self) -> None:
        self.listed: list = []
        self.outcomes: dict[str, Outcome] = {}
        self.changed = threading.Event()

    def on_listed(self, tools) -> None:
        self.listed.append(tools)
        self.changed.set()

    def on_done(self, outcome: Outcome) -> None:
        self.outcomes[outcome.call_id] = outcome
        self.changed.set()

    def wait(self, predicate, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("not within the time")
            self.changed.wait(0.05)
            self.changed.clear()


def server_of(url: str, token: str = TOKEN, timeout: float = 3.0, tools=None) -> McpServer:
    return McpServer(
        "tickets",
        Secret(url),
        tuple(tools or ("open_ticket", "slow_lookup", "long_report", "broken", "not_there")),
        headers=(("Authorization", Secret(f"Bearer {token}")),),
        timeout_seconds=timeout,
        max_response_bytes=2048,
    )


def test_only_the_listed_tools_are_offered_and_each_call_is_answered(mcp_server, caplog):
    url, log = mcp_server
    got = Collected()
    calls = McpCalls((server_of(url),), got.on_listed, got.on_done)
    began = time.monotonic()
    calls.start()
    try:
        got.wait(lambda: got.listed)
        listed_in = time.monotonic() - began
        tools = {t.name: t for t in got.listed[0]}
        assert set(tools) == {"open_ticket", "slow_lookup", "long_report", "broken"}  # not delete_all_tickets
        assert tools["open_ticket"].parameters["required"] == ["customer_id", "summary"]
        assert "does not offer the tool not_there" in caplog.text
        calls.submit("c1", tools["open_ticket"], {"customer_id": "55501", "summary": "sin línea"})
        calls.submit("c2", tools["long_report"], {})
        calls.submit("c3", tools["broken"], {})
        calls.submit("c4", tools["open_ticket"], {"customer_id": 5})  # the server's schema refuses it
        got.wait(lambda: {"c1", "c2", "c3", "c4"} <= set(got.outcomes))
        assert got.outcomes["c1"].output == {"result": {"ticket": "T-1042", "customer_id": "55501"}}
        assert (
            got.outcomes["c1"].detail["outcome"] == "ok" and got.outcomes["c1"].detail["server"] == "tickets"
        )
        long = got.outcomes["c2"].output
        assert long["truncated"] is True and len(long["result"]) == 2048
        assert "error" in got.outcomes["c3"].output and got.outcomes["c3"].detail["outcome"] == "error"
        assert "error" in got.outcomes["c4"].output
        began = time.monotonic()
        calls.submit("c5", tools["slow_lookup"], {"what": "hang"})
        got.wait(lambda: "c5" in got.outcomes, timeout=10)
        assert 3.0 - 0.1 <= time.monotonic() - began < 3.0 + 1.5
        assert got.outcomes["c5"].output == {"error": "slow_lookup did not answer within 3 s"}
        assert got.outcomes["c5"].detail["outcome"] == "timeout"
    finally:
        calls.close()
    print(f"MCP connect and list: {listed_in * 1000:.0f} ms")
    assert listed_in < 5.0
    reached = [json.loads(line)["tool"] for line in log.read_text().splitlines()]
    assert "delete_all_tickets" not in reached and reached.count("open_ticket") >= 1
    assert TOKEN not in caplog.text


def test_a_wrong_token_or_no_server_offers_nothing_and_names_no_secret(mcp_server, caplog):
    url, _ = mcp_server
    for server in (server_of(url, token="wrong-token-1"), server_of(f"http://127.0.0.1:{free_port()}/mcp")):
        got = Collected()
        calls = McpCalls((server,), got.on_listed, got.on_done)
        began = time.monotonic()
        calls.start()
        try:
            deadline = time.monotonic() + 6
            while "its tools are not offered" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "MCP server tickets" in caplog.text and "its tools are not offered" in caplog.text
            assert time.monotonic() - began < 4.5 and got.listed == []
            tool = type("T", (), {"name": "open_ticket", "server": server, "timeout_seconds": 3.0})()
            calls.submit("x", tool, {})  # the model is told at once, not left to its timeout
            assert got.outcomes["x"].output == {"error": "open_ticket is not available now"}
        finally:
            calls.close()
        caplog.clear()
    assert "wrong-token-1" not in caplog.text


# --- through a worker, on the simulated Realtime server


@pytest.fixture(scope="module")
def realtime():
    yield from started(RealtimeSim("--reply-ms", "600", "--greeting-ms", "1500"))


def _script(realtime, name: str, arguments: dict) -> None:
    import requests

    requests.get(
        f"{realtime.base}/sim/tool-calls",
        params={"name": name, "arguments": json.dumps(arguments), "after_turn": 1},
        timeout=5,
    ).raise_for_status()


@pytest.mark.slow
def test_a_worker_offers_the_servers_tools_and_the_model_answers_with_the_result(
    calls, realtime, mcp_server, tmp_path, api
):
    url, log = mcp_server
    path = tmp_path / "agents.toml"
    path.write_text(agent_toml(url))
    sup = calls(AGENTS_FILE=str(path), CALL_RECORDS_DIR=str(tmp_path), STATE_DIR=str(tmp_path / "state"))
    _script(realtime, "open_ticket", {"customer_id": "55501", "summary": "sin línea"})
    call = sup.place([{"say": 800}, {"silence": 6000}, {"hangup": True}])
    assert sup.wait_ended(call, 25) == 0
    session = last_session(realtime)
    assert {"open_ticket", "slow_lookup", "long_report", "broken", "end_call"} <= set(
        session["tools"]["offered"]
    )
    assert "delete_all_tickets" not in session["tools"]["offered"]
    [output] = session["tools"]["outputs"]
    assert json.loads(output["output"]) == {"result": {"ticket": "T-1042", "customer_id": "55501"}}
    said = agent_said(session)
    assert [t for t in said if t.startswith("after tool open_ticket: ")]
    [record_path] = spool.pending_records(sup.settings.spool_dir)
    record = json.loads(record_path.read_text())
    [event] = [e for e in record["events"] if e["kind"] == "tool_call"]
    assert event["detail"]["name"] == "open_ticket" and event["detail"]["server"] == "tickets"
    assert event["detail"]["outcome"] == "ok"
    assert TOKEN not in json.dumps(record)


def test_the_service_and_a_call_without_mcp_never_import_the_sdk():
    # The supervisor imports everything a worker runs (workers are forked from it): the SDK
    # and its HTTP stack must not be among it, so a call without MCP costs what it did.
    code = (
        "import sys; import callbridge.cli, supervisor.service, call_worker.call, call_worker.mcp_calls; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'httpx2', 'anyio', 'pydantic')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- the conversation's side: offering a server's tools, and taking back refused ones


def test_listed_tools_are_offered_and_taken_back_when_the_service_refuses_them(conv):  # noqa: F811
    server = server_of("https://mcp.example.net/mcp")
    tools = [
        McpTool("open_ticket", "Open a ticket", {"type": "object", "properties": {}}, server),
        McpTool("huge", "Too big", {"type": "object", "description": "x" * 20000}, server),
    ]
    conv._offer(tools)
    [update] = [e for e in conv.link.sent if e["type"] == "session.update"]
    names = [t["name"] for t in update["session"]["tools"]]
    assert "open_ticket" in names and "huge" not in names and "end_call" in names  # the whole list
    assert update["event_id"].startswith("cb_tools_") and set(conv.toolbox.mcp_tools) == {"open_ticket"}
    conv._dispatch(
        json.dumps(
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "message": "Invalid schema for function 'open_ticket'",
                    "event_id": update["event_id"],
                },
            }
        )
    )
    assert conv.toolbox.mcp_tools == {} and "open_ticket" not in [t.name for t in conv.adapter.tools]
    assert conv.fatal == []  # the call goes on, without the tool; a later opening will not carry it
