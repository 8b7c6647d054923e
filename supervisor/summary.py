"""The one summary line the supervisor logs for every call, however it ended."""

from __future__ import annotations

from supervisor.exits import Ending


def summary_line(entry, counters: dict, ending: Ending) -> str:
    return (
        f"call summary: caller={entry.caller or '-'} dialled={entry.dialled or '-'} "
        f"duration={entry.age():.1f}s end={ending.reason.name.lower()} worker={ending.how} "
        f"frames_in={counters['frames_in']} frames_out={counters['frames_out']} "
        f"barge_ins={counters['barge_ins']} underruns={counters['underruns']} "
        f"responses={counters['responses']} tokens_in={counters['input_tokens']} "
        f"tokens_out={counters['output_tokens']} reconnects={counters['reconnects']}"
    )
