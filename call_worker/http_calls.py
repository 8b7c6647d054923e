"""Sending the agent's HTTP tool calls (callbridge/http_tools.py) on threads of their own.

The media loop hands a call over (`submit`) and goes on pacing audio; a pool thread sends
the request and posts the outcome back (`on_done`, which queues it for the loop and wakes
it). The pool is made at the first call, so a call whose agent has no HTTP tools starts no
thread. Each call is bounded: its connect and each read wait at most its timeout, the body
is read as it arrives up to `max_response_bytes` (dropped beyond them) and until the
deadline (a trickling server can hold a thread up to twice the timeout), and redirects are not
followed (one could point anywhere). The conversation answers the model at the deadline
whatever a thread is still waiting for (call_worker/conversation.py), so a server that
trickles bytes holds a thread, never the caller.

What is logged is the tool's name, the outcome, the status and the time: never a header,
never the URL (its path and query are what the caller said), never an exception's text
(requests puts the URL in it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
import urllib3

from callbridge.http_tools import HttpTool, Request, answer_of

log = logging.getLogger(__name__)

THREADS = 4  # parallel calls of one reply, and a hung server or two, without queueing the rest
CHUNK = 16384
USER_AGENT = "callbridge"


@dataclass(frozen=True)
class Outcome:
    call_id: str
    output: dict  # what the model is told
    detail: dict  # the call's event: status, ms, bytes (no data)


class HttpCalls:
    def __init__(self, on_done: Callable[[Outcome], None]) -> None:
        self.on_done = on_done
        self._pool: ThreadPoolExecutor | None = None
        self._session: requests.Session | None = None

    def submit(self, call_id: str, tool: HttpTool, request: Request) -> None:
        """(media loop) Send it; the outcome comes through `on_done`, from a pool thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="http-tool")
            self._session = requests.Session()
            self._session.trust_env = False  # no proxy or .netrc of the machine's environment
        self._pool.submit(self._run, call_id, tool, request)

    def close(self) -> None:
        """The call is over: threads still waiting on a server are left to their timeout."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, call_id: str, tool: HttpTool, request: Request) -> None:
        started = time.monotonic()
        try:
            output, detail = self._send(tool, request, started)
        except Exception as exc:  # a bug here must still answer the model
            log.exception("tool %s: unexpected failure", tool.name)
            output, detail = {"error": f"{tool.name} failed"}, {"outcome": type(exc).__name__}
        detail["ms"] = round((time.monotonic() - started) * 1000)
        if "error" in output:
            log.warning("tool %s: %s after %d ms", tool.name, detail.get("outcome"), detail["ms"])
        else:
            log.info("tool %s: HTTP %s in %d ms", tool.name, detail.get("status"), detail["ms"])
        self.on_done(Outcome(call_id, output, detail))

    def _send(self, tool: HttpTool, request: Request, started: float) -> tuple[dict, dict]:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json, text/plain;q=0.9"}
        headers.update((name, value.reveal()) for name, value in tool.headers)
        if request.body is not None:
            headers["Content-Type"] = "application/json"
        timeout = tool.timeout_seconds
        try:
            response = self._session.request(
                request.method,
                request.url,
                data=request.body,
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout:
            return {"error": f"{tool.name} did not answer within {timeout:g} s"}, {"outcome": "timeout"}
        except requests.RequestException as exc:
            return {"error": f"{tool.name} could not be reached"}, {"outcome": type(exc).__name__}
        with response:
            if 300 <= response.status_code < 400:
                output = {"error": f"{tool.name} answered with a redirect, which is not followed"}
                return output, {"outcome": "redirect", "status": response.status_code}
            body = bytearray()
            try:
                # read1: what has arrived, at most CHUNK (a read of CHUNK would wait for all
                # of it, so a server sending a byte at a time would never meet the deadline)
                while piece := response.raw.read1(CHUNK, decode_content=True):
                    body += piece
                    if len(body) > tool.max_response_bytes:
                        output = {
                            "error": f"{tool.name}'s answer is larger than {tool.max_response_bytes} bytes"
                        }
                        return output, {"outcome": "too_large", "status": response.status_code}
                    if time.monotonic() - started > timeout:
                        output = {"error": f"{tool.name} did not answer within {timeout:g} s"}
                        return output, {"outcome": "timeout", "status": response.status_code}
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                output = {"error": f"{tool.name}'s answer was cut off"}
                return output, {"outcome": type(exc).__name__, "status": response.status_code}
            output = answer_of(
                tool, response.status_code, bytes(body), response.headers.get("Content-Type", "")
            )
            outcome = "ok" if "error" not in output else "error"
            return output, {"outcome": outcome, "status": response.status_code, "bytes": len(body)}
