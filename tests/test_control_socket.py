"""The control socket and the CLI against a real `callbridge run`: who may connect, what a
hostile or confused client gets, and the commands operators use."""

from __future__ import annotations

import os
import re
import socket
import stat
import struct
import time

import pytest

from shm_ring import wire

pytestmark = pytest.mark.slow


def _as_nobody(action, groups: list[int] = ()) -> bytes:
    """Run `action()` in a child with uid/gid 65534 (and the supplementary `groups`); return
    what it wrote back."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.setgroups(list(groups))
            os.setgid(65534)
            os.setuid(65534)
            result = action()
        except Exception as exc:  # report, don't raise, in the child
            result = f"{type(exc).__name__}: {exc}".encode()
        os.write(write_end, result)
        os._exit(0)
    os.close(write_end)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    return data


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_control_socket_refuses_other_users(service):
    import tempfile

    public = tempfile.mkdtemp(prefix="cbtest-sock-")  # every ancestor traversable by others
    os.chmod(public, 0o755)
    svc = service(CONTROL_SOCKET_PATH=os.path.join(public, "control.sock"))
    mode = stat.S_IMODE(os.stat(svc.socket).st_mode)
    assert mode == 0o660

    def connect() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(svc.socket)
            return b"connected"

    assert b"PermissionError" in _as_nobody(connect)  # the file mode stops it first
    os.chmod(svc.socket, 0o666)  # even so, the peer-credential check refuses it

    def ask() -> bytes:
        return str(wire.request(svc.socket, {"cmd": "status"})).encode()

    answer = _as_nobody(ask)
    assert b"permission denied" in answer and b"calls" not in answer
    assert "refused a client" in svc.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_member_of_the_service_s_group_by_supplementary_group_is_an_operator(service):
    """`usermod -aG GROUP NAME` makes GROUP a supplementary group; the check used to read only
    the peer's primary gid and refused such an operator (issue 22, item 5)."""
    import subprocess
    import sys
    import tempfile

    public = tempfile.mkdtemp(prefix="cbtest-sock-")
    os.chmod(public, 0o755)
    svc = service(CONTROL_SOCKET_PATH=os.path.join(public, "control.sock"))
    group = os.getegid()  # the service's group (root's, in the tests)

    def ask() -> bytes:
        return str(wire.request(svc.socket, {"cmd": "status"})).encode()

    answer = _as_nobody(ask, groups=[group])
    assert b"'ok': True" in answer and b"calls" in answer
    # The real CLI, as such a user: uid and primary gid nobody, the group supplementary.
    cli = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            f"--groups={group}",
            sys.executable,
            "-m",
            "callbridge.cli",
            "status",
            "--socket",
            svc.socket,
        ],
        env=svc.env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=public,
    )
    assert cli.returncode == 0, cli.stderr
    assert "ARI connected" in cli.stdout and "no live calls" in cli.stdout
    assert b"PermissionError" in _as_nobody(ask, groups=[12345])  # another group: the file mode...
    os.chmod(svc.socket, 0o666)
    assert b"permission denied" in _as_nobody(ask, groups=[12345])  # ...and the peer check


def test_control_socket_answers_garbage_with_errors(service):
    svc = service()
    replies = []
    deeply_nested = b"[" * 100_000 + b"]" * 100_000  # RecursionError in json.loads
    for payload in (
        b"not json",
        b"[1,2]",
        b'{"cmd": "launch-missiles"}',
        b'{"cmd": "hangup", "call_id": 5}',
        b'{"cmd": []}',
        b'{"cmd": {"a": 1}}',
        deeply_nested,
    ):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(svc.socket)
            sock.sendall(struct.pack("!I", len(payload)) + payload)
            buffer = bytearray(sock.recv(65536))
            replies.append(wire.decode(wire.split_frames(buffer)[0]))
    assert len(replies) == 7 and all(reply["ok"] is False and reply["error"] for reply in replies)
    assert "unknown command" in replies[2]["error"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:  # a length of 4 GB
        sock.settimeout(5)
        sock.connect(svc.socket)
        sock.sendall(b"\xff\xff\xff\xff")
        assert b"over the" in sock.recv(65536)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # connects and says nothing
    silent.connect(svc.socket)
    assert svc.status()["ok"] is True  # the loop is not blocked by it
    silent.close()
    assert svc.proc.poll() is None


def test_a_client_trickling_its_request_is_dropped(service):
    """A byte every 0.3 s resets any idle timer; the request's own time limit still holds."""
    from supervisor.control import REQUEST_LIMIT

    svc = service()
    trickle = struct.pack("!I", 1000) + b" " * 100  # announces 1000 bytes, sends 100 at most
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(svc.socket)
        sock.settimeout(0.3)
        started = time.monotonic()
        dropped_after = None
        for byte in trickle:
            try:
                sock.send(bytes([byte]))
                if sock.recv(1) == b"":
                    dropped_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: dropped
                dropped_after = time.monotonic() - started
                break
            if time.monotonic() - started > REQUEST_LIMIT + 10:
                break
    assert dropped_after is not None and REQUEST_LIMIT <= dropped_after < REQUEST_LIMIT + 5
    assert "request took over" in svc.log()
    assert svc.status()["ok"] is True


def test_cli_status_and_hangup(service, asterisk):
    svc = service()
    call_id = asterisk.place_call([{"silence": 30000}])
    svc.wait(lambda: svc.call_row(call_id))
    text = svc.cli("status")
    assert text.returncode == 0 and call_id[:20] in text.stdout and "1 live" in text.stdout
    assert re.search(r"loop: longest pass [0-9.]+ ms lately, [0-9]+ over 100 ms since start", text.stdout)
    as_json = svc.cli("status", "--json")
    assert as_json.returncode == 0 and '"calls_live": 1' in as_json.stdout
    unknown = svc.cli("hangup", "no-such-call")
    assert unknown.returncode == 1 and "no live call no-such-call" in unknown.stderr
    ended = svc.cli("hangup", call_id)
    assert ended.returncode == 0
    svc.wait(lambda: asterisk.call(call_id, packets=False)["hangup"] is not None, timeout=5)
    assert "end=operator_hangup" in svc.wait(lambda: "call summary" in svc.log() and svc.log())


def test_cli_says_when_the_service_is_not_running(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "callbridge.cli", "status", "--socket", str(tmp_path / "x.sock")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "not running" in result.stderr


def test_status_fits_80_columns():
    """Issue 22, item 19: a live call's row was about 180 columns wide."""
    from supervisor.commands import status

    reply = {
        "supervisor": {
            "version": "0.1.0",
            "instance": "clinic-night-line",
            "pid": 4194304,
            "uptime_s": 400000.0,
            "ari": "connected",
            "draining": True,
            "models": "warning",
            "calls_live": 1,
            "max_concurrent_calls": 2000,
            "calls_taken": 123456,
            "calls_failed": 12,
            "calls_rejected_busy": 4567,
            "loop_busy_max_ms": 12.5,
            "loop_slow_passes": 3,
            "max_calls_per_caller_per_hour": 10,
            "calls_over_caller_limit": 7,
        },
        "calls": [
            {
                "call_id": "1733412345.4242-long-id",
                "caller": "+34600111222333",
                "dialled": "100200300",
                "agent": "front-desk-night",
                "age_s": 4000,
                "pid": 4194304,
                "phase": "active",
                "api": "realtime",
                "realtime": "reconnecting",
                "cpu_percent": 12.5,
                "uss_mb": None,
                "frames_in": 1234567,
                "frames_out": 1234567,
                "downlink_fill": 1048576,
                "underruns": 12345,
                "barge_ins": 123,
                "tool_calls": 30,
                "transfer": "dialling reception",
                "health": "stale heartbeat",
            }
        ],
    }
    text = status.render(reply)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for fragment in (
        "1733412345.4242-long-id",
        "realtime reconnecting",
        "tool calls 30",
        "health stale heartbeat",
        "uss - MB",
        "underruns 12345",
        "transfer dialling",
    ):
        assert fragment in text, fragment
