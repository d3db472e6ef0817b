"""`make dev`: the Dagster UI and daemon (sensors on, as in production) and, once a model is
deployed, the local serving stack, for people to explore. Ctrl-C stops all of it.

    python -m scripts.dev [--host 127.0.0.1] [--port 3000]

The serving stack is the one `seldon_deployment` last rendered (data/serving): after `make demo`
the ingress answers at once; on a fresh checkout it starts when `seldon_deployment` is first
materialized from the UI.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_serving(target) -> bool:
    """Start the runtime for the last rendered manifest; False when there is nothing to serve."""
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
    print(f"serving: ingress {target.ingress_url}/seldon/{target.namespace}/{target.deployment_name}"
          f"/api/v1.0/predictions, predictors {endpoints} (runtime pid {pid})")
    return not already  # stop on exit only what this command started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default="3000")
    args = parser.parse_args(argv)
    from resources import resources_for_env

    if not os.environ.get("DRIFTLINE_INGRESS_JWT_SECRET"):  # shared by the ingress and the canary controller
        secret = Path(os.environ.get("DRIFTLINE_DATA_DIR", "data")) / "jwt.secret"
        if not secret.exists():
            secret.parent.mkdir(parents=True, exist_ok=True)
            secret.write_text(secrets.token_hex(32))
        os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = secret.read_text().strip()

    target = resources_for_env()["seldon_target"]
    started = start_serving(target)
    dagster = subprocess.Popen([str(ROOT / ".venv" / "bin" / "dagster"), "dev", "-w", "workspace.yaml",
                                "-h", args.host, "-p", str(args.port)], cwd=ROOT)
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


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
