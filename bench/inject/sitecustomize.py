"""Loaded by every Python process started with bench/inject on PYTHONPATH (the benchmarks
put it there for `callbridge run`): when CALLBRIDGE_BENCH_REAP_LOG names a file, the
supervisor's `os.waitpid` becomes `os.wait4`, which returns the same (pid, status) and
the kernel's resource usage of the reaped child (all its threads, ended ones too). One
JSON line per reaped child goes to that file.

This is how the benchmarks count a worker's wake-ups and CPU for code whose call records
do not carry them (older refs): the code under test is unchanged, only how its
supervisor collects its children is observed.
"""

from __future__ import annotations

import json
import os

_LOG = os.environ.get("CALLBRIDGE_BENCH_REAP_LOG")

if _LOG:
    _waitpid = os.waitpid

    def _waitpid_with_usage(pid: int, options: int) -> tuple[int, int]:
        reaped, status, usage = os.wait4(pid, options)
        if reaped:
            line = {
                "pid": reaped,
                "ru_utime": usage.ru_utime,
                "ru_stime": usage.ru_stime,
                "ru_nvcsw": usage.ru_nvcsw,
                "ru_nivcsw": usage.ru_nivcsw,
                "ru_minflt": usage.ru_minflt,
            }
            with open(_LOG, "a") as log:
                log.write(json.dumps(line) + "\n")
        return reaped, status

    os.waitpid = _waitpid_with_usage
