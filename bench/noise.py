"""How much CPU other processes took while benchmark runs ran.

The load average cannot tell: the benchmark's own threads raise it. Instead, this compares the
machine's busy CPU time (/proc/stat) with what the runs' processes used (rusage of the waited
children). A run whose grandchildren are not waited for (Spark's JVM) must be left out, or its
CPU time would count as other work.
"""

from __future__ import annotations

import os
import resource
import time
from contextlib import contextmanager


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
    """Wrap each measured run in `measured()`; `share()` is other processes' CPU time as a share
    of what the machine had during those runs (None where /proc/stat is missing)."""

    def __init__(self) -> None:
        self.busy = self.own = self.wall = 0.0
        self.available = _busy_seconds() is not None

    @contextmanager
    def measured(self):
        busy0, own0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        try:
            yield
        finally:
            busy1 = _busy_seconds()
            if busy0 is not None and busy1 is not None:
                self.busy += busy1 - busy0
                self.own += _own_seconds() - own0
                self.wall += time.perf_counter() - t0

    def share(self) -> float | None:
        if not self.available or self.wall <= 0:
            return None
        return max(0.0, self.busy - self.own) / (self.wall * (os.cpu_count() or 1))
