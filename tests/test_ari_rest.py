"""The ARI client (callbridge/ari_rest.py, over requests) against a real HTTP server on
loopback: one keep-alive connection, a connection the server closed while idle replaced
before the next request, a request that failed once sent never sent twice (an originate
must not dial twice), errors that name the request and its status but never the password,
ids quoted into their path segment."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from callbridge.ari_rest import AriError, AriRest
from callbridge.secret import Secret

PASSWORD = "s3cret-ari-pass"


class Server:
    """Answers by path; counts connections and requests as they arrive."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, str, str]] = []  # (method, path with query, authorization)
        self.close_after_reply = False
        self.drop_before_reply = False
        self.delay = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def _answer(self) -> None:
                owner.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
                if owner.drop_before_reply:
                    self.close_connection = True
                    return
                time.sleep(owner.delay)
                status, body = owner.reply(self.path)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                if owner.close_after_reply:
                    self.send_header("Connection", "close")
                try:
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up first (the timeout test)
                    self.close_connection = True

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.http.server_address[1]}/ari"

    def reply(self, path: str) -> tuple[int, object]:
        if path.startswith("/ari/asterisk/info"):
            return 200, {"system": {"version": "22.0"}}
        if path.startswith("/ari/channels/gone"):
            return 404, {"message": "Channel not found"}
        if path.startswith("/ari/denied"):
            return 401, {"error": "Authentication required"}
        if path.startswith("/ari/broken"):
            return 500, b"<html>oops</html>"
        return 204, b""

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


def test_requests_share_one_keep_alive_connection(server):
    ari = AriRest(server.base, "callbridge", Secret(PASSWORD))
    for _ in range(5):
        assert ari.info()["system"]["version"] == "22.0"
    ari.answer("1733.42")
    ari.close()
    assert server.connections == 1
    assert len(server.requests) == 6
    assert server.requests[-1][:2] == ("POST", "/ari/channels/1733.42/answer")
    assert all(auth.startswith("Basic ") and PASSWORD not in auth for _, _, auth in server.requests)


def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_request(server):
    ari = AriRest(server.base, "callbridge", Secret(PASSWORD))
    server.close_after_reply = True  # as Asterisk does once session_keep_alive has passed
    ari.info()
    server.close_after_reply = False
    time.sleep(0.05)  # the FIN is in: what the next request must notice
    assert ari.info()["system"]["version"] == "22.0"
    assert ari.info()["system"]["version"] == "22.0"
    assert server.connections == 2
    assert len(server.requests) == 3  # nothing was sent twice


def test_a_request_that_fails_once_sent_is_not_sent_again(server):
    ari = AriRest(server.base, "callbridge", Secret(PASSWORD))
    server.drop_before_reply = True
    with pytest.raises(AriError) as failure:
        ari.originate("Local/100@from-internal/n", "openai-app", "cb.x.tr1.y", "transfer", 20)
    assert failure.value.status is None
    assert failure.value.method == "POST" and failure.value.path == "/channels"
    assert [method for method, _, _ in server.requests] == ["POST"]  # one dial, not two
    server.drop_before_reply = False
    assert ari.info()["system"]["version"] == "22.0"  # the client recovers on a new connection


def test_errors_name_request_and_status_never_the_password(server):
    ari = AriRest(server.base, "callbridge", Secret(PASSWORD))
    assert ari.channel("gone") is None  # 404 with missing_ok
    ari.hangup("gone")  # DELETE of what is gone is success
    with pytest.raises(AriError) as refused:
        ari.request("GET", "/denied")
    assert refused.value.status == 401
    assert "check ASTERISK_USERNAME and ASTERISK_PASSWORD" in str(refused.value)
    with pytest.raises(AriError) as broken:
        ari.request("GET", "/broken")
    assert broken.value.status == 500 and "<html>oops" in str(broken.value)
    with pytest.raises(AriError) as missing:
        ari.request("GET", "/channels/gone")
    assert missing.value.status == 404 and "Channel not found" in str(missing.value)
    for error in (refused.value, broken.value, missing.value):
        assert PASSWORD not in str(error) and PASSWORD not in repr(error.args)


def test_parameters_are_a_query_and_a_hostile_id_stays_in_the_path(server):
    ari = AriRest(server.base, "callbridge", Secret(PASSWORD))
    ari.create_bridge("cb.a.b", "callbridge 17 33")
    ari.set_variable("odd?id#x", "NAME", "a&b=c")
    (_, bridge, _), (_, variable, _) = server.requests
    assert bridge == "/ari/bridges?type=mixing%2Cdtmf_events&bridgeId=cb.a.b&name=callbridge+17+33"
    assert variable == "/ari/channels/odd%3Fid%23x/variable?variable=NAME&value=a%26b%3Dc"
    ari.application("my+app")
    assert server.requests[-1][1] == "/ari/applications/my%2Bapp"  # ARI reads a bare "+" as a space


def test_a_slow_server_is_a_timeout_error_within_the_timeout(server):
    ari = AriRest(server.base, "callbridge", Secret(PASSWORD), timeout=0.3)
    server.delay = 1.5
    began = time.monotonic()
    with pytest.raises(AriError) as slow:
        ari.info()
    assert time.monotonic() - began < 1.2
    assert slow.value.status is None and "timed out" in str(slow.value)


def test_nothing_listening_is_a_network_error(server):
    port = server.http.server_address[1]
    server.close()
    ari = AriRest(f"http://127.0.0.1:{port}/ari", "callbridge", Secret(PASSWORD))
    with pytest.raises(AriError) as down:
        ari.info()
    assert down.value.status is None and "refused" in str(down.value).lower()


def test_ari_over_tls_with_a_private_ca(tmp_path):
    """ASTERISK_CA_FILE (issue 22, item 8): a PBX whose certificate a private CA signed."""
    import ssl

    from testenv import self_signed_certificate

    cert, key = self_signed_certificate(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps({"system": {"version": "22.0.0"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"https://127.0.0.1:{server.server_address[1]}/ari"
    try:
        trusted = AriRest(base, "u", Secret(PASSWORD), ca_file=str(cert))
        assert trusted.info()["system"]["version"] == "22.0.0"
        trusted.close()
        untrusted = AriRest(base, "u", Secret(PASSWORD))
        with pytest.raises(AriError) as refused:
            untrusted.info()
        assert "SSLError" in str(refused.value) and PASSWORD not in str(refused.value)
        untrusted.close()
    finally:
        server.shutdown()
        server.server_close()
