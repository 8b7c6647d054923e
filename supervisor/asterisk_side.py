"""The supervisor's Asterisk side: the events link, reconciliation and turning callers away.

Part of `Supervisor` (supervisor/service.py), kept apart because it is one thing: what the
loop does about Asterisk without ever waiting on it. The events link is a non-blocking state
machine (supervisor/ari_events.py); every ARI request is a helper's (supervisor/helpers.py):
looking up ASTERISK_HOST, listing for reconciliation, tearing down, turning a caller away.
"""

from __future__ import annotations

import logging
import socket
import time

from shm_ring import EndReason
from supervisor import asterisk_work, systemd
from supervisor.ari_events import BACKOFF_CAP, LinkState
from supervisor.reconcile import list_asterisk, plan
from supervisor.turn_away import refuse, turn_away
from supervisor.turn_aways import Waiting

log = logging.getLogger(__name__)

RECENT_MARGIN = 5.0  # seconds before a listing was asked for in which a call still counts as ours


class AsteriskSide:
    """Mixed into `Supervisor`; uses its settings, selector, helpers, calls and link state."""

    # --- ARI events (never waits: see supervisor/ari_events.py)

    def _connect_ari(self) -> None:
        host, port = self.settings.asterisk_host, self.settings.asterisk_port
        try:  # an address needs no lookup; a name is looked up by a helper (DNS can hang)
            address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)[0]
        except socket.gaierror:
            self.events.state = LinkState.CONNECTING
            self.events.deadline = time.monotonic() + 30.0
            started = self._helper(
                "resolve",
                lambda: asterisk_work.resolve(host, port),
                self._on_resolved,
            )
            if started is None:
                self.events.resolve_failed("cannot start a helper to look up ASTERISK_HOST")
            return
        self.events.connect(address)
        self._after_ari()

    def _on_resolved(self, result, ok: bool) -> None:
        if self.events.state is not LinkState.CONNECTING or self.events.sock is not None:
            return  # timed out meanwhile
        if not ok or not result:
            self.events.resolve_failed(f"cannot look up ASTERISK_HOST {self.settings.asterisk_host!r}")
            return
        self.events.connect(asterisk_work.address_from_json(result[0]))
        self._after_ari()

    def _forget_ari_sock(self, sock) -> None:
        """The link is about to close its socket: out of the selector first, while the
        descriptor number still belongs to it (a pipe or client opened next may reuse it)."""
        if self.ari_sock is sock:
            try:
                self.selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            self.ari_sock, self.ari_mask = None, 0

    def _after_ari(self) -> None:
        """Keep the selector's registration in step with the link, and act on a new connect."""
        sock, mask = self.events.sock, self.events.interest()
        if self.ari_sock is not None and (sock is not self.ari_sock or not mask):
            try:
                self.selector.unregister(self.ari_sock)
            except (KeyError, ValueError):
                pass
            self.ari_sock, self.ari_mask = None, 0
        if sock is not None and mask:
            if self.ari_sock is None:
                self.selector.register(sock, mask, ("ari", None))
            elif mask != self.ari_mask:
                self.selector.modify(sock, mask, ("ari", None))
            self.ari_sock, self.ari_mask = sock, mask
        if self.events.connects != self.connects_seen:
            self.connects_seen = self.events.connects
            self.reconciliation.after_connect()
            self._reconcile()
            if not self.ready:
                self.ready = True
                systemd.notify("READY=1")
            self._notify_status()

    def _on_ari_event(self, event: dict) -> None:
        kind = event["type"]
        channel = event.get("channel") if isinstance(event.get("channel"), dict) else {}
        channel_id = str(channel.get("id", ""))
        if self.transfers.on_event(kind, event, self.calls):
            return  # a transfer's channel, or a transferred caller (supervisor/transfers.py)
        if kind == "StasisStart":
            if self.ids.is_media_channel(channel):
                return  # an externalMedia channel entering the app: not a call
            self.admit(channel)
        elif kind in ("StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"):
            entry = self.calls.get(channel_id)
            if entry is not None and not entry.caller_gone:
                entry.caller_gone = True
                entry.request_end(EndReason.CALLER_HANGUP)
        elif kind == "ApplicationReplaced":
            log.error(
                "another program connected to ARI as app %r and took its events; each instance "
                "needs its own ARI_APP_NAME. Reconnecting in %.0f s",
                self.settings.ari_app_name,
                BACKOFF_CAP,
            )
            self.events.replaced()

    # --- reconciliation (supervisor/reconcile.py): a helper lists, the loop decides

    def _reconcile(self) -> None:
        if self.events.state is not LinkState.CONNECTED or not self.reconciliation.due(time.monotonic()):
            return
        asked = time.monotonic()
        older = set(self.calls)
        live = set(self.calls)
        pairs = set(self.transfers.pairs)  # watched before the listing: a missing side is news
        started = self._helper(
            "reconcile",
            lambda: list_asterisk(self.settings, skip=live),
            lambda result, ok: self._on_listing(result, ok, older, asked, pairs),
        )
        if started is not None:
            self.reconciliation.started(asked)

    def _on_listing(
        self, listing, ok: bool, older: set[str], asked: float, pairs: set[str] = frozenset()
    ) -> None:
        if not ok or not isinstance(listing, dict):
            return self.reconciliation.finished("the listing helper failed (see its log line)")
        self.reconciliation.finished(listing.get("error"))
        if "error" in listing:
            return
        ours = self.recent.since(asked - RECENT_MARGIN)
        todo = plan(
            listing,
            set(self.calls),
            older,
            self.turn_aways.ours() | set(self.unusable) | ours,
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
            self._start_teardown("", todo.remove)
        for channel_id, target in todo.send_on:  # a dead run was sending them to a fallback
            self._turn_away(channel_id, "a fallback an earlier run began", target)
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

    def _start_teardown(self, call_id: str, targets) -> None:
        started = self._helper(
            "teardown", lambda: asterisk_work.teardown(self.settings, targets, call_id), key=call_id
        )
        if started is None:  # what is left is found by the next reconciliation
            self.reconciliation.after_connect()

    def _turn_away(self, channel_id: str, why: str, fallback=None, busy: bool = True) -> None:
        """To the fallback (a DialplanTarget) when there is one, else the busy prompt and the
        hang-up, or, past the prompt helpers, a hang-up with the busy cause: helpers' work
        (supervisor/turn_away.py), bounded by supervisor/turn_aways.py. `busy`: for want of
        capacity (counted, and alerted on, as turned away busy); else routing (no agent for
        the number or the hour, a budget spent), counted apart. Counted once per caller."""
        if not self.turn_aways.add(Waiting(channel_id, why, fallback)):
            return
        if busy:
            self.calls_busy += 1
        else:
            self.calls_routed_away += 1
        if fallback is not None:
            self.calls_to_fallback += 1
        how = f"to the fallback {fallback}" if fallback is not None else "busy prompt, then hang-up"
        log.warning("turning a call away (%s): %s", why, how, extra={"call_id": channel_id})
        self.recent.mark(channel_id, time.monotonic())
        self._pump_turn_aways()

    def _pump_turn_aways(self) -> None:
        """Start what the free helper slots allow: prompts first, then one batch for the rest.
        A helper that cannot start leaves its callers queued for the next tick."""
        queue = self.turn_aways
        while (waiting := queue.next_prompt()) is not None:
            helper = self._helper(
                "busy",
                lambda w=waiting: turn_away(self.settings, w.channel_id, w.why, w.fallback),
                lambda result, ok, w=waiting: self._prompted(w.channel_id),
                key=waiting.channel_id,
            )
            if helper is None:
                queue.unstarted(waiting, prompting=True)
                return
        batch = queue.next_batch()
        if not batch:
            return
        helper = self._helper(
            "refuse",
            lambda: refuse(self.settings, batch),
            lambda result, ok: self._refused(batch, result if ok else None),
        )
        if helper is None:
            for waiting in reversed(batch):
                queue.unstarted(waiting, prompting=False)

    def _prompted(self, channel_id: str) -> None:
        self.turn_aways.prompt_done(channel_id)
        self.recent.mark(channel_id, time.monotonic())
        self._pump_turn_aways()

    def _refused(self, batch: list, result: dict | None) -> None:
        """A helper that died did nothing we can count on: its whole batch goes again (a
        caller it did hang up is simply not found the second time)."""
        done = set(result.get("done", [])) if isinstance(result, dict) else set()
        now = time.monotonic()
        for waiting in batch:
            self.recent.mark(waiting.channel_id, now)
        left = self.turn_aways.batch_done([w for w in batch if w.channel_id not in done])
        for waiting in left:  # the next reconciliation finds them if they are still there
            log.error(
                "could not turn a caller away after %d tries; leaving it to reconciliation",
                waiting.tries,
                extra={"call_id": waiting.channel_id},
            )
        self._pump_turn_aways()
