"""A simulated OpenAI Realtime server (WebSocket), for the demo, tests and benchmarks.

    python -m simulators.realtime --port 0 [--api-key KEY] [--reply echo|tone] [--speed 5]
        [--no-metadata]

prints {"port": N} on its first line. Behaviour: see realtime_session.py. Faults are
injected per connection, for the next `count` connections, through the control URL
(plain GET on the same port):

    /sim/faults?kind=invalid_key|model_not_found|insufficient_quota|drop|expire|slow_accept
                &after=SECONDS&count=N
                             insufficient_quota: the session is created, then an
                             `insufficient_quota` error event and a close (an account
                             without quota)
    /sim/faults?kind=refuse_update
                             the session's first session.update is refused with an error
                             naming its event_id (a setting the service will not take)
    /sim/faults?kind=drop&on=EVENT_TYPE&nth=N
                             drop the connection once the server has sent its Nth event of
                             that type (an event, not a clock, so that tests do not race)
    /sim/freeze[?new=0]      stop every open connection dead (see realtime_freeze.py), and new
                             handshakes too unless new=0
    /sim/thaw                end a freeze
    /sim/tool-calls?name=NAME&arguments=JSON&after_turn=N[&count=1]
                             the next `count` sessions opened end the response after the
                             caller's Nth turn (0: the greeting) with this function call, if
                             the tool was offered (see realtime_tools.py)
    /sim/reply?preamble_ms=N&think_ms=M&reply_ms=R&greeting_ms=G
                             replies from now on (every session): phased with a preamble of N
                             ms and M ms of thinking before the answer (0: unphased), replies
                             of R ms, greetings of G ms (see realtime_session.py)
    /sim/sessions            every session's recorded events with timestamps (JSON), and its
                             `tools`: offered, planned, calls made, outputs received
    /sim/reset               forget sessions, faults and queued tool calls; replies as started
    /sim/model-shutdown?model=M&date=YYYY-MM-DD
                             the `shutdown_date` /v1/models answers for M from now on
                             (an empty or missing date: none announced)

GPT-Live is served beside it on `/v1/live/sessions` (simulators/live_session.py), with the
same faults, tool scripts and reply lengths; `/sim/live?lead_ms=&stop_ms=&usage_every=&expires_in=`
sets its own options (the lead a reply is sent with, the model's reaction to a barge-in).

It also answers OpenAI's model lookup, `GET /v1/models/{model}` (plain HTTP, same port),
with the bearer key checked as on the WebSocket path: 401 for a bad key, 404 for a model
it does not know, else the model object with `shutdown_date` (null unless set with
`--model-shutdown MODEL=YYYY-MM-DD`, repeatable; a number is sent as a unix timestamp).
`--models-status 403` answers every lookup with that status, as for a restricted key.

Real-service behaviour copied here: a beta-shaped connection (OpenAI-Beta header) gets
`beta_api_shape_disabled` then close 4000 unless --allow-beta; `session_expired` then
close 1001; a bad key gets `invalid_api_key` and the connection is closed.

One asyncio event loop serves every connection (websockets' asyncio server): a thread per
connection would spend more on hand-offs under the GIL than on the protocol, and the
benchmark needs this load generator to stay light.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlparse

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from simulators.live_session import LIVE_MODELS, LiveOptions, LiveSession
from simulators.realtime_freeze import Freezer, Gate
from simulators.realtime_session import ReplyOptions, Session
from simulators.realtime_tools import SessionTools, ToolScripts

FLUSH_LIMIT = 2.0  # seconds queued events may take to go out before a deliberate close
# Models a session may be opened with: the current GA ones and those OpenAI still serves
# until their shutdown date (gpt-realtime, gpt-realtime-mini: 2027-01-20).
REALTIME_MODELS = ("gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-realtime", "gpt-realtime-mini")
# Models the lookup knows besides those: transcription models, current and retiring.
TRANSCRIPTION_MODELS = (
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-realtime-whisper",
    "gpt-4o-mini-transcribe",
    "gpt-4o-transcribe",
    "whisper-1",
)
# GPT-Live's delegation backends (a Responses model), for the lookup.
BACKEND_MODELS = ("gpt-5.6-luna", "gpt-5.6-luna-mini")
MODEL_CREATED = 1_751_328_000
# GPT-Live-shaped garbage: every one unreadable (none may pass for a real event).
LIVE_GARBAGE = [
    "{not json",
    "[]",
    "null",
    '{"no_type": 1}',
    '{"type": "session.output_audio.delta"}',
    '{"type": "session.output_audio.delta", "delta": "@@@"}',
    '{"type": "session.output_transcript.delta", "delta": null}',
    '{"type": "response.event", "event": "not an object"}',
    '{"type": "response.event", "delegation_id": "d", "event": {"type": "response.output_item.done"}}',
    '{"type": "session.usage.updated", "usage": {"seconds": "soon"}}',
]  # a fixed `created` for every model object


@dataclass
class Fault:
    kind: str
    after: float = 0.0
    count: int = 1
    on: str = ""  # drop after the server's `nth` event of this type (instead of `after`)
    nth: int = 1


@dataclass
class SessionRecord:
    number: int
    path: str
    beta: bool
    opened: float
    events: list = field(default_factory=list)
    closed: float | None = None
    close_code: int | None = None
    tools: dict = field(default_factory=dict)  # the session's SessionTools.state

    def add(self, direction: str, event: dict) -> None:
        self.events.append([time.monotonic(), direction, event])


class Outbox:
    """The connection's outgoing frames, written in order by one task, so that the session's
    synchronous code can send without awaiting."""

    def __init__(self, ws: ServerConnection, gate: Gate) -> None:
        self.ws = ws
        self.gate = gate  # closed while the service is frozen
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.writer = asyncio.get_running_loop().create_task(self._write())

    def put(self, text: str) -> None:
        self.queue.put_nowait(text)

    async def _write(self) -> None:
        try:
            while True:
                text = await self.queue.get()
                await self.gate.wait()
                try:
                    await self.ws.send(text)
                finally:
                    self.queue.task_done()
        except ConnectionClosed:
            while not self.queue.empty():  # nobody will send these: let flush() return
                self.queue.get_nowait()
                self.queue.task_done()

    async def flush(self) -> None:
        if self.writer.done():
            return
        try:
            await asyncio.wait_for(self.queue.join(), FLUSH_LIMIT)
        except TimeoutError:
            pass

    def close(self) -> None:
        self.writer.cancel()


class SimulatedRealtime:
    def __init__(
        self,
        api_key: str = "sk-sim",
        allow_beta: bool = False,
        models=REALTIME_MODELS,
        reply: ReplyOptions | None = None,
        shutdown_dates: dict[str, str | int] | None = None,
        models_status: int | None = None,
        live: LiveOptions | None = None,
    ) -> None:
        self.api_key = api_key
        self.allow_beta = allow_beta
        self.models = set(models)
        self.shutdown_dates = dict(shutdown_dates or {})
        self.models_status = models_status
        self.reply = reply or ReplyOptions()  # shared by every session: /sim/reply changes it
        self.live = live or LiveOptions()  # GPT-Live sessions' (/sim/live changes it)
        self._initial_live = dict(self.live.__dict__)
        self._initial_reply = dict(self.reply.__dict__)
        self.sessions: list[SessionRecord] = []
        self.faults: list[Fault] = []
        self.tool_scripts = ToolScripts()
        self.freezer = Freezer()

    def take_fault(self) -> Fault | None:
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
        if url.path.startswith("/v1/models/"):
            return self._model(connection, request, url.path.removeprefix("/v1/models/"))
        return None

    @staticmethod
    def _json(connection, status: int, body: dict):
        response = connection.respond(status, json.dumps(body) + "\n")
        response.headers["Content-Type"] = "application/json"
        return response

    def _model(self, connection, request, model: str):
        """`GET /v1/models/{model}`, shaped like OpenAI's answers (error objects included)."""
        if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
            error = {"message": "Incorrect API key provided.", "type": "invalid_request_error"}
            return self._json(connection, 401, {"error": {**error, "code": "invalid_api_key"}})
        if self.models_status is not None:
            message = "You have insufficient permissions for this operation. Missing scopes: api.model.read."
            return self._json(connection, self.models_status, {"error": {"message": message, "code": None}})
        known = (*TRANSCRIPTION_MODELS, *LIVE_MODELS, *BACKEND_MODELS)
        if model not in self.models and model not in known:
            message = f"The model '{model}' does not exist"
            return self._json(connection, 404, {"error": {"message": message, "code": "model_not_found"}})
        body = {
            "id": model,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": "system",
            "shutdown_date": self.shutdown_dates.get(model),
        }
        return self._json(connection, 200, body)

    def _control(self, connection, path: str, query: dict):
        if path == "/sim/faults":
            fault = Fault(
                query["kind"],
                float(query.get("after", 0)),
                int(query.get("count", 1)),
                query.get("on", ""),
                int(query.get("nth", 1)),
            )
            self.faults.append(fault)
            return connection.respond(HTTPStatus.OK, json.dumps({"queued": fault.kind}) + "\n")
        if path == "/sim/model-shutdown":
            model, when = query.get("model", ""), query.get("date", "")
            if when:
                self.shutdown_dates[model] = int(when) if when.isdigit() else when
            else:
                self.shutdown_dates.pop(model, None)
            return connection.respond(HTTPStatus.OK, json.dumps({model: when or None}) + "\n")
        if path == "/sim/tool-calls":
            try:
                call = self.tool_scripts.add(query)
            except (KeyError, ValueError) as exc:
                return connection.respond(HTTPStatus.BAD_REQUEST, f"bad tool call: {exc}\n")
            return connection.respond(HTTPStatus.OK, json.dumps({"queued": call.__dict__}) + "\n")
        if path == "/sim/reply":
            try:
                self.reply.update(query)
            except ValueError as exc:
                return connection.respond(HTTPStatus.BAD_REQUEST, f"bad reply options: {exc}\n")
            return connection.respond(HTTPStatus.OK, json.dumps(self.reply.__dict__) + "\n")
        if path == "/sim/live":
            try:
                for name in ("lead_ms", "stop_ms", "expires_in"):
                    if name in query:
                        setattr(self.live, name, int(query[name]))
                if "usage_every" in query:
                    self.live.usage_every = float(query["usage_every"])
            except ValueError as exc:
                return connection.respond(HTTPStatus.BAD_REQUEST, f"bad live options: {exc}\n")
            return connection.respond(HTTPStatus.OK, json.dumps(self.live.__dict__) + "\n")
        if path == "/sim/sessions":
            body = [s.__dict__ for s in self.sessions]
            return connection.respond(HTTPStatus.OK, json.dumps(body) + "\n")
        if path == "/sim/freeze":
            frozen = self.freezer.freeze(new_handshakes=query.get("new", "1") != "0")
            return connection.respond(HTTPStatus.OK, json.dumps({"frozen": frozen}) + "\n")
        if path == "/sim/thaw":
            self.freezer.thaw()
            return connection.respond(HTTPStatus.OK, "{}\n")
        if path == "/sim/reset":
            self.sessions.clear()
            self.faults.clear()
            self.tool_scripts.clear()
            self.reply.__dict__.update(self._initial_reply)
            self.live.__dict__.update(self._initial_live)
            self.freezer.thaw()
            return connection.respond(HTTPStatus.OK, "{}\n")
        return connection.respond(HTTPStatus.NOT_FOUND, "unknown control path\n")

    # --- a connection

    async def handler(self, ws: ServerConnection) -> None:
        request = ws.request
        beta = request.headers.get("OpenAI-Beta", "") == "realtime=v1"
        record = SessionRecord(len(self.sessions) + 1, request.path, beta, time.monotonic())
        self.sessions.append(record)
        fault = self.take_fault()
        gate = self.freezer.register(ws)
        outbox = Outbox(ws, gate)
        tasks: list[asyncio.Task] = []
        record_event = record.add
        if fault and fault.kind == "drop" and fault.on:
            record_event = self._drop_on(fault, ws, record, outbox, tasks)
        tools = SessionTools(state=record.tools)
        live = urlparse(request.path).path.rstrip("/") == "/v1/live/sessions"
        if live:
            session = LiveSession(outbox.put, record_event, self.reply, self.live, tools)
        else:
            session = Session(outbox.put, record_event, beta, self.reply, tools=tools)
        try:
            if live:
                await self._run_live(ws, request, session, record, fault, outbox, tasks, gate)
            else:
                await self._run(ws, request, session, record, fault, outbox, tasks, gate)
        except ConnectionClosed:
            pass
        finally:
            self.freezer.unregister(ws)
            record.closed = time.monotonic()
            record.close_code = record.close_code or ws.close_code
            session.close()
            outbox.close()
            for task in tasks:
                task.cancel()

    @staticmethod
    async def _garbage(outbox: Outbox, after: float, count: int = 1000, live: bool = False) -> None:
        """Malformed and unexpected server events, as a broken proxy or a new API version
        might send: bad JSON, missing fields, wrong types, bad base64, unknown types (of
        GPT-Live's shape on its path)."""
        await asyncio.sleep(after)
        samples = (
            LIVE_GARBAGE
            if live
            else [
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
        )
        for index in range(count):
            outbox.put(samples[index % len(samples)])
            if index % 100 == 99:
                await asyncio.sleep(0.005)

    @staticmethod
    def _drop_on(fault: Fault, ws, record: SessionRecord, outbox: Outbox, tasks: list):
        """A recorder that drops the connection once the fault's event has gone out."""
        seen = 0

        async def drop() -> None:
            await outbox.flush()  # the triggering event reaches the client first
            record.close_code = 1006
            ws.transport.abort()

        def add(direction: str, event: dict) -> None:
            nonlocal seen
            record.add(direction, event)
            if direction == "out" and event.get("type") == fault.on:
                seen += 1
                if seen == fault.nth:
                    tasks.append(asyncio.get_running_loop().create_task(drop()))

        return add

    async def _close(self, ws, record: SessionRecord, outbox: Outbox, code: int, reason: str) -> None:
        record.close_code = code
        await outbox.flush()  # the error event goes out before the close frame
        await ws.close(code, reason)

    async def _run(self, ws, request, session, record, fault, outbox, tasks, gate) -> None:
        if fault and fault.kind == "garbage":
            tasks.append(asyncio.get_running_loop().create_task(self._garbage(outbox, fault.after)))
            fault = None
        if fault and fault.kind == "slow_accept":
            await asyncio.sleep(fault.after)
            fault = None
        model = parse_qs(urlparse(request.path).query).get("model", [""])[0]
        session.model = model
        auth = request.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}" or (fault and fault.kind == "invalid_key"):
            session.error("invalid_api_key", "Incorrect API key provided.", "invalid_request_error")
            return await self._close(ws, record, outbox, 1008, "invalid api key")
        if record.beta and not self.allow_beta:
            session.error(
                "beta_api_shape_disabled",
                "The beta Realtime API shape has been disabled. Use the GA shape.",
                "invalid_request_error",
            )
            return await self._close(ws, record, outbox, 4000, "beta api shape disabled")
        if model not in self.models or (fault and fault.kind == "model_not_found"):
            session.error("model_not_found", f"The model '{model}' does not exist or you do not have access.")
            return await self._close(ws, record, outbox, 1008, "model not found")
        session.send(
            {
                "type": "session.created",
                "session": {"id": f"sess_sim{record.number}", "model": model, "type": "realtime"},
            }
        )
        if fault and fault.kind == "insufficient_quota":
            session.error(
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
            )
            return await self._close(ws, record, outbox, 1008, "insufficient quota")
        session.tools.plan(self.tool_scripts.take())  # an established session takes the scripted calls
        if fault and fault.kind == "refuse_update":
            session.refuse_updates = 1
            fault = None
        loop = asyncio.get_running_loop()
        timed = fault and fault.kind in ("drop", "expire") and not fault.on
        deadline = loop.time() + fault.after if timed else None
        while True:
            await gate.wait()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                message = await asyncio.wait_for(ws.recv(), timeout)  # recv is safe to cancel
            except TimeoutError:
                if fault.kind == "expire":
                    session.error("session_expired", "Your session hit the maximum duration of 60 minutes.")
                    return await self._close(ws, record, outbox, 1001, "session expired")
                record.close_code = 1006
                ws.transport.abort()  # abrupt: no close frame, like a network failure
                return
            if isinstance(message, bytes):
                session.error("invalid_request_error", "Binary frames are not supported.")
                continue
            session.handle(message)

    async def _run_live(self, ws, request, session, record, fault, outbox, tasks, gate) -> None:
        """A GPT-Live connection (simulators/live_session.py), with the same faults."""
        if fault and fault.kind == "garbage":
            garbage = self._garbage(outbox, fault.after, live=True)
            tasks.append(asyncio.get_running_loop().create_task(garbage))
            fault = None
        if fault and fault.kind == "slow_accept":
            await asyncio.sleep(fault.after)
            fault = None
        if request.headers.get("Authorization", "") != f"Bearer {self.api_key}" or (
            fault and fault.kind == "invalid_key"
        ):
            session.error("invalid_api_key", "Incorrect API key provided.")
            return await self._close(ws, record, outbox, 1008, "invalid api key")
        if request.headers.get("OpenAI-Beta"):
            session.error("invalid_request_error", "GPT-Live takes no OpenAI-Beta header.")
            return await self._close(ws, record, outbox, 1008, "beta header")
        first = await ws.recv()
        if isinstance(first, bytes):
            session.error("invalid_request_error", "Binary frames are not supported.")
            return await self._close(ws, record, outbox, 1003, "binary")
        models = () if fault and fault.kind == "model_not_found" else LIVE_MODELS
        if not session.start(first, f"live_sim{record.number}", models):
            return await self._close(ws, record, outbox, 1008, "session not started")
        if fault and fault.kind == "insufficient_quota":
            session.error(
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details.",
            )
            return await self._close(ws, record, outbox, 1008, "insufficient quota")
        session.tools.plan(self.tool_scripts.take())
        loop = asyncio.get_running_loop()
        timed = fault and fault.kind in ("drop", "expire") and not fault.on
        deadline = loop.time() + fault.after if timed else None
        try:
            while True:
                await gate.wait()
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:
                    if fault.kind == "expire":
                        session.closed("expired")
                        return await self._close(ws, record, outbox, 1000, "session expired")
                    record.close_code = 1006
                    ws.transport.abort()
                    return
                if isinstance(message, bytes):
                    session.error("invalid_request_error", "Binary frames are not supported.")
                    continue
                if not session.handle(message):
                    return await self._close(ws, record, outbox, 1000, "closed")
        finally:
            session.close()


async def serve_until_stopped(host: str, port: int, **options) -> None:
    sim = SimulatedRealtime(**options)
    async with serve(
        sim.handler,
        host,
        port,
        process_request=sim.process_request,
        process_response=sim.freezer.hold_handshake,
        compression=None,
        max_size=16 * 1024 * 1024,
        ping_interval=None,
    ) as server:
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        await server.serve_forever()


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
    parser.add_argument(
        "--preamble-ms", type=int, default=0, help="phased replies: a preamble of this length"
    )
    parser.add_argument("--think-ms", type=int, default=0, help="phased replies: the pause before the answer")
    parser.add_argument(
        "--no-metadata",
        action="store_true",
        help="never echo a response's metadata, as some Realtime-compatible servers do",
    )
    parser.add_argument(
        "--model-shutdown",
        action="append",
        default=[],
        metavar="MODEL=DATE",
        help="shutdown_date of MODEL in /v1/models (YYYY-MM-DD, or a unix timestamp); repeatable",
    )
    parser.add_argument("--models-status", type=int, help="answer every /v1/models lookup with this status")
    parser.add_argument(
        "--lead-ms", type=int, default=200, help="GPT-Live: audio sent at once as a reply begins"
    )
    parser.add_argument(
        "--stop-ms", type=int, default=250, help="GPT-Live: the model's reaction to a barge-in"
    )
    args = parser.parse_args(argv)
    shutdown_dates: dict[str, str | int] = {}
    for item in args.model_shutdown:
        model, sep, when = item.partition("=")
        if not sep or not model or not when:
            parser.error(f"--model-shutdown wants MODEL=DATE (got {item!r})")
        shutdown_dates[model] = int(when) if when.isdigit() else when
    reply = ReplyOptions(
        mode=args.reply,
        reply_ms=args.reply_ms,
        greeting_ms=args.greeting_ms,
        speed=args.speed,
        preamble_ms=args.preamble_ms,
        think_ms=args.think_ms,
        echo_metadata=not args.no_metadata,
    )
    try:
        asyncio.run(
            serve_until_stopped(
                args.host,
                args.port,
                api_key=args.api_key,
                allow_beta=args.allow_beta,
                reply=reply,
                shutdown_dates=shutdown_dates,
                models_status=args.models_status,
                live=LiveOptions(lead_ms=args.lead_ms, stop_ms=args.stop_ms),
            )
        )
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
