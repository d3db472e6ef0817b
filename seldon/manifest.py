"""The SeldonDeployment manifest: rendered by the `seldon_deployment` asset, read by the local
runtime and the ingress. Plain dicts and stdlib only, so both environments share one definition
and the manifest stays the single source of truth for every target.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

API_VERSION = "machinelearning.seldon.io/v1"
KIND = "SeldonDeployment"
CONTAINER = "fraud-model"
DEFAULT_INTERFACE = "seldon.model.FraudModel"
ROLLOUT_ANNOTATION = "driftline.io/rollout"
# The optional Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) become the
# predictor's environment in a cluster: read access to the bucket holding the models, nothing else.
MODEL_STORE_SECRET = "driftline-model-store"


@dataclass
class Predictor:
    """One predictor of the deployment: a model version behind a traffic weight."""

    name: str  # "main" | "canary" | "shadow"
    model_name: str
    model_version: str
    model_uri: str  # s3://bucket/prefix, file:///dir or a local path: the serving artifact's folder
    traffic: int = 100
    shadow: bool = False
    interface: str = DEFAULT_INTERFACE  # the class seldon-core-microservice loads (MODEL_NAME)
    feast_url: str = ""
    max_batch_rows: int = 10_000
    replicas: int = 1
    workers: int = 2
    s3_endpoint_url: str = ""  # the object store holding model_uri, when not AWS (or the pod's env says)
    s3_region: str = ""
    credentials_secret: str = ""  # a Secret for the container's env (kubernetes: MODEL_STORE_SECRET)
    extra_parameters: dict = field(default_factory=dict)


def model_uri(location: str) -> str:
    """The URI of a model location: URIs as they are, a local path as an absolute file:// URI."""
    return location if "://" in location else Path(location).resolve().as_uri()


def _parameters(p: Predictor) -> list[dict]:
    params = [
        {"name": "model_uri", "type": "STRING", "value": model_uri(p.model_uri)},
        {"name": "model_name", "type": "STRING", "value": p.model_name},
        {"name": "model_version", "type": "STRING", "value": str(p.model_version)},
        {"name": "feast_url", "type": "STRING", "value": p.feast_url},
        {"name": "max_batch_rows", "type": "INT", "value": str(p.max_batch_rows)},
    ]
    params += [
        {"name": name, "type": "STRING", "value": value}
        for name, value in (("s3_endpoint_url", p.s3_endpoint_url), ("s3_region", p.s3_region))
        if value
    ]
    return params + [{"name": k, "type": "STRING", "value": str(v)} for k, v in sorted(p.extra_parameters.items())]


def _component_spec(p: Predictor, image: str) -> dict:
    # Readiness is the component's /health/status: 503 naming the model URI and the problem until
    # the model is loaded. Liveness is /health/ping: a predictor whose model cannot be loaded stays
    # up and unready (its log says why) instead of restarting in a loop.
    probe = {
        "httpGet": {"path": "/health/status", "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    liveness = {**probe, "httpGet": {**probe["httpGet"], "path": "/health/ping"}, "initialDelaySeconds": 20}
    env = {
        "MODEL_NAME": p.interface,
        "SERVICE_TYPE": "MODEL",
        "GUNICORN_WORKERS": str(p.workers),
        "GUNICORN_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    container = {
        "name": CONTAINER,
        "image": image,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "readinessProbe": probe,
        "livenessProbe": liveness,
    }
    if p.credentials_secret:  # optional: without it (IAM by other means, a public bucket) the pod still starts
        container["envFrom"] = [{"secretRef": {"name": p.credentials_secret, "optional": True}}]
    return {"spec": {"containers": [container]}}


def render(
    name: str, namespace: str, predictors: list[Predictor], image: str, rollout: dict | None = None, log_url: str = ""
) -> dict:
    """A `machinelearning.seldon.io/v1` SeldonDeployment with request logging on every predictor."""
    logger = {"mode": "all", **({"url": log_url} if log_url else {})}
    specs = []
    for p in predictors:
        spec = {
            "name": p.name,
            "replicas": p.replicas,
            "traffic": int(p.traffic),
            "labels": {"version": f"v{p.model_version}", "driftline.io/predictor": p.name},
            "componentSpecs": [_component_spec(p, image)],
            "graph": {
                "name": CONTAINER,
                "type": "MODEL",
                "endpoint": {"type": "REST"},
                # Informational for a custom container: Seldon's operator injects its storage
                # initializer for prepackaged servers only; FraudModel fetches the `model_uri` parameter.
                "modelUri": model_uri(p.model_uri),
                "parameters": _parameters(p),
                "logger": logger,
                "children": [],
            },
        }
        if p.shadow:
            spec["shadow"] = True
        specs.append(spec)
    annotations = {"seldon.io/rest-timeout": "5000"}
    if rollout is not None:
        annotations[ROLLOUT_ANNOTATION] = json.dumps(rollout, sort_keys=True)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "driftline"}},
        "spec": {"name": name, "annotations": annotations, "predictors": specs},
    }


def load(path: str | Path) -> dict:
    """Read a manifest written as JSON or YAML."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def write(manifest: dict, path: str | Path) -> Path:
    """Atomic write (temp + rename): readers polling the file never see half a manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        text = yaml.safe_dump(manifest, sort_keys=False)
    else:
        text = json.dumps(manifest, indent=2)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def parameters(predictor_spec: dict) -> dict:
    """Graph parameters of a rendered predictor as {name: value} (typed like seldon does)."""
    out = {}
    for p in predictor_spec["graph"].get("parameters", []):
        out[p["name"]] = int(p["value"]) if p.get("type") == "INT" else p["value"]
    return out


def container_env(predictor_spec: dict) -> dict:
    container = predictor_spec["componentSpecs"][0]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def rollout(manifest: dict) -> dict:
    raw = manifest["spec"].get("annotations", {}).get(ROLLOUT_ANNOTATION)
    return json.loads(raw) if raw else {}


def summary(manifest: dict) -> dict[str, dict]:
    """{predictor: {traffic, shadow, version}}: what the ingress routes by."""
    return {
        p["name"]: {
            "traffic": int(p.get("traffic", 0)),
            "shadow": bool(p.get("shadow", False)),
            "version": parameters(p).get("model_version", ""),
        }
        for p in manifest["spec"]["predictors"]
    }
