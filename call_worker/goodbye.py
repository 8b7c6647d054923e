"""The goodbye at a limit (MAX_CALL_SECONDS, IDLE_TIMEOUT_SECONDS), as a state machine.

Our goodbye must be told apart from replies that server VAD creates, without relying on
the server echoing `response.metadata` (Realtime-compatible servers may drop it). So the
goodbye first turns automatic responses off (`session.update` with create_response and
interrupt_response false) and waits for `session.updated`: events come in order, so any
reply the server created before that update shows up before its acknowledgement, and none
can be created after it. Which `session.updated` acknowledges which update is told by
order, not content (a server may echo no turn detection at all): the caller passes the
event_id of the update each acknowledgement answers (call_worker/conversation.py). Once no response is active, our `response.create` goes out and
the next `response.created` is ours.

    IDLE --begin--> QUIETING --session.updated, none active--> ASKED --created--> SPEAKING
                    QUIETING --session.updated, one active--> WAITING --its done--> ASKED
    SPEAKING --its response.done--> DONE
    ASKED --error naming our response.create, one active--> WAITING (asked again after it)
    ASKED --error naming our response.create, none active--> DONE (nothing left to wait for)
    QUIETING, WAITING --session lost--> QUIETING again, on the new session
    ASKED, SPEAKING --session lost--> DONE, with no new session: a new one would come up
                                      answering the caller, and the goodbye asked of the
                                      lost one cannot be resumed; what arrived plays out

Only the media loop drives it (one writer); the main thread reads `done`. What it sends goes
through the conversation's two callables, so it knows no protocol (call_worker/adapter.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import Enum

from call_worker import realtime_protocol as proto

log = logging.getLogger(__name__)


class GoodbyeState(Enum):
    IDLE = "idle"
    QUIETING = "quieting"  # automatic responses being turned off
    WAITING = "waiting"  # a reply still active: ours waits for its response.done
    ASKED = "asked"  # our response.create sent: the next response.created is ours
    SPEAKING = "speaking"  # our goodbye is being received
    DONE = "done"  # fully received (the main thread waits for it to finish playing)


class Goodbye:
    def __init__(
        self,
        quiet: Callable[[str], bool],
        ask: Callable[[str, str], bool],
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        """`quiet(event_id)` turns automatic replies off; `ask(instructions, event_id)`
        asks for the goodbye; `on_done()` wakes whoever waits for `done`."""
        self.quiet = quiet
        self.ask = ask
        self.on_done = on_done
        self.state = GoodbyeState.IDLE
        self.instructions = proto.GOODBYE_IDLE
        self.response_id: str | None = None
        self.update_id = ""  # event_id of our latest quiet update
        self.ask_id = ""  # event_id of our latest response.create
        self._updates_sent = 0
        self._asks_sent = 0
        self.done = threading.Event()

    def _finished(self) -> None:
        self.state = GoodbyeState.DONE
        self.done.set()
        self.on_done()

    @property
    def requested(self) -> bool:
        return self.state is not GoodbyeState.IDLE

    @property
    def uninterruptible(self) -> bool:
        """Asked for, being said or said: the caller's speech must not cut it (the server's
        interrupt_response is off too), or the call would hang up on a half goodbye."""
        return self.state in (GoodbyeState.ASKED, GoodbyeState.SPEAKING, GoodbyeState.DONE)

    def begin(self, instructions: str) -> None:
        if self.state is not GoodbyeState.IDLE:
            return  # one goodbye per call
        self.instructions = instructions
        self._quiet()

    def _quiet(self) -> None:
        # QUIETING: from now on only our own response.create makes a response.
        self.state = GoodbyeState.QUIETING
        self._updates_sent += 1
        self.update_id = f"cb_quiet_{self._updates_sent}"
        self.quiet(self.update_id)

    def _ask(self) -> None:
        # ASKED: nothing else can create a response, so the next one is ours.
        self.state = GoodbyeState.ASKED
        self._asks_sent += 1
        self.ask_id = f"cb_bye_{self._asks_sent}"
        if not self.ask(self.instructions, self.ask_id):
            self.state = GoodbyeState.QUIETING  # not sent (the session is going): asked on the next

    def on_session_updated(self, response_active: bool, event_id: str | None) -> None:
        """A session.updated arrived, acknowledging the update sent as `event_id`."""
        if self.state is GoodbyeState.QUIETING and event_id == self.update_id:
            if response_active:
                self.state = GoodbyeState.WAITING  # a reply created just before the update
            else:
                self._ask()

    def on_error(self, response_active: bool, event_id: str | None) -> None:
        """An error caused by the event sent as `event_id`. If that is our update, it was
        refused (a server that does not take partial updates): asking anyway is the best
        left; the goodbye limit still bounds the call. If it is our response.create, the
        goodbye was refused."""
        if self.state is GoodbyeState.QUIETING and event_id == self.update_id:
            log.warning("automatic responses could not be turned off for the goodbye; asking anyway")
            self.on_session_updated(response_active, event_id)
        elif self.state is GoodbyeState.ASKED and event_id == self.ask_id:
            if response_active:  # e.g. conversation_already_has_active_response
                log.warning("the goodbye was refused while a reply is active; asking again after it")
                self.state = GoodbyeState.WAITING
            else:  # waiting on would only be GOODBYE_LIMIT (call.py) of dead air
                log.warning("the goodbye was refused; ending the call without it")
                self.state = GoodbyeState.DONE
                self._finished()

    def on_response_created(self, response_id: str) -> None:
        if self.state is GoodbyeState.ASKED:
            self.state = GoodbyeState.SPEAKING
            self.response_id = response_id

    def on_response_done(self, response_id: str, response_active: bool) -> None:
        if self.state is GoodbyeState.SPEAKING and response_id == self.response_id:
            self.state = GoodbyeState.DONE  # cancelled by a barge-in counts too: it ended
            self._finished()
        elif self.state is GoodbyeState.WAITING and not response_active:
            self._ask()

    def session_lost(self) -> bool:
        """The session is gone; returns whether a new one should be opened."""
        if self.uninterruptible:
            self.state = GoodbyeState.DONE  # ended with what was received of it
            self._finished()
            return False
        if self.state is not GoodbyeState.IDLE:
            self.response_id = None
            self.state = GoodbyeState.QUIETING  # the new session starts with responses on
        return True

    def session_opened(self) -> None:
        """(after a reconnect) The new session's configuration answers automatically: quiet
        it again before asking."""
        if self.state is GoodbyeState.QUIETING:
            self._quiet()
