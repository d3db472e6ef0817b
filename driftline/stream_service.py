"""The stream feature worker (`driftline stream worker`) as a child process of `make dev` and the
demo: started on the profile's Feast repo, its output in a log file under the data dir, stopped
with SIGTERM (it finishes its batch) like the other children.

The worker needs a reachable broker and an applied Feast repo (the `user_recent` view it pushes
to). When either is missing it is not started: `WorkerNotStarted` says why and the caller goes on
without the streaming part."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG_FILE = "stream-worker.log"  # under the data dir's stream/ folder
STOP_S = 15.0  # SIGTERM ends the current batch; a bootstrap still running is cut short after this


class WorkerNotStarted(RuntimeError):
    """Why the stream worker is not running; the text is for the user."""


def broker_problem(url: str | None, timeout_s: float = 2.0) -> str | None:
    """Why the broker at `url` cannot be reached (a TCP connect), or None when it can."""
    parts = urllib.parse.urlsplit(url or "")
    if parts.scheme not in ("amqp", "amqps"):
        return f"DRIFTLINE_BROKER_URL is not an amqp:// URL ({parts.scheme or 'unset'})"
    host, port = parts.hostname or "127.0.0.1", parts.port or (5671 if parts.scheme == "amqps" else 5672)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as err:
        return f"broker {host}:{port} unreachable ({err.strerror or err})"


@dataclass
class WorkerProcess:
    """A started `driftline stream worker` and its log."""

    proc: subprocess.Popen
    log_path: Path
    prefix: str
    log_start: int = 0  # where this run's output begins in the (appended) log file

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """This run's output so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_consuming(self, timeout_s: float) -> str | None:
        """Until the worker is bootstrapped and consuming; None then, else why not."""
        from streaming.consumer_loop import CONSUMING

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if CONSUMING in self.log():
                return None
            if self.proc.poll() is not None:
                tail = " | ".join(self.log().strip().splitlines()[-3:])
                return f"the stream worker exited ({self.proc.returncode}): {tail}"
            time.sleep(0.2)
        return f"the stream worker was not consuming within {timeout_s:.0f} s (see {self.log_path})"

    def stop(self, timeout_s: float = STOP_S) -> int | None:
        """SIGTERM (it finishes its batch and commits), SIGKILL after `timeout_s`; its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def start_stream_worker(
    env: Mapping[str, str] | None = None,
    *,
    prefix: str = "driftline",
    wait_s: float = 0.0,
    popen: Callable[..., subprocess.Popen] = subprocess.Popen,
) -> WorkerProcess:
    """Start the worker on the Feast repo of the data dir (`env` over os.environ); it bootstraps
    from the lake's raw_transactions, then consumes. With `wait_s`, wait until it consumes.
    `popen(cmd, **kwargs)` starts it (driftline dev passes its `Children.start`). Raises
    WorkerNotStarted with the reason when the broker or the Feast repo is missing."""
    from driftline import settings

    merged = {**os.environ, **(env or {})}
    problem = broker_problem(settings.get("DRIFTLINE_BROKER_URL", merged))
    if problem:
        raise WorkerNotStarted(problem)
    data_dir = Path(settings.load(merged).data_dir).resolve()
    feast_repo = data_dir / "feast"
    if not (feast_repo / "feature_store.yaml").exists():
        raise WorkerNotStarted(f"no Feast repo at {feast_repo} yet (materialize feast_registry, or run make demo)")
    log_path = data_dir / "stream" / LOG_FILE
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "driftline.cli", "stream", "--prefix", prefix,
        "worker", "--feast-repo", str(feast_repo), "--name", f"{prefix}-worker",
    ]  # fmt: skip
    with open(log_path, "ab") as log:  # the child writes to its own copy of the descriptor
        start = log.tell()
        proc = popen(cmd, cwd=ROOT, env=merged, stdout=log, stderr=subprocess.STDOUT)
    worker = WorkerProcess(proc, log_path, prefix, start)
    if wait_s > 0 and (problem := worker.wait_consuming(wait_s)):
        worker.stop()
        raise WorkerNotStarted(problem)
    return worker


def reset_streams(prefix: str, env: Mapping[str, str] | None = None) -> str | None:
    """Delete the streams under `prefix` (a clean demo replays nothing of the last one); None
    when done, else why not."""
    from driftline import settings
    from streaming.bus import open_bus

    merged = {**os.environ, **(env or {})}
    url = settings.get("DRIFTLINE_BROKER_URL", merged)
    if problem := broker_problem(url):
        return problem
    with open_bus(url, int(settings.get("DRIFTLINE_STREAM_PARTITIONS", merged) or 1), prefix) as bus:
        bus.delete_topology()
    return None
