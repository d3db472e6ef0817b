"""`driftline dev` (`make dev`): the Dagster UI and daemon (sensors on, as in production) and,
once a model is deployed, the local serving stack, for people to explore. Ctrl-C stops all of it.

The serving stack is the one `seldon_deployment` last rendered (data/serving): after `make demo`
the ingress answers at once; on a fresh checkout it starts when `seldon_deployment` is first
materialized from the UI. `driftline endpoint` prints its URL and a curl example.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def run(args: argparse.Namespace) -> int:
    """`dagster dev` on the workspace plus the serving stack; its exit status."""
    from driftline import settings
    from driftline.jwt_secret import ingress_secret
    from resources import resources_for_env

    os.chdir(ROOT)  # workspace.yaml and the default data dir are relative to the checkout
    # shared by the ingress and the canary controller
    jwt_secret = ingress_secret(settings.load().data_dir, create=True)
    assert jwt_secret is not None  # create=True writes one when there is none
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = jwt_secret
    target = resources_for_env()["seldon_target"]
    started = start_serving(target)
    dagster = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            args.host,
            "-p",
            str(args.port),
        ],
        cwd=ROOT,
    )
    # `dagster dev` runs the webserver and the daemon; forward a stop request to it.
    signal.signal(signal.SIGTERM, lambda *_: dagster.send_signal(signal.SIGINT))
    try:
        return dagster.wait()
    except KeyboardInterrupt:
        dagster.send_signal(signal.SIGINT)
        return dagster.wait()
    finally:
        if started:
            target.stop_runtime()
            print("serving: stopped")
