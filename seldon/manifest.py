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


@dataclass
class Predictor:
    """One predictor of the deployment: a model version behind a traffic weight."""

    name: str  # "main" | "canary" | "shadow"
    model_name: str
    model_version: str
    artifact_dir: str
    traffic: int = 100
    shadow: bool = False
    interface: str = DEFAULT_INTERFACE  # the class seldon-core-microservice loads (MODEL_NAME)
    feast_url: str = ""
    max_batch_rows: int = 10_000
    replicas: int = 1
    workers: int = 2
    extra_parameters: dict = field(default_factory=dict)


def _parameters(p: Predictor) -> list[dict]:
    params = [
        {"name": "artifact_dir", "type": "STRING", "value": p.artifact_dir},
        {"name": "model_name", "type": "STRING", "value": p.model_name},
        {"name": "model_version", "type": "STRING", "value": str(p.model_version)},
        {"name": "feast_url", "type": "STRING", "value": p.feast_url},
        {"name": "max_batch_rows", "type": "INT", "value": str(p.max_batch_rows)},
    ]
    return params + [{"name": k, "type": "STRING", "value": str(v)} for k, v in sorted(p.extra_parameters.items())]


def _component_spec(p: Predictor, image: str) -> dict:
    probe = {
        "httpGet": {"path": "/health/ping", "port": "http", "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    env = {
        "MODEL_NAME": p.interface,
        "SERVICE_TYPE": "MODEL",
        "GUNICORN_WORKERS": str(p.workers),
        "GUNICORN_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    return {
        "spec": {
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
                    "readinessProbe": probe,
                    "livenessProbe": {**probe, "initialDelaySeconds": 20},
                }
            ]
        }
    }


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
                "modelUri": Path(p.artifact_dir).resolve().as_uri() if "://" not in p.artifact_dir else p.artifact_dir,
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
