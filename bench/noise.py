"""How much CPU other processes took while a benchmark ran.

The load average cannot tell: the benchmark's own threads raise it. Instead, this compares the
machine's busy CPU time (/proc/stat) with what this process and its children used (rusage).
"""

from __future__ import annotations

import os
import resource


def _busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class OtherWork:
    """`start()` before the runs, `share(wall_seconds)` after: other processes' CPU time as a
    share of what the machine had (None where /proc/stat is missing)."""

    def start(self) -> "OtherWork":
        self._busy, self._own = _busy_seconds(), _own_seconds()
        return self

    def share(self, wall_seconds: float) -> float | None:
        busy = _busy_seconds()
        if busy is None or self._busy is None or wall_seconds <= 0:
            return None
        other = max(0.0, (busy - self._busy) - (_own_seconds() - self._own))
        return other / (wall_seconds * (os.cpu_count() or 1))
