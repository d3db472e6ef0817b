"""The local runtime: makes the processes on this machine match the SeldonDeployment manifest.

    python -m seldon.runtime --manifest data/serving/seldondeployment.yaml --state-dir data/serving \
        --port 8080 --lake data/lake --feast-repo data/feast

Each predictor becomes one `seldon-core-microservice` (its container's MODEL_NAME, env and
graph parameters) on free loopback ports; a changed predictor is started beside the old one
and swapped in when ready; a crashed one is restarted. `endpoints.json` in the state dir
tells the ingress where the ready predictors listen. The ingress and `feast serve` run as
children too. SIGTERM stops everything, the ingress first so its prediction log is drained.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from seldon import manifest as mf

log = logging.getLogger("seldon.runtime")
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RETIRE_AFTER_S = 3.0  # the ingress re-reads endpoints every 0.25 s; in-flight requests finish meanwhile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM the child's own process group (gunicorn workers, metrics server), then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


class Predictor:
    """One running predictor process and what it was started from."""

    def __init__(self, name: str, spec: dict, log_dir: Path, deployment: str):
        self.name, self.spec, self.key = name, spec, spec_key(spec)
        self.params = mf.parameters(spec)
        self.port, self.restarts, self.ready = free_port(), 0, False
        self.problem = ""  # why /health/status says not ready (e.g. the model could not be loaded)
        env = {
            **os.environ,
            **mf.container_env(spec),
            "SELDON_DEPLOYMENT_ID": deployment,
            "PREDICTOR_ID": name,
            "PREDICTIVE_UNIT_ID": mf.CONTAINER,
            "PREDICTOR_LABELS": json.dumps({"version": f"v{self.params.get('model_version', '')}"}),
        }
        self.interface = env.pop("MODEL_NAME", mf.DEFAULT_INTERFACE)
        self.env, self.log_path = env, log_dir / f"predictor-{name}-{self.key[:8]}.log"
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        cmd = [  # seldon-core-microservice's command line, its HTTP side hardened (seldon/http_predictor.py)
            sys.executable,
            "-m",
            "seldon.http_predictor",
            self.interface,
            "--service-type",
            "MODEL",
            "--http-port",
            str(self.port),
            "--grpc-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--workers",
            self.env.get("GUNICORN_WORKERS", "1"),
            "--bind-host",  # loopback: the predictors have no auth; the ingress is the way in
            "127.0.0.1",
            "--grpc-workers",  # nothing here speaks gRPC to a predictor
            "0",
            "--parameters",
            json.dumps(self.spec["graph"].get("parameters", [])),
        ]
        with open(self.log_path, "ab") as out:  # the child writes to its own copy of the descriptor
            return subprocess.Popen(
                cmd, env=self.env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/status", timeout=1) as r:
                self.ready = json.loads(r.read()).get("status") == "ok"
        except urllib.error.HTTPError as err:  # 503: the component says why (seldon's error body)
            self.ready, self.problem = False, _reason(err)
        except OSError:
            self.ready = False
        return self.ready

    def restart(self, new_port: bool = False):
        """Start the process again; `new_port` for one that never came up (its port may have been
        taken between choosing it and binding it: free_port cannot reserve it)."""
        _stop(self.proc)
        if new_port:
            self.port = free_port()
        self.restarts += 1
        self.ready = False
        self.proc = self._spawn()

    def endpoint(self) -> dict:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "ready": self.ready,
            "pid": self.proc.pid,
            "version": str(self.params.get("model_version", "")),
            "restarts": self.restarts,
        }


def _reason(err: urllib.error.HTTPError) -> str:
    body = err.read().decode(errors="replace")
    try:
        return str(json.loads(body)["status"]["info"])
    except (ValueError, KeyError, TypeError):
        return f"{err.code} {body[:300]}"


def spec_key(spec: dict) -> str:
    """What requires a new process: everything but the traffic share."""
    stable = {k: v for k, v in spec.items() if k != "traffic"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()


class LocalRuntime:
    def __init__(
        self,
        manifest_path: str | Path,
        state_dir: str | Path,
        ingress_args: list[str] | None = None,
        feast_repo: str | None = None,
        feast_port: int = 6566,
        ready_timeout_s: float = 90.0,
    ):
        self.manifest_path, self.state_dir = Path(manifest_path), Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.endpoints_path = self.state_dir / "endpoints.json"
        self.ingress_args, self.feast_repo, self.feast_port = ingress_args, feast_repo, feast_port
        self.ready_timeout_s = ready_timeout_s
        self.running: dict[str, Predictor] = {}
        self.pending: dict[str, tuple[Predictor, float]] = {}  # replacements warming up
        self.children: dict[str, tuple[list, subprocess.Popen]] = {}
        self.retiring: list[tuple[Predictor, float]] = []  # swapped out; stopped once the ingress moved on
        self._stamp = None

    def _child(self, name: str, cmd: list[str]):
        with open(self.state_dir / f"{name}.log", "ab") as out:  # the child writes to its own copy
            self.children[name] = (
                cmd,
                subprocess.Popen(
                    cmd,
                    cwd=str(ROOT),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=dict(os.environ),
                    start_new_session=True,
                ),
            )

    def start(self):
        if self.feast_repo:
            from driftline import settings  # stdlib only

            feast = settings.get("DRIFTLINE_FEAST_BIN") or str(ROOT / ".venv" / "bin" / "feast")
            self._child("feast", [feast, "-c", self.feast_repo, "serve", "-h", "127.0.0.1", "-p", str(self.feast_port)])
        self.reconcile()
        if self.ingress_args is not None:
            self._child(
                "ingress",
                [
                    sys.executable,
                    "-m",
                    "seldon.ingress",
                    "--manifest",
                    str(self.manifest_path),
                    "--endpoints",
                    str(self.endpoints_path),
                    *self.ingress_args,
                ],
            )

    def reconcile(self):
        """One supervision tick: follow the manifest, restart crashes, promote warmed replacements."""
        stamp = os.stat(self.manifest_path).st_mtime_ns
        manifest = mf.load(self.manifest_path) if stamp != self._stamp else None
        if manifest is not None:
            self._stamp = stamp
            wanted = {p["name"]: p for p in manifest["spec"]["predictors"]}
            name = manifest["metadata"]["name"]
            for pname in [n for n in self.running if n not in wanted]:
                log.info("retiring predictor %s (removed from the manifest)", pname)
                self.retiring.append((self.running.pop(pname), time.monotonic() + RETIRE_AFTER_S))
            for pname, spec in wanted.items():
                current = self.running.get(pname) or (self.pending.get(pname) or (None,))[0]
                if current is None or current.key != spec_key(spec):
                    if pname in self.pending:
                        _stop(self.pending.pop(pname)[0].proc)
                    log.info(
                        "starting predictor %s (model version %s)", pname, mf.parameters(spec).get("model_version")
                    )
                    self.pending[pname] = (Predictor(pname, spec, self.state_dir, name), time.monotonic())
        for pname, (pred, since) in list(self.pending.items()):
            problem = pred.problem
            if pred.check_ready():
                old = self.running.get(pname)
                self.running[pname] = pred
                del self.pending[pname]
                self._write_endpoints()
                if old is not None and old is not pred:
                    self.retiring.append((old, time.monotonic() + RETIRE_AFTER_S))
            elif pred.problem != problem:
                log.error("predictor %s is not ready: %s (%s)", pname, pred.problem, pred.log_path)
            elif pred.proc.poll() is not None or time.monotonic() - since > self.ready_timeout_s:
                log.warning("predictor %s failed to start; see %s", pname, pred.log_path)
                pred.restart(new_port=True)  # not in endpoints yet: nobody routes to the old port
                self.pending[pname] = (pred, time.monotonic())
        for pname, pred in self.running.items():
            if pred.proc.poll() is not None:
                log.warning("predictor %s exited (%s); restarting", pname, pred.proc.returncode)
                pred.restart()
                self._write_endpoints()
                self.pending[pname], self.running[pname] = (pred, time.monotonic()), pred
        for pred, when in [r for r in self.retiring if r[1] <= time.monotonic()]:
            _stop(pred.proc)
            self.retiring.remove((pred, when))
        for cname, (cmd, proc) in list(self.children.items()):
            if proc.poll() is not None:
                log.warning("%s exited (%s); restarting", cname, proc.returncode)
                self._child(cname, cmd)
        self._write_endpoints()

    def _write_endpoints(self):
        data: dict[str, dict] = {"predictors": {n: p.endpoint() for n, p in self.running.items()}}
        waiting = {n: p.problem for n, (p, _) in self.pending.items() if p.problem}
        if waiting:  # why a predictor is not ready yet: SeldonTarget.wait_ready reports it
            data["waiting"] = waiting
        text = json.dumps(data, indent=1, sort_keys=True)
        if not self.endpoints_path.exists() or self.endpoints_path.read_text() != text:
            tmp = self.endpoints_path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.endpoints_path)

    def stop(self):
        if "ingress" in self.children:
            _stop(self.children.pop("ingress")[1], timeout_s=60)
        for pred in [*self.running.values(), *(p for p, _ in self.pending.values()), *(p for p, _ in self.retiring)]:
            _stop(pred.proc)
        for _, proc in self.children.values():
            _stop(proc)
        self.running.clear()
        self.pending.clear()
        self._write_endpoints()


def main(argv=None):
    p = argparse.ArgumentParser(description="Run a SeldonDeployment manifest on this machine.")
    p.add_argument("--manifest", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--feast-repo", help="start `feast serve` for this repo dir")
    p.add_argument("--feast-port", type=int, default=6566)
    p.add_argument("--no-ingress", action="store_true")
    args, ingress_args = p.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runtime = LocalRuntime(
        args.manifest, args.state_dir, None if args.no_ingress else ingress_args, args.feast_repo, args.feast_port
    )
    (runtime.state_dir / "runtime.pid").write_text(str(os.getpid()))
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(1))
    runtime.start()
    while not stopping:
        try:
            runtime.reconcile()
        except Exception:  # a bad manifest must not take the running predictors down
            log.exception("reconcile failed; keeping the current processes")
        time.sleep(0.5)
    runtime.stop()
    (runtime.state_dir / "runtime.pid").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
