"""The terminal of `make demo`: the timeline and a progress bar on it, everything else to a log file.

Dagster's event stream (its console logger writes DEBUG lines to stderr), the libraries' prints
and warnings and the output of child processes all go through file descriptors 1 and 2, so
`Console` points both at the log file and keeps a private copy of the terminal for the timeline.
`verbose=True` leaves the descriptors alone: everything shows live, as before.

A progress bar tracks a long step (days ingested, training epochs) between two timeline lines:
`track(label, poll)` polls `poll() -> (done, total)` from a thread; the next line ends it. It is
drawn on a terminal only (a pipe, as in tests and CI, gets the timeline lines alone).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

BAR_WIDTH = 30
POLL_S = 1.0


class Console:
    def __init__(self, log_path: Path, verbose: bool = False) -> None:
        self.log_path, self.verbose = Path(log_path), verbose
        self.out: TextIO = sys.stdout
        self._saved: list[int] = []
        self._lock = threading.Lock()
        self._bar = ""
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Console:
        if self.verbose:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._saved = [os.dup(1), os.dup(2)]
        self.out = os.fdopen(os.dup(self._saved[0]), "w", buffering=1)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        return self

    def __exit__(self, *exc) -> None:
        self.end_progress()
        if not self._saved:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in zip((1, 2), self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = []
        self.out.close()
        self.out = sys.stdout

    @property
    def interactive(self) -> bool:
        return self.out.isatty()

    def line(self, text: str) -> None:
        """A line of the timeline; it ends the progress bar of the step before it."""
        self.end_progress()
        with self._lock:
            print(text, file=self.out, flush=True)

    def tail(self, lines: int = 40) -> str:
        """The log file's last lines (shown when the demo fails)."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # ------------------------------------------------------------------ the progress bar
    def track(self, label: str, poll: Callable[[], tuple[int, int]]) -> None:
        """Show `poll()`'s (done, total) as a bar until the next timeline line."""
        self.end_progress()
        if not self.interactive:
            return
        self._stop = stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(Exception):  # a failed poll only skips a redraw
                    done, total = poll()
                    self._draw(label, done, total)
                stop.wait(POLL_S)

        self._thread = threading.Thread(target=loop, name="demo-progress", daemon=True)
        self._thread.start()

    def _draw(self, label: str, done: int, total: int) -> None:
        total = max(total, 1)
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
        bar = f"  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {min(done, total)}/{total} {label}"
        with self._lock:
            self._bar = bar
            self.out.write("\r\033[K" + bar)
            self.out.flush()

    def end_progress(self) -> None:
        if self._stop is not None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._stop = self._thread = None
        with self._lock:
            if self._bar:
                self.out.write("\r\033[K")
                self.out.flush()
                self._bar = ""
