"""`driftline dev` (`make dev`): the Dagster UI and daemon (sensors on, as in production), the
MLflow UI (the `mlflow_run` links in Dagster open it), the drift reports over http (the
`report_url` links of drift_report), the stream feature worker (driftline/stream_service.py:
fresh velocity features online, once the Feast repo exists) and, once a model is deployed, the
local serving stack, for people to explore. Ctrl-C (or SIGTERM) stops all of it, grandchildren included, within 10 s.

The serving stack is the one `seldon_deployment` last rendered (data/serving): after `make demo`
the ingress answers at once; on a fresh checkout it starts when `seldon_deployment` is first
materialized from the UI. `driftline endpoint` prints its URL and a curl example.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import socket
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Ctrl-C to the last process gone: grace for each to stop its way, then SIGTERM, then SIGKILL.
STOP_GRACE_S, STOP_TERM_S = 3.0, 2.5


def start_serving(target) -> bool:
    """Start the runtime for the last rendered manifest; False when there is nothing to serve."""
    from driftline.traffic import predictions_url
    from seldon import manifest as mf

    if target.kind != "local" or not target.manifest_path.exists():
        print("serving: no SeldonDeployment rendered yet; materialize seldon_deployment (or run `make demo`)")
        return False
    already = target.runtime_pid()
    pid = target.ensure_runtime()
    try:
        endpoints = target.wait_ready(mf.load(target.manifest_path))
    except TimeoutError as err:
        print(f"serving: runtime {pid} started but not ready: {err}")
        return not already
    print(
        f"serving: ingress {predictions_url(target.ingress_url, target.namespace, target.deployment_name)}, "
        f"predictors {endpoints} (runtime pid {pid})"
    )
    return not already  # stop on exit only what this command started


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address the Dagster UI listens on (default: %(default)s)")
    parser.add_argument("--port", default="3000", help="port of the Dagster UI (default: %(default)s)")


def _port_free(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    with socket.socket() as sock:
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) != 0


def _dagster_home(data_dir: Path) -> Path:
    """DAGSTER_HOME (the data dir's dagster_home when unset) with the local instance config."""
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(ROOT / "deployment" / "local" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def start_mlflow_ui(children, registry, log_dir: Path) -> str:
    """`mlflow server` on the registry's store, at the URL the `mlflow_run` links use
    (DRIFTLINE_MLFLOW_UI, which the registry resource's `ui_url` is set from)."""
    from driftline import settings

    url = settings.load().mlflow_ui
    if not _port_free(url):
        return f"{url} (not started: the port is taken)"
    parts = urllib.parse.urlsplit(url)
    with open(log_dir / "mlflow-ui.log", "ab") as log:  # the child writes to its own copy
        children.start(
            "mlflow ui",
            [
                str(BIN / "mlflow"),
                "server",
                "--backend-store-uri",
                str(settings.resolved(registry.tracking_uri)),
                "--artifacts-destination",
                str(Path(registry.artifact_root).resolve()),
                "--host",
                parts.hostname or "127.0.0.1",
                "--port",
                str(parts.port or 5000),
                "--workers",
                "1",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
    return url


def start_stream_worker(children) -> str:
    """The stream feature worker (fresh velocity features online), stopped with the rest on
    Ctrl-C; why not, when the broker or the Feast repo is missing."""
    from driftline import stream_service

    try:
        worker = stream_service.start_stream_worker(popen=functools.partial(children.start, "stream worker"))
    except stream_service.WorkerNotStarted as err:
        return f"not started: {err}"
    return f"pid {worker.pid} (log {worker.log_path})"


def run(args: argparse.Namespace) -> int:
    """`dagster dev` on the workspace, the MLflow UI, the reports and the serving stack until
    Ctrl-C / SIGTERM / SIGHUP or `dagster dev` ends; its exit status (130 on Ctrl-C)."""
    from driftline import report_links, settings
    from driftline.jwt_secret import ingress_secret
    from driftline.process_tree import Children, descendants
    from resources import resources_for_env

    os.chdir(ROOT)  # workspace.yaml and the default data dir are relative to the checkout
    data_dir = Path(settings.load().data_dir).resolve()
    home = _dagster_home(data_dir)
    # shared by the ingress and the canary controller
    jwt_secret = ingress_secret(data_dir, create=True)
    assert jwt_secret is not None  # create=True writes one when there is none
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = jwt_secret
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop as on Ctrl-C
        signal.signal(sig, signal.default_int_handler)
    children, reports, status = Children(), None, 0
    resources = resources_for_env()
    target = resources["seldon_target"]
    try:
        if start_serving(target) and (pid := target.runtime_pid()):
            children.adopt("serving", pid)
        dagster = children.start(
            "dagster dev",
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", args.host, "-p", str(args.port)],
            stop_signal=signal.SIGINT,  # what a terminal's Ctrl-C sends it
            cwd=ROOT,
        )
        mlflow_url = start_mlflow_ui(children, resources["mlflow_registry"], home)
        try:
            reports = report_links.serve(data_dir / "reports")
            reports_url = report_links.reports_base_url()
        except OSError as err:
            reports_url = f"not served ({err})"
        print(f"dev: Dagster UI http://{args.host}:{args.port}  (pid {dagster.pid}; DAGSTER_HOME {home})")
        print(f"dev: MLflow UI {mlflow_url}  (log {home / 'mlflow-ui.log'})")
        print(f"dev: drift reports {reports_url}  ({data_dir / 'reports'})")
        print(f"dev: stream worker {start_stream_worker(children)}")
        print("dev: Ctrl-C stops all of it", flush=True)
        while dagster.poll() is None:
            time.sleep(0.5)
        status = dagster.returncode
    except KeyboardInterrupt:
        status = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        pid = target.runtime_pid()  # a runtime started from the UI (by a run) is ours too
        if pid and pid in descendants(os.getpid()) and pid not in {c.pid for c in children.children}:
            children.adopt("serving", pid)
        print("dev: stopping ...", flush=True)
        left = children.stop(STOP_GRACE_S, STOP_TERM_S, report=lambda text: print(f"dev: {text}", flush=True))
        if reports is not None:
            reports.shutdown()
        print(f"dev: stopped{f'; still running: {left}' if left else ''}", flush=True)
    return status
