"""Every manifest the deployment code renders validates against Seldon's own CRD schema, and the
kubernetes target creates or patches it (against a fake API object: no cluster here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from resources.seldon_target import GROUP, PLURAL, VERSION, SeldonTarget
from seldon import manifest as mf


def shared_dir() -> Path:
    return Path(os.environ.get("DRIFTLINE_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared")


SCHEMA = shared_dir() / "schemas" / "seldondeployment-v1.openapi.json"


@pytest.fixture(scope="module")
def validator():
    if not SCHEMA.exists():
        pytest.skip(f"CRD schema not found at {SCHEMA} (set DRIFTLINE_SHARED_DIR to the folder holding schemas/)")
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is needed to validate manifests")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def manifests():
    main = mf.Predictor("main", "driftline-fraud", "3", "/srv/models/v3", 100, feast_url="http://feast:6566")
    canary = mf.Predictor(
        "canary",
        "driftline-fraud",
        "4",
        "s3://bucket/mlartifacts/1/models/m-4/artifacts/artifacts/serving",
        10,
        s3_endpoint_url="http://minio.storage:9000",
        credentials_secret=mf.MODEL_STORE_SECRET,
    )
    shadow = mf.Predictor("shadow", "driftline-fraud", "5", "/srv/models/v5", 0, shadow=True)
    return {
        "single": mf.render("fraud", "default", [main], "driftline/serving:1"),
        "canary": mf.render(
            "fraud",
            "ml",
            [mf.Predictor(**{**main.__dict__, "traffic": 90}), canary],
            "driftline/serving:1",
            rollout={"canary": "4", "canary_weight": 10},
        ),
        "shadow": mf.render("fraud", "ml", [main, shadow], "driftline/serving:1", log_url="http://logger"),
        "rolled_back": mf.render(
            "fraud",
            "ml",
            [main, mf.Predictor(**{**canary.__dict__, "traffic": 0})],
            "driftline/serving:1",
            rollout={"action": "rollback"},
        ),
    }


@pytest.mark.parametrize("name", list(manifests()))
def test_rendered_manifests_validate_against_crd(validator, name):
    manifest = json.loads(json.dumps(manifests()[name]))  # plain JSON types, as the API server sees them
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    assert manifest["apiVersion"] == "machinelearning.seldon.io/v1" and manifest["kind"] == "SeldonDeployment"
    assert sum(p["traffic"] for p in manifest["spec"]["predictors"] if not p.get("shadow")) == 100


def test_broken_manifest_is_caught(validator):
    bad = manifests()["single"]
    bad["spec"]["predictors"][0]["traffic"] = "ten"
    bad["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["env"] = {"A": 1}
    assert len(list(validator.iter_errors(bad))) >= 2


def test_manifest_round_trip_and_summary(tmp_path):
    m = manifests()["canary"]
    for suffix in ("yaml", "json"):
        path = mf.write(m, tmp_path / f"sdep.{suffix}")
        assert mf.load(path) == m
    assert mf.summary(m) == {
        "main": {"traffic": 90, "shadow": False, "version": "3"},
        "canary": {"traffic": 10, "shadow": False, "version": "4"},
    }
    assert mf.rollout(m) == {"canary": "4", "canary_weight": 10}
    assert mf.parameters(m["spec"]["predictors"][0])["max_batch_rows"] == 10_000


def test_predictors_get_their_model_uri_and_are_ready_only_once_it_loaded():
    m = manifests()["canary"]
    main, canary = m["spec"]["predictors"]
    assert mf.parameters(main)["model_uri"] == "file:///srv/models/v3" == main["graph"]["modelUri"]
    assert "s3_endpoint_url" not in mf.parameters(main)  # only what is set
    uri = "s3://bucket/mlartifacts/1/models/m-4/artifacts/artifacts/serving"
    assert mf.parameters(canary)["model_uri"] == uri == canary["graph"]["modelUri"]
    assert mf.parameters(canary)["s3_endpoint_url"] == "http://minio.storage:9000"
    container = canary["componentSpecs"][0]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": mf.MODEL_STORE_SECRET, "optional": True}}]
    assert "envFrom" not in main["componentSpecs"][0]["spec"]["containers"][0]
    # readiness: the component's /health/status (503 until the model loaded); liveness: the process answers
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/status"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/ping"


class ApiException(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


class FakeCustomObjectsApi:
    """The three calls the target makes, with the kubernetes client's signatures."""

    def __init__(self):
        self.objects, self.calls = {}, []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", group, version, namespace, plural, name))
        if (namespace, name) not in self.objects:
            raise ApiException(404)
        return self.objects[(namespace, name)]

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", group, version, namespace, plural, body["metadata"]["name"]))
        self.objects[(namespace, body["metadata"]["name"])] = body

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append(("patch", group, version, namespace, plural, name))
        self.objects[(namespace, name)] = body


def test_kubernetes_target_creates_then_patches(validator):
    api = FakeCustomObjectsApi()
    target = SeldonTarget(kind="kubernetes", namespace="ml", deployment_name="fraud")
    first, second = manifests()["canary"], manifests()["rolled_back"]
    assert target.apply(first, api=api)["action"] == "created"
    assert target.apply(second, api=api)["action"] == "patched"
    assert [c[0] for c in api.calls] == ["get", "create", "get", "patch"]
    assert all(c[1:5] == (GROUP, VERSION, "ml", PLURAL) for c in api.calls)
    assert target.current_manifest(api=api) == second
    assert not list(validator.iter_errors(api.objects[("ml", "fraud")]))


def test_kubernetes_target_surfaces_other_api_errors():
    class Forbidden(FakeCustomObjectsApi):
        def get_namespaced_custom_object(self, *args):
            raise ApiException(403)

    with pytest.raises(ApiException):
        SeldonTarget(kind="kubernetes").apply(manifests()["single"], api=Forbidden())
    with pytest.raises(ValueError):
        SeldonTarget(kind="nomad").apply(manifests()["single"])


def test_seldon_package_stays_out_of_the_orchestration_stack():
    import subprocess
    import sys

    code = (
        "import sys, seldon.model, seldon.ingress, seldon.runtime, seldon.manifest; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dagster', 'mlflow', 'feast', 'lightning'}))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
