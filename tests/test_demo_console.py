"""`make demo`'s terminal: the timeline only (with a progress bar on a terminal), Dagster's event
stream and every other output (Python's, logging's, child processes') in the log file; `--verbose`
shows everything live."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import logging, subprocess, sys, time
    from pathlib import Path
    from driftline.console import Console
    from driftline.demo import Timeline

    polls = iter(range(100))
    with Console(Path(sys.argv[1]), verbose=sys.argv[2] == "verbose") as console:
        timeline = Timeline(console, {"1. ": ("days ingested", lambda: (next(polls), 10))})
        timeline("1. ten days")
        print("a library's print")
        logging.getLogger("dagster").warning("DEBUG-like event stream line")
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child output\\\\n')"], check=True)
        time.sleep(2.5)  # the bar redraws
        timeline("2. done")
    print("after the demo")
    """
)
NOISE = ("a library's print", "DEBUG-like event stream line", "child output")


def _run(tmp_path: Path, mode: str, tty: bool = False) -> tuple[str, str]:
    log = tmp_path / "demo.log"
    if not tty:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(log), mode],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout + out.stderr, log.read_text() if log.exists() else ""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(log), mode], cwd=ROOT, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace"), log.read_text()


def test_the_terminal_gets_the_timeline_and_the_log_file_the_rest(tmp_path):
    shown, logged = _run(tmp_path, "quiet")
    lines = shown.splitlines()
    assert [line.split("] ", 1)[1] for line in lines if line.startswith("[")] == ["1. ten days", "2. done"]
    assert lines[-1] == "after the demo"  # the descriptors are restored afterwards
    assert not any(n in shown for n in NOISE), shown
    assert all(n in logged for n in NOISE), logged
    assert "#" not in shown  # no progress bar on a pipe


def test_a_terminal_gets_a_progress_bar_between_timeline_lines(tmp_path):
    shown, logged = _run(tmp_path, "quiet", tty=True)
    assert "/10 days ingested" in shown and "[#" in shown, shown
    assert shown.index("1. ten days") < shown.index("/10 days ingested") < shown.index("2. done")
    assert not any(n in shown for n in NOISE) and all(n in logged for n in NOISE)


def test_verbose_shows_everything_live(tmp_path):
    shown, logged = _run(tmp_path, "verbose")
    assert all(n in shown for n in NOISE) and "1. ten days" in shown
    assert logged == ""
