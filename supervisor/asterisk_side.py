"""The supervisor's Asterisk side: the events link's place in the loop, and reconciliation.

Two collaborators of the supervisor's loop (supervisor/service.py), each given what it needs
in its constructor, neither ever waiting on Asterisk:
- `AsteriskLink`: the events link (a non-blocking state machine, supervisor/ari_events.py)
  kept in step with the loop's selector; a host name is looked up by a helper (DNS can hang);
- `Reconciler`: a helper lists what Asterisk holds (supervisor/reconcile.py), and the loop
  decides what to end, adopt, tear down or send on.
Every ARI request is a helper's (supervisor/helpers.py).
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Callable

from callbridge.config import Settings
from shm_ring import EndReason
from supervisor import asterisk_work
from supervisor.ari_events import AriEvents, LinkState
from supervisor.calls import CallEntry
from supervisor.recent import RecentIds
from supervisor.reconcile import Reconciliation, list_asterisk, plan
from supervisor.transfers import Transfers
from supervisor.turning_away import TurnAwayDesk

log = logging.getLogger(__name__)

RECENT_MARGIN = 5.0  # seconds before a listing was asked for in which a call still counts as ours


class AsteriskLink:
    def __init__(
        self,
        settings: Settings,
        selector: selectors.BaseSelector,
        start_helper: Callable,
        on_connect: Callable[[], None],
    ) -> None:
        """`on_connect()`: called on the loop after each new connect (reconcile, READY=1)."""
        self.settings = settings
        self.selector = selector
        self.start_helper = start_helper
        self.on_connect = on_connect
        self.events = AriEvents(settings, on_close=self._forget_sock)
        self.sock: socket.socket | None = None  # the socket registered in the selector
        self.mask = 0
        self.connects_seen = 0

    def next_attempt(self) -> float:
        events = self.events
        return events.next_attempt if events.state is LinkState.DISCONNECTED else float("inf")

    def connect(self) -> None:
        host, port = self.settings.asterisk_host, self.settings.asterisk_port
        try:  # an address needs no lookup; a name is looked up by a helper (DNS can hang)
            address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
        except socket.gaierror:
            self.events.state = LinkState.CONNECTING
            self.events.deadline = time.monotonic() + 30.0
            started = self.start_helper(
                "resolve",
                lambda: asterisk_work.resolve(host, port),
                self._on_resolved,
            )
            if started is None:
                self.events.resolve_failed("cannot start a helper to look up ASTERISK_HOST")
            return
        self.events.connect(address)
        self.sync()

    def _on_resolved(self, result, ok: bool) -> None:
        if self.events.state is not LinkState.CONNECTING or self.events.sock is not None:
            return  # timed out meanwhile
        if not ok or not result:
            self.events.resolve_failed(f"cannot look up ASTERISK_HOST {self.settings.asterisk_host!r}")
            return
        self.events.connect(asterisk_work.address_from_json(result[0]))
        self.sync()

    def _forget_sock(self, sock) -> None:
        """The link is about to close its socket: out of the selector first, while the
        descriptor number still belongs to it (a pipe or client opened next may reuse it)."""
        if self.sock is sock:
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            self.sock, self.mask = None, 0

    def sync(self) -> None:
        """Keep the selector's registration in step with the link, and act on a new connect."""
        sock, mask = self.events.sock, self.events.interest()
        if self.sock is not None and (sock is not self.sock or not mask):
            try:
                self.selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.sock, self.mask = None, 0
        if sock is not None and mask:
            if self.sock is None:
                self.selector.register(sock, mask, ("ari", None))
            elif mask != self.mask:
                self.selector.modify(sock, mask, ("ari", None))
            self.sock, self.mask = sock, mask
        if self.events.connects != self.connects_seen:
            self.connects_seen = self.events.connects
            self.on_connect()


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        link: AsteriskLink,
        calls: dict[str, CallEntry],
        transfers: Transfers,
        desk: TurnAwayDesk,
        unusable: dict[str, None],
        recent: RecentIds,
        start_helper: Callable,
        start_teardown: Callable,
        admit: Callable[[dict], object],
    ) -> None:
        """`unusable`: ids no ARI request can name (supervisor/admission.py), never adopted;
        `admit(channel)`: admission, for a caller that entered while the link was down."""
        self.settings = settings
        self.ids = settings.ids
        self.link = link
        self.calls = calls
        self.transfers = transfers
        self.desk = desk
        self.unusable = unusable
        self.recent = recent
        self.start_helper = start_helper
        self.start_teardown = start_teardown
        self.admit = admit
        self.state = Reconciliation()

    def run(self) -> None:
        if self.link.events.state is not LinkState.CONNECTED or not self.state.due(time.monotonic()):
            return
        asked = time.monotonic()
        older = set(self.calls)
        live = set(self.calls)
        pairs = set(self.transfers.pairs)  # watched before the listing: a missing side is news
        started = self.start_helper(
            "reconcile",
            lambda: list_asterisk(self.settings, skip=live),
            lambda result, ok: self._on_listing(result, ok, older, asked, pairs),
        )
        if started is not None:
            self.state.started(asked)

    def _on_listing(
        self, listing, ok: bool, older: set[str], asked: float, pairs: set[str] = frozenset()
    ) -> None:
        if not ok or not isinstance(listing, dict):
            return self.state.finished("the listing helper failed (see its log line)")
        self.state.finished(listing.get("error"))
        if "error" in listing:
            return
        ours = self.recent.since(asked - RECENT_MARGIN)
        todo = plan(
            listing,
            set(self.calls),
            older,
            self.desk.queue.ours() | set(self.unusable) | ours,
            self.ids,
            self.settings.ari_app_name,
            watched={c: p.destination_id for c, p in self.transfers.pairs.items()},
            watched_older=pairs,
        )
        for call_id, destination in todo.transferred.items():
            self.transfers.adopt(call_id, destination)
        for call_id in todo.pairs_gone:
            self.transfers.gone(call_id)
        for call_id in todo.gone:
            entry = self.calls.get(call_id)
            if entry is not None and not entry.caller_gone:
                entry.caller_gone = True
                entry.request_end(EndReason.CALLER_HANGUP)
        if todo.remove:
            self.start_teardown("", todo.remove)
        for channel_id, target in todo.send_on:  # a dead run was sending them to a fallback
            self.desk.turn_away(channel_id, "a fallback an earlier run began", target)
        for channel in todo.adopt:
            log.info(
                "adopting a call that entered while the events connection was down",
                extra={"call_id": str(channel.get("id", ""))},
            )
            self.admit(channel)
        if any(todo.counts().values()):
            log.info(
                "reconciled with Asterisk: %s", ", ".join(f"{k} {v}" for k, v in todo.counts().items() if v)
            )
