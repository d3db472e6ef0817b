"""Where the SeldonDeployment manifest goes: `local` (the runtime in .venv-serving on this
machine) or `kubernetes` (create-or-patch the custom object). Same manifest, either target.

The kubernetes client is imported only when that target is used: the code location must load
fast and the local setup does not need a cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import dagster as dg

from driftline import settings
from resources.canary_policy import CanaryPolicy
from resources.lake import Lake

ROOT = Path(__file__).resolve().parents[1]
GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"


class ManifestRejected(RuntimeError):
    """The API server refused the SeldonDeployment; the message is the server's."""


def _kubeconfig() -> str:
    return os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]


def _version(obj: Any) -> dict:
    """The accepted object's resourceVersion and generation: what the server stored."""
    meta = (obj or {}).get("metadata", {}) if isinstance(obj, dict) else {}
    return {k: meta[k] for k in ("resourceVersion", "generation") if k in meta}


class SeldonTarget(dg.ConfigurableResource):
    kind: str = "local"  # local | kubernetes
    namespace: str = "default"
    deployment_name: str = "fraud"
    image: str = "driftline/serving:dev"
    serving_dir: str = "data/serving"  # manifest, model artifacts, runtime state (local)
    lake: Lake | None = None  # where the local ingress writes the prediction log (local target)
    feast_repo: str = "data/feast"  # the Feast repo whose online store the predictors read (local)
    # Online features for raw transactions: "store" = predictors read the repo's sqlite online
    # store in-process (local target; sub-millisecond), "server" = they call `feast serve` at
    # feast_server_url, which the local runtime then starts (~20 ms a lookup). Kubernetes: server.
    online_features: str = "store"
    feast_server_url: str = "http://127.0.0.1:6566"
    ingress_url: str = "http://127.0.0.1:8080"
    # The canary controller's credentials for the ingress: an HS256 secret it mints admin tokens
    # with, or a pre-issued admin token (RS256 setups). Profiles pass dg.EnvVar; unset, they are
    # read (DRIFTLINE_INGRESS_JWT_SECRET / _ADMIN_TOKEN) when a token is needed.
    ingress_jwt_secret: str | None = None
    ingress_admin_token: str | None = None
    canary: CanaryPolicy = CanaryPolicy()  # the rollout's steps and checks (asset and canary sensor)
    # Where the canary sensor reads its figures (sensors/canary_metrics.py): "ingress" (the local
    # ingress's /metrics) or "prometheus" (PromQL at prometheus_url: the executor's request series
    # on a kubernetes target, the ingress's on a local one; the predictors' score histogram).
    metrics_source: str = "ingress"
    prometheus_url: str | None = None
    start_runtime: bool = True
    ready_timeout_s: float = 120.0
    kube_context: str | None = None
    kubeconfig_file: str | None = None  # outside a pod: None reads $KUBECONFIG or ~/.kube/config
    in_cluster: bool = False

    # ------------------------------------------------------------ paths
    @property
    def serving_path(self) -> Path:
        return Path(self.serving_dir).resolve()

    @property
    def manifest_path(self) -> Path:
        return self.serving_path / "seldondeployment.yaml"

    @property
    def state_dir(self) -> Path:
        return self.serving_path / "run"

    @property
    def feast_url(self) -> str:
        """The predictors' `feast_url` graph parameter: the repo (file://) or the feature server."""
        import yaml

        if self.online_features not in ("store", "server"):
            raise ValueError(f"SeldonTarget.online_features must be 'store' or 'server', got {self.online_features!r}")
        config = Path(self.feast_repo, "feature_store.yaml")
        if (
            self.kind == "local"
            and self.online_features == "store"
            and config.exists()
            and ((yaml.safe_load(config.read_text()) or {}).get("online_store") or {}).get("type") == "sqlite"
        ):
            return Path(self.feast_repo).resolve().as_uri()
        return self.feast_server_url

    def model_dir(self, version: str) -> Path:
        return self.serving_path / "models" / f"v{version}"

    # ------------------------------------------------------------ apply
    def apply(self, manifest: dict, api: Any = None) -> dict:
        """Make the target run this manifest; returns what was done (for metadata)."""
        if self.kind == "kubernetes":
            return self._apply_kubernetes(manifest, api or self._custom_objects_api())
        if self.kind != "local":
            raise ValueError(f"SeldonTarget.kind must be 'local' or 'kubernetes', got {self.kind!r}")
        from seldon import manifest as mf

        mf.write(manifest, self.manifest_path)
        out: dict[str, Any] = {"target": "local", "manifest": str(self.manifest_path)}
        if self.start_runtime:
            out["runtime_pid"] = self.ensure_runtime()
            out["endpoints"] = self.wait_ready(manifest)
        return out

    def current_manifest(self, api: Any = None) -> dict | None:
        if self.kind == "kubernetes":
            try:
                manifest = (api or self._custom_objects_api()).get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.deployment_name
                )
                return cast(dict, manifest)  # a custom object is a JSON object
            except Exception as err:  # ApiException without importing kubernetes
                if getattr(err, "status", None) == 404:
                    return None
                raise
        from seldon import manifest as mf

        return mf.load(self.manifest_path) if self.manifest_path.exists() else None

    def _apply_kubernetes(self, manifest: dict, api: Any) -> dict:
        args = (GROUP, VERSION, self.namespace, PLURAL)
        try:
            api.get_namespaced_custom_object(*args, self.deployment_name)
        except Exception as err:
            if getattr(err, "status", None) != 404:
                raise
            with self._server_verdict("create"):
                created = api.create_namespaced_custom_object(*args, manifest)
            return {"target": "kubernetes", "action": "created", "namespace": self.namespace, **_version(created)}
        with self._server_verdict("patch"):
            patched = api.patch_namespaced_custom_object(*args, self.deployment_name, manifest)
        return {"target": "kubernetes", "action": "patched", "namespace": self.namespace, **_version(patched)}

    @contextlib.contextmanager
    def _server_verdict(self, verb: str):
        """An API server's refusal of the manifest (schema validation: 422 Invalid; admission,
        e.g. a quota, or RBAC: 403 Forbidden) as an error that carries the server's own message,
        not the client's dump of headers."""
        try:
            yield
        except Exception as err:
            status = getattr(err, "status", None)
            if not isinstance(status, int) or status < 400:
                raise
            message = getattr(err, "body", None) or str(err)
            try:
                body = json.loads(message)
                message = f"{body.get('reason', '')}: {body.get('message', message)}"
            except (TypeError, ValueError):
                pass
            raise ManifestRejected(
                f"the Kubernetes API server refused to {verb} SeldonDeployment "
                f"{self.namespace}/{self.deployment_name} (HTTP {status}) {message}"
            ) from err

    def _custom_objects_api(self):
        from kubernetes import client, config

        if self.in_cluster:
            config.load_incluster_config()
        else:
            # config_file given: the module's default path is read from $KUBECONFIG at import
            config.load_kube_config(config_file=self.kubeconfig_file or _kubeconfig(), context=self.kube_context)
        return client.CustomObjectsApi()

    # ------------------------------------------------------------ the local runtime
    def runtime_pid(self) -> int | None:
        pid_file = self.state_dir / "runtime.pid"
        try:
            pid = int(pid_file.read_text())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def ensure_runtime(self) -> int:
        """Start `python -m seldon.runtime` in .venv-serving unless it already runs (detached)."""
        pid = self.runtime_pid()
        if pid:
            return pid
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.lake is None or self.lake.is_remote:
            raise ValueError("the local runtime needs SeldonTarget.lake, a local lake, for the prediction log")
        python = settings.get("DRIFTLINE_SERVING_PYTHON") or str(ROOT / ".venv-serving" / "bin" / "python")
        port = self.ingress_url.rsplit(":", 1)[-1].strip("/")
        cmd = [
            python,
            "-m",
            "seldon.runtime",
            "--manifest",
            str(self.manifest_path),
            "--state-dir",
            str(self.state_dir),
            "--port",
            port,
            "--lake",
            self.lake.url,
        ]
        if Path(self.feast_repo, "feature_store.yaml").exists() and self.feast_url.startswith("http"):
            cmd += [
                "--feast-repo",
                str(Path(self.feast_repo).resolve()),
                "--feast-port",
                self.feast_server_url.rsplit(":", 1)[-1].strip("/"),
            ]
        with open(self.state_dir / "runtime.log", "ab") as log:  # the runtime writes to its own copy
            proc = subprocess.Popen(cmd, cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (self.state_dir / "runtime.pid").write_text(str(proc.pid))
        return proc.pid

    def stop_runtime(self, timeout_s: float = 60.0) -> None:
        pid = self.runtime_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.runtime_pid() and time.monotonic() < deadline:
                time.sleep(0.2)

    def wait_ready(self, manifest: dict) -> dict:
        """Wait until every predictor of the manifest runs its version and is ready."""
        from seldon import manifest as mf

        wanted = {n: p["version"] for n, p in mf.summary(manifest).items()}
        path, deadline = self.state_dir / "endpoints.json", time.monotonic() + self.ready_timeout_s
        waiting: dict = {}
        while time.monotonic() < deadline:
            try:
                state = json.loads(path.read_text())
                eps, waiting = state["predictors"], state.get("waiting", {})
            except (OSError, ValueError, KeyError):
                eps = {}
            if set(eps) == set(wanted) and all(e["ready"] and e["version"] == wanted[n] for n, e in eps.items()):
                return {n: {"port": e["port"], "version": e["version"]} for n, e in eps.items()}
            time.sleep(0.3)
        why = "".join(f"; {n}: {problem}" for n, problem in sorted(waiting.items()) if n in wanted)
        raise TimeoutError(f"predictors {wanted} not ready within {self.ready_timeout_s}s{why}; see {self.state_dir}")

    # ------------------------------------------------------------ the ingress, for the controller
    def admin_token(self) -> str:
        """The controller's bearer token: the pre-issued one, or a 5-minute admin token."""
        token = settings.resolved(self.ingress_admin_token) or settings.get("DRIFTLINE_INGRESS_ADMIN_TOKEN")
        if token:
            return token
        secret = settings.resolved(self.ingress_jwt_secret) or settings.get("DRIFTLINE_INGRESS_JWT_SECRET")
        if not secret:
            raise ValueError(
                "set DRIFTLINE_INGRESS_ADMIN_TOKEN or DRIFTLINE_INGRESS_JWT_SECRET for the canary controller"
            )
        from seldon.auth import ADMIN, mint_token

        return mint_token(secret, scopes=ADMIN, subject="canary-controller", ttl_s=300)

    def ingress_metrics(self, timeout_s: float = 5.0) -> str:
        req = urllib.request.Request(
            f"{self.ingress_url}/metrics", headers={"Authorization": f"Bearer {self.admin_token()}"}
        )
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.read().decode()
