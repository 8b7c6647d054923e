"""The end of one call, on the worker's main thread: what follows once the call is ENDING.

`Call.run` (call_worker/call.py) only decides that the call ends and why (its control loop,
a set-up failure, a crash); everything after that is here, in the order the caller and
Asterisk need it:

    a Realtime failure -> the agent's fallback (ARI `continue`), else the failure prompt
    stop the media loop, close the session (and one set-up opened but never handed over)
    teardown: what set-up created in Asterisk, bounded by TEARDOWN_LIMIT
    the socket, the ARI client, then the record (the spool, and CALL_RECORDS_DIR)

Whatever ended the call (a limit, the caller, a set-up failure, a crash of our own code),
it ends through this one path, so teardown is written once: a set-up that failed half-way
is undone by the same code as a call that ran to its end (every object goes by its derived
id, and a DELETE that finds nothing is success: callbridge/teardown.py). It takes the whole
`Call`, not a few of its parts, because the record is the whole call (it hands records/
a `WorkerEnding`, records/handover.py), and because the ending undoes what set-up and the control loop left on it
(threads, socket, session, a transfer attempt).
"""

from __future__ import annotations

import logging
import resource
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from callbridge.ari_rest import AriError
from callbridge.teardown import Target, call_targets, remove_all
from records.handover import Pricing, WorkerEnding
from records.spool import final_record, write_json_atomically
from shm_ring import EndReason, Slot

if TYPE_CHECKING:
    from call_worker.call import Call

log = logging.getLogger(__name__)

PROMPT_LIMIT = 15.0  # seconds the failure prompt may play
TEARDOWN_LIMIT = 15.0  # seconds of teardown retries; the supervisor's END_GRACE is longer
# What the call cost the worker, for bench/calls_bench.py and bench/asterisk_bench.py:
# voluntary context switches are its threads' wake-ups.
RUSAGE_FIELDS = ("ru_utime", "ru_stime", "ru_nvcsw", "ru_nivcsw", "ru_minflt")


class Ending:
    """One call's ending (docs/architecture.md, "One call, end to end", steps 6 and 7).
    `run` is called once, by `Call.run`, with `call.end_reason` set."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.sent_to_fallback = False  # the caller left Stasis for the agent's fallback

    def run(self) -> None:
        call = self.call
        reason = call.end_reason
        if reason is EndReason.REALTIME_FAILED:
            if call.agent.fallback is not None:
                self.sent_to_fallback = self._send_to_fallback()
            if not self.sent_to_fallback:
                self._play_failure_prompt()
        call.stop.set()
        call.loop_wake.wake()
        for thread in call.threads:
            thread.join(timeout=2)
        call.conversation.close()
        for outcome in call.opened:  # set-up failed after its session opened
            if isinstance(outcome, tuple):
                outcome[0].close()
        self._teardown(reason)
        if call.sock is not None:
            call.sock.close()
        call.ari.close()
        self._report()

    def _send_to_fallback(self) -> bool:
        """Realtime refused or could not be reached: the caller goes to the agent's
        fallback (a queue, voicemail, a person) instead of hearing a prompt and a hang-up."""
        call = self.call
        target = call.agent.fallback
        try:
            if not call.media_ready:
                call.ari.answer(call.info.call_id)
            else:
                call.ari.delete_bridge(call.ids.bridge(call.info.call_id))
            call.ari.continue_in_dialplan(
                call.info.call_id, target.context, target.extension, target.priority
            )
        except AriError as exc:
            log.warning("could not send the caller to the fallback %s: %s; playing the prompt", target, exc)
            return False
        log.info("Realtime failed: the caller was sent to the fallback %s", target)
        call.event("fallback", {"to": str(target), "why": call.fatal_message[:200]})
        return True

    def _play_failure_prompt(self) -> None:
        """The caller hears an Asterisk prompt, not dead air, before the call ends."""
        call = self.call
        playback_id = call.ids.playback("fail", uuid.uuid4().hex[:12])
        try:
            if not call.media_ready:
                call.ari.answer(call.info.call_id)
            else:  # take the caller out of the bridge so the prompt is heard on its own
                call.ari.delete_bridge(call.ids.bridge(call.info.call_id))
            call.ari.play(call.info.call_id, call.settings.failure_prompt, playback_id)
            deadline = time.monotonic() + PROMPT_LIMIT
            while time.monotonic() < deadline and call.ari.playback(playback_id) is not None:
                if call.header.get(Slot.END_REQUEST) == EndReason.CALLER_HANGUP:
                    break
                time.sleep(0.1)
        except AriError as exc:
            log.warning("could not play the failure prompt: %s", exc)

    def _teardown(self, reason: EndReason) -> None:
        """callbridge/teardown.py, bounded: what is still there after TEARDOWN_LIMIT is the
        supervisor's to hand to a helper (the worker exits with EXIT_TEARDOWN_LEFT).

        A transferred caller is never hung up: after an attended transfer the bridge holds
        the caller and the destination (the supervisor watches them, supervisor/transfers.py),
        so only our media channel goes; after a blind one the caller has left Stasis."""
        call = self.call
        call_id = call.info.call_id
        if reason is EndReason.TRANSFERRED or self.sent_to_fallback:
            targets = [Target("channel", call.ids.external_channel(call_id))]
            if self._blind_sent() or self.sent_to_fallback:  # the caller left Stasis
                targets.insert(0, Target("bridge", call.ids.bridge(call_id)))
        else:
            targets = call_targets(call.ids, call_id, reason is not EndReason.CALLER_HANGUP)
        if call.transfer.leftover():  # still ringing, or answered but never bridged
            targets.append(Target("channel", call.transfer.leftover()))
        left = remove_all(call.ari, targets, time.monotonic() + TEARDOWN_LIMIT, call_id)
        call.teardown_left = bool(left)

    def _blind_sent(self) -> bool:
        destination = self.call.transfer.destination
        return destination is not None and destination.blind

    def _report(self) -> None:
        call = self.call
        # The recording first: its state and seconds are in the counters the record keeps.
        call.recording_kept = call.recording.finish() if call.recording is not None else None
        counters = call.header.snapshot()
        usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads', ended ones too (benchmarks)
        media_ns = call.header.get(Slot.MEDIA_READY_NS) if call.media_ready else time.monotonic_ns()
        record = {
            "call_id": call.info.call_id,
            "caller": call.info.caller,
            "dialled": call.info.dialled,
            "end_reason": call.end_reason.name.lower(),
            "duration_s": round(time.monotonic() - call.started, 2),
            "frames_in": counters["frames_in"],
            "frames_out": counters["frames_out"],
            "barge_ins": counters["barge_ins"],
            "underruns": counters["underruns"],
            "setup_ms": call.timeline.as_ms(),
            "setup_bridge_retries": call.timeline.bridge_retries,
            "admitted_ns": call.info.admitted_ns,  # the machine's monotonic clock (benchmarks)
            "active_s": round((time.monotonic_ns() - media_ns) / 1e9, 3),  # media ready to now
            "rusage": {name: getattr(usage, name) for name in RUSAGE_FIELDS},
            "rusage_bridged": {name: getattr(call.rusage_bridged, name, 0) for name in RUSAGE_FIELDS},
            "usage": call.conversation.usage,
            "playout_lead": call.media.playout_lead() if call.media is not None else {"frames": 0},
            "transcript": _transcript(
                call.conversation.transcript.entries, call.settings.records_transcripts
            ),
        }
        if call.recording_kept is not None:
            record["recording"] = call.recording_kept
        if call.fatal_message:
            record["failure"] = call.fatal_message
        log.info(
            "call ended: %s after %.1f s, %d turns",
            record["end_reason"],
            record["duration_s"],
            len(record["transcript"]),
        )
        if call.spool.finish(final_record(_handover(call))) is None:  # the drainer takes it to the database
            call.header.set(Slot.RECORD_LOST, 1)  # counted and alerted on by the supervisor
        if call.settings.call_records_dir:
            directory = Path(call.settings.call_records_dir)
            try:  # whole or not at all, like the spool's (a reader never sees half a file)
                write_json_atomically(directory, f"{call.info.call_id}.json", record, indent=1)
            except OSError as exc:
                log.warning("cannot write the call record to %s: %s", directory, exc)


def _handover(call: Call) -> WorkerEnding:
    """What records/ is handed of the call at its end (records/handover.py)."""
    conversation = call.conversation
    transcript = conversation.transcript
    return WorkerEnding(
        counters=call.header.snapshot(),
        started_at=call.spool.started_at,
        admitted_ns=call.info.admitted_ns,
        end_reason=call.end_reason,
        teardown_left=call.teardown_left,
        failure=call.fatal_message,
        setup_ms=call.timeline.as_ms(),
        bridge_retries=call.timeline.bridge_retries,
        usage=conversation.usage,
        turns=list(getattr(transcript, "entries", transcript)),
        events=list(call.events),
        pricing=Pricing.for_settings(call.settings),
        transcripts=call.spool.transcripts,
        recording=call.recording_kept,
    )


def _transcript(entries: list[dict], keep_text: bool) -> list[dict]:
    """CALL_RECORDS_DIR's transcript: without what was said when RECORDS_TRANSCRIPTS=false,
    as in the database (who spoke when stays)."""
    if keep_text:
        return entries
    return [{k: v for k, v in entry.items() if k not in ("text", "heard")} for entry in entries]
