"""Stop every process a command started, grandchildren included, within a time budget.

`dagster dev` runs the webserver and the daemon, which run code servers; the serving runtime runs
predictors in sessions of their own, which run gunicorn workers. Signalling only the children
leaves the rest running (the bug of issue 17). So `Children` starts each child in its own session,
makes this process a child subreaper (Linux: orphaned descendants are re-parented to it rather
than to init, so none escapes the walk of /proc), and `stop()` asks each child to stop its way
(SIGINT for `dagster dev`, as a terminal's Ctrl-C would, SIGTERM for the rest), then SIGTERMs
and finally SIGKILLs every descendant still alive, process groups included.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

_PR_SET_CHILD_SUBREAPER = 36
PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    """A process as /proc shows it; `start` (clock ticks since boot) tells it from a reused pid."""

    pid: int
    ppid: int
    pgid: int
    start: int
    zombie: bool


def _read(pid: int) -> Proc | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
    rest = text[text.rindex(")") + 2 :].split()
    return Proc(pid, int(rest[1]), int(rest[2]), int(rest[19]), rest[0] in ("Z", "X"))


def snapshot() -> dict[int, Proc]:
    """Every process /proc lists now."""
    out = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit() and (p := _read(int(entry.name))):
            out[p.pid] = p
    return out


def descendants(root: int, procs: dict[int, Proc] | None = None) -> dict[int, Proc]:
    """The live (not zombie) descendants of `root`, by parent links."""
    procs = snapshot() if procs is None else procs
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out[pid] = procs[pid]
        todo += children.get(pid, [])
    return {pid: p for pid, p in out.items() if not p.zombie}


def command(p: Proc, width: int = 80) -> str:
    """`pid: command line` (shortened), for messages."""
    try:
        text = (PROC / str(p.pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        text = "?"
    return f"{p.pid}: {text[:width]}"


def alive(p: Proc) -> bool:
    """`p` still runs (the same process: a reused pid has another start time)."""
    now = _read(p.pid)
    return now is not None and now.start == p.start and not now.zombie


def become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux only; False elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap() -> None:
    """Collect exited descendants re-parented to this subreaper (no zombies left behind)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _signal(p: Proc, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group and p.pgid == p.pid and p.pgid != os.getpgrp():
            os.killpg(p.pgid, sig)
        elif alive(p):
            os.kill(p.pid, sig)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen | None  # None: adopted by pid (started by someone else's code)
    pid: int
    stop_signal: int


@dataclass
class Children:
    """The processes a command started (`start`, `adopt`) and their descendants, stopped together."""

    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        become_subreaper()

    def start(self, name: str, cmd: list[str], stop_signal: int = signal.SIGTERM, **popen) -> subprocess.Popen:
        """`cmd` in a session of its own: a terminal's Ctrl-C reaches us only, and we stop it."""
        proc = subprocess.Popen(cmd, start_new_session=True, **popen)
        self.children.append(Child(name, proc, proc.pid, stop_signal))
        return proc

    def adopt(self, name: str, pid: int, stop_signal: int = signal.SIGTERM) -> None:
        """A child started elsewhere (the serving runtime) that `stop()` stops too."""
        self.children.append(Child(name, None, pid, stop_signal))

    def exited(self) -> list[str]:
        """Names of started children that have exited on their own."""
        return [c.name for c in self.children if c.proc is not None and c.proc.poll() is not None]

    def stop(self, grace_s: float = 5.0, term_s: float = 2.5, report: Callable[[str], None] | None = None) -> list[int]:
        """Each child's stop signal to its process group, up to `grace_s` for all to end;
        then SIGTERM and, `term_s` later, SIGKILL to every descendant left. The pids still alive."""
        me = os.getpid()
        seen = descendants(me)
        for child in self.children:
            p = seen.get(child.pid) or _read(child.pid)
            if p is not None and not p.zombie:
                _signal(p, child.stop_signal, group=True)
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, term_s)):
            if not self._wait(seen, wait_s):
                break
            left = [p for p in seen.values() if alive(p)]
            if report:
                report(f"{signal.Signals(sig).name} to {len(left)} left: " + "; ".join(map(command, left)))
            for p in left:
                _signal(p, sig, group=True)
                _signal(p, sig, group=False)
        self._wait(seen, 1.0)
        for child in self.children:
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=0.1)
        reap()
        return sorted(pid for pid, p in seen.items() if alive(p))

    def _wait(self, seen: dict[int, Proc], timeout_s: float) -> bool:
        """Wait for every process in `seen` (and any descendant that appears meanwhile) to end;
        True when some are still alive at the deadline."""
        deadline = time.monotonic() + timeout_s
        while True:
            reap()
            seen.update(descendants(os.getpid()))
            if not any(alive(p) for p in seen.values()):
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.1)
