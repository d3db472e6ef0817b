"""`make dev` (`driftline dev`) leaves nothing running after Ctrl-C or SIGTERM: the Dagster
webserver, daemon and code servers (grandchildren), the MLflow UI, the reports server and, with a
deployment rendered, the serving stack (runtime, ingress, predictors in sessions of their own and
their gunicorn workers) and, with a Feast repo applied, the stream worker all end within 10 s.
Started in a session of its own, as a terminal runs a foreground job; Ctrl-C is SIGINT to the
whole foreground process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from driftline.process_tree import alive, descendants
from seldon.runtime import free_port

ROOT = Path(__file__).resolve().parents[1]
STOP_WITHIN_S = 10.0

pytestmark = [pytest.mark.daemon, pytest.mark.slow]  # `dagster dev` with its daemon: a minute on 2 cores


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _wait_up(dev: subprocess.Popen, urls: list[str], log: Path, timeout_s: float = 240) -> None:
    """Until every URL answers 200 and the code server runs (the webserver has loaded the location)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert dev.poll() is None, f"driftline dev exited early:\n{log.read_text()[-3000:]}"
        if all(_answers(u) for u in urls) and "grpc" in " ".join(_cmdlines(dev.pid)):
            return
        time.sleep(1)
    state = {u: _answers(u) for u in urls} | {"processes": _cmdlines(dev.pid)}
    pytest.fail(f"driftline dev not up within {timeout_s} s: {state}\n{log.read_text()[-3000:]}")


def _wait_for(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout_s} s"
        time.sleep(0.5)


def _cmdlines(root: int) -> list[str]:
    out = []
    for pid in descendants(root):
        with contextlib.suppress(OSError):
            out.append((Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return out


def _apply_feast_repo(data_dir: Path) -> None:
    """The Feast repo `driftline dev` starts the stream worker on (its `user_recent` view)."""
    from resources.feast_store import FeastStore
    from resources.lake import Lake

    FeastStore(lake=Lake(root=str(data_dir / "lake")), repo_dir=str(data_dir / "feast")).apply()


def _render_deployment(data_dir: Path) -> None:
    """A one-predictor SeldonDeployment of a tiny model where `driftline dev` looks for it."""
    from seldon import manifest as mf
    from testkit.artifacts import build_artifact

    artifact = build_artifact(data_dir / "models" / "v1", version="1")
    predictor = mf.Predictor("main", "driftline-fraud", "1", str(artifact), traffic=100, workers=1)
    mf.write(mf.render("fraud", "default", [predictor], image="x"), data_dir / "serving" / "seldondeployment.yaml")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", pytest.param("ctrl-c with serving", marks=pytest.mark.rabbitmq)])
def test_dev_leaves_no_process_after_ctrl_c_or_sigterm(tmp_path, how):
    ports = {name: free_port() for name in ("dagster", "mlflow", "reports", "ingress")}
    env = dict(
        os.environ,
        DRIFTLINE_DATA_DIR=str(tmp_path / "data"),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        DRIFTLINE_MLFLOW_UI=f"http://127.0.0.1:{ports['mlflow']}",
        DRIFTLINE_REPORTS_URL=f"http://127.0.0.1:{ports['reports']}",
        DRIFTLINE_INGRESS_URL=f"http://127.0.0.1:{ports['ingress']}",
    )
    env.pop("DRIFTLINE_INGRESS_JWT_SECRET", None)
    urls = [
        f"http://127.0.0.1:{ports['dagster']}/server_info",
        f"http://127.0.0.1:{ports['mlflow']}/health",
        f"http://127.0.0.1:{ports['reports']}/",
    ]
    worker_log = tmp_path / "data" / "stream" / "stream-worker.log"
    if "serving" in how:
        _render_deployment(tmp_path / "data")
        _apply_feast_repo(tmp_path / "data")
        urls.append(f"http://127.0.0.1:{ports['ingress']}/ready")
    log, started = tmp_path / "dev.log", {}
    with open(log, "wb") as out:  # the child writes to its own copy of the descriptor
        dev = subprocess.Popen(
            [sys.executable, "-m", "driftline.cli", "dev", "--port", str(ports["dagster"])],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session and process group: the terminal's foreground job
        )
    try:
        _wait_up(dev, urls, log)
        if "serving" in how:  # the stream worker too, on the broker (RabbitMQ) and the Feast repo
            _wait_for(lambda: " consuming {" in (worker_log.read_text() if worker_log.exists() else ""), 120)
        started = descendants(dev.pid)
        assert len(started) >= 4, _cmdlines(dev.pid)  # webserver, daemon, code server, MLflow UI at least
        interrupted = time.monotonic()
        if how.startswith("ctrl-c"):
            os.killpg(dev.pid, signal.SIGINT)  # the whole foreground group, as the terminal does
        else:
            dev.send_signal(signal.SIGTERM)  # the command alone, as `kill` or a supervisor does
        dev.wait(timeout=STOP_WITHIN_S + 5)
        while any(alive(p) for p in started.values()) and time.monotonic() - interrupted < STOP_WITHIN_S:
            time.sleep(0.1)
        took = time.monotonic() - interrupted
        left = [pid for pid, p in started.items() if alive(p)]
        assert not left, f"still running {took:.1f} s after {how}: {left}\n{log.read_text()[-3000:]}"
        assert took < STOP_WITHIN_S, took
        assert not any(_answers(u) for u in urls)
        text = log.read_text()
        assert "dev: stopped" in text and "still running" not in text, text[-3000:]
        if "serving" in how:
            assert "dev: stream worker pid" in text and "stopped:" in worker_log.read_text(), text[-3000:]
        print(f"{how}: {len(started)} processes stopped in {took:.1f} s")
    finally:
        for p in [*started.values(), *descendants(dev.pid).values()]:  # whatever a failure left
            if alive(p):
                os.kill(p.pid, signal.SIGKILL)
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)
