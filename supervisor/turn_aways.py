"""Callers being turned away, and how many helpers may work on them at once.

Every step of turning a caller away is an ARI request, so it runs in helpers
(supervisor/turn_away.py). It used to be one helper per caller, each alive for up to about
70 s (the prompt, then the hang-up's retries): a flood of callers over capacity forked
without bound, until the unit's TasksMax or MemoryMax stopped everything. Now:

- at most PROMPTS callers at once hear BUSY_PROMPT, each in a helper of its own (`prompt`);
- every other caller waiting is handled by one batch helper at a time (`refuse`): sent to
  its fallback, or hung up at once with the busy cause (17: the caller's phone plays the
  network's busy tone, as for any busy line), with no prompt and no waiting;
- a caller whose helper could not start stays queued and is tried again on the tick: no
  caller is ever left in Stasis, and none is counted twice.

So the service never has more than PROMPTS + 1 turn-away helpers, however many call.
This class only keeps the state; the supervisor starts the helpers
(supervisor/turning_away.py::TurnAwayDesk.pump).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

PROMPTS = 4  # callers hearing the busy prompt at once: a few turned away politely
BATCH = 200  # callers one refusing helper takes at a time
TRIES = 5  # batches a caller may be in: an Asterisk refusing every hang-up must not loop forever


@dataclass(frozen=True)
class Waiting:
    channel_id: str
    why: str
    fallback: object = None  # a callbridge.dialplan.DialplanTarget, or None
    tries: int = 0  # batches it was in that did not finish it
    prompt: bool = True  # False: refused at once even when a prompt helper is free


class TurnAways:
    def __init__(self, prompts: int = PROMPTS, batch: int = BATCH) -> None:
        self.prompts = prompts
        self.batch = batch
        self.queue: OrderedDict[str, Waiting] = OrderedDict()
        self.prompting: set[str] = set()
        self.refusing: set[str] = set()

    def __contains__(self, channel_id: str) -> bool:
        return channel_id in self.queue or channel_id in self.prompting or channel_id in self.refusing

    def __len__(self) -> int:
        return len(self.queue) + len(self.prompting) + len(self.refusing)

    def ours(self) -> set[str]:
        """Every caller we are turning away (reconciliation must not take them as new)."""
        return set(self.queue) | self.prompting | self.refusing

    def add(self, waiting: Waiting) -> bool:
        """Queue a caller; False when it is being turned away already."""
        if waiting.channel_id in self:
            return False
        self.queue[waiting.channel_id] = waiting
        return True

    def add_refusal(self, channel_id: str, why: str) -> bool:
        """Queue a caller to be refused at once, never prompted."""
        return self.add(Waiting(channel_id, why, prompt=False))

    def next_prompt(self) -> Waiting | None:
        """The oldest waiting caller that may hear the prompt, when a prompt helper is free."""
        if not self.queue or len(self.prompting) >= self.prompts:
            return None
        waiting = next((w for w in self.queue.values() if w.prompt), None)
        if waiting is None:
            return None
        del self.queue[waiting.channel_id]
        self.prompting.add(waiting.channel_id)
        return waiting

    def next_batch(self) -> list[Waiting]:
        """The callers for a refusing helper, when none is at work."""
        if not self.queue or self.refusing:
            return []
        taken = []
        while self.queue and len(taken) < self.batch:
            taken.append(self.queue.popitem(last=False)[1])
        self.refusing.update(w.channel_id for w in taken)
        return taken

    def prompt_done(self, channel_id: str) -> None:
        self.prompting.discard(channel_id)

    def batch_done(self, left: list[Waiting] = ()) -> list[Waiting]:
        """The batch helper ended; `left` is what it did not finish (first in line again).
        Returns the callers given up on after TRIES batches."""
        self.refusing.clear()
        given_up = []
        for waiting in reversed(list(left)):
            waiting = replace(waiting, tries=waiting.tries + 1)
            if waiting.tries >= TRIES:
                given_up.append(waiting)
                continue
            self.queue[waiting.channel_id] = waiting
            self.queue.move_to_end(waiting.channel_id, last=False)
        return given_up

    def unstarted(self, waiting: Waiting, prompting: bool) -> None:
        """A helper could not start: back to the front of the queue."""
        (self.prompting if prompting else self.refusing).discard(waiting.channel_id)
        self.queue[waiting.channel_id] = waiting
        self.queue.move_to_end(waiting.channel_id, last=False)
