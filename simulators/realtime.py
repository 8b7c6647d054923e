"""A simulated OpenAI Realtime server (WebSocket), for the demo, tests and benchmarks.

    python -m simulators.realtime --port 0 [--api-key KEY] [--reply echo|tone] [--speed 5]

prints {"port": N} on its first line. Behaviour: see realtime_session.py. Faults are
injected per connection, for the next `count` connections, through the control URL
(plain GET on the same port):

    /sim/faults?kind=invalid_key|model_not_found|drop|expire|slow_accept&after=SECONDS&count=N
    /sim/sessions            every session's recorded events with timestamps (JSON)
    /sim/reset               forget sessions and faults

Real-service behaviour copied here: a beta-shaped connection (OpenAI-Beta header) gets
`beta_api_shape_disabled` then close 4000 unless --allow-beta; `session_expired` then
close 1001; a bad key gets `invalid_api_key` and the connection is closed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from simulators.realtime_session import ReplyOptions, Session


@dataclass
class Fault:
    kind: str
    after: float = 0.0
    count: int = 1


@dataclass
class SessionRecord:
    number: int
    path: str
    beta: bool
    opened: float
    events: list = field(default_factory=list)
    closed: float | None = None
    close_code: int | None = None

    def add(self, direction: str, event: dict) -> None:
        self.events.append([time.monotonic(), direction, event])


class SimulatedRealtime:
    def __init__(
        self,
        api_key: str = "sk-sim",
        allow_beta: bool = False,
        models=("gpt-realtime",),
        reply: ReplyOptions | None = None,
    ) -> None:
        self.api_key = api_key
        self.allow_beta = allow_beta
        self.models = set(models)
        self.reply = reply or ReplyOptions()
        self.lock = threading.Lock()
        self.sessions: list[SessionRecord] = []
        self.faults: list[Fault] = []

    def take_fault(self) -> Fault | None:
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            fault.count -= 1
            if fault.count <= 0:
                self.faults.pop(0)
            return fault

    # --- HTTP control and handshake checks

    def process_request(self, connection: ServerConnection, request):
        url = urlparse(request.path)
        if url.path.startswith("/sim/"):
            return self._control(connection, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()})
        return None

    def _control(self, connection, path: str, query: dict):
        if path == "/sim/faults":
            fault = Fault(query["kind"], float(query.get("after", 0)), int(query.get("count", 1)))
            with self.lock:
                self.faults.append(fault)
            return connection.respond(HTTPStatus.OK, json.dumps({"queued": fault.kind}) + "\n")
        if path == "/sim/sessions":
            with self.lock:
                body = [s.__dict__ for s in self.sessions]
            return connection.respond(HTTPStatus.OK, json.dumps(body) + "\n")
        if path == "/sim/reset":
            with self.lock:
                self.sessions.clear()
                self.faults.clear()
            return connection.respond(HTTPStatus.OK, "{}\n")
        return connection.respond(HTTPStatus.NOT_FOUND, "unknown control path\n")

    # --- a connection

    def handler(self, ws: ServerConnection) -> None:
        request = ws.request
        beta = request.headers.get("OpenAI-Beta", "") == "realtime=v1"
        with self.lock:
            record = SessionRecord(len(self.sessions) + 1, request.path, beta, time.monotonic())
            self.sessions.append(record)
        fault = self.take_fault()
        session = Session(ws.send, record.add, beta, self.reply)
        try:
            self._run(ws, request, session, record, fault)
        except ConnectionClosed:
            pass
        finally:
            record.closed = time.monotonic()
            record.close_code = record.close_code or (ws.close_code if ws.close_code is not None else None)
            if session.active is not None:
                session.active.cancelled.set()

    @staticmethod
    def _garbage(ws, after: float, count: int = 1000) -> None:
        """Malformed and unexpected server events, as a broken proxy or a new API version
        might send: bad JSON, missing fields, wrong types, bad base64, unknown types."""
        time.sleep(after)
        samples = [
            "{not json",
            "[]",
            "null",
            '"text"',
            '{"no_type": 1}',
            '{"type": 7}',
            '{"type": "response.output_audio.delta"}',
            '{"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "@@@"}',
            '{"type": "response.created", "response": "not an object"}',
            '{"type": "response.done", "response": {}}',
            '{"type": "input_audio_buffer.speech_stopped", "audio_end_ms": "soon"}',
            '{"type": "error", "error": null}',
            '{"type": "error"}',
            '{"type": "some.future.event", "data": {"x": 1}}',
            '{"type": "conversation.item.input_audio_transcription.completed", "transcript": 5}',
        ]
        try:
            for index in range(count):
                ws.send(samples[index % len(samples)])
                if index % 100 == 99:
                    time.sleep(0.005)
        except ConnectionClosed:
            pass

    def _close(self, ws, record: SessionRecord, code: int, reason: str) -> None:
        record.close_code = code
        ws.close(code, reason)

    def _run(self, ws, request, session: Session, record: SessionRecord, fault: Fault | None) -> None:
        if fault and fault.kind == "garbage":
            threading.Thread(target=self._garbage, args=(ws, fault.after), daemon=True).start()
            fault = None
        if fault and fault.kind == "slow_accept":
            time.sleep(fault.after)
            fault = None
        model = parse_qs(urlparse(request.path).query).get("model", [""])[0]
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}" or (fault and fault.kind == "invalid_key"):
            session.error("invalid_api_key", "Incorrect API key provided.", "invalid_request_error")
            return self._close(ws, record, 1008, "invalid api key")
        if record.beta and not self.allow_beta:
            session.error(
                "beta_api_shape_disabled",
                "The beta Realtime API shape has been disabled. Use the GA shape.",
                "invalid_request_error",
            )
            return self._close(ws, record, 4000, "beta api shape disabled")
        if model not in self.models or (fault and fault.kind == "model_not_found"):
            session.error("model_not_found", f"The model '{model}' does not exist or you do not have access.")
            return self._close(ws, record, 1008, "model not found")
        session.send(
            {
                "type": "session.created",
                "session": {"id": f"sess_sim{record.number}", "model": model, "type": "realtime"},
            }
        )
        deadline = time.monotonic() + fault.after if fault and fault.kind in ("drop", "expire") else None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                message = ws.recv(timeout=timeout)
            except TimeoutError:
                if fault.kind == "expire":
                    session.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
                    return self._close(ws, record, 1001, "session expired")
                record.close_code = 1006
                ws.socket.close()  # abrupt: no close frame, like a network failure
                return
            if isinstance(message, bytes):
                session.error("invalid_request_error", "Binary frames are not supported.")
                continue
            session.handle(message)


def start(host: str = "127.0.0.1", port: int = 0, **options):
    sim = SimulatedRealtime(**options)
    server = serve(
        sim.handler,
        host,
        port,
        process_request=sim.process_request,
        compression=None,
        max_size=16 * 1024 * 1024,
        ping_interval=None,
    )
    return server, sim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Simulated OpenAI Realtime server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-sim")
    parser.add_argument("--allow-beta", action="store_true")
    parser.add_argument("--reply", choices=["tone", "echo"], default="tone")
    parser.add_argument("--reply-ms", type=int, default=2000)
    parser.add_argument("--greeting-ms", type=int, default=1500)
    parser.add_argument("--speed", type=float, default=5.0)
    args = parser.parse_args(argv)
    # Many threads (callers, connections) share one GIL here; a short switch interval keeps
    # the timestamps this simulator records close to the real arrival times.
    sys.setswitchinterval(0.0005)
    reply = ReplyOptions(
        mode=args.reply, reply_ms=args.reply_ms, greeting_ms=args.greeting_ms, speed=args.speed
    )
    server, _ = start(args.host, args.port, api_key=args.api_key, allow_beta=args.allow_beta, reply=reply)
    print(json.dumps({"port": server.socket.getsockname()[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
