"""deployment/: core manifests against Kubernetes K8S_VERSION (kubernetes-validate, strict),
SeldonDeployments against Seldon's v1 CRD schema, Istio policies against the local ingress's
scopes, Dockerfiles against the distributions `make setup` installs, and the sink."""

from __future__ import annotations

import http.client
import json
import re
import threading
from pathlib import Path

import kubernetes_validate
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deployment" / "k8s"
K8S_VERSION = "1.33.0"
SELDON_SCHEMA = ROOT.parent / "shared" / "schemas" / "seldondeployment-v1.openapi.json"
CORE_GROUPS = ("v1", "apps/v1", "batch/v1")


def _documents():
    return [(f.name, d) for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def _core():
    return [(n, d) for n, d in _documents() if d["apiVersion"] in CORE_GROUPS]


@pytest.mark.parametrize("name,doc", _core(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_core_manifest_is_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_manifest_is_checked_by_one_validator():
    kinds = {(d["apiVersion"], d["kind"]) for _, d in _documents()}
    known = {a for a, _ in kinds if a in CORE_GROUPS} | {"machinelearning.seldon.io/v1", "security.istio.io/v1"}
    assert {a for a, _ in kinds} <= known
    assert {"Deployment", "Service", "SeldonDeployment", "AuthorizationPolicy", "RequestAuthentication"} <= {
        k for _, k in kinds
    }


def test_strict_validation_catches_a_typo():
    doc = next(d for _, d in _core() if d["kind"] == "Deployment")
    bad = json.loads(json.dumps(doc))
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_seldon_deployments_match_the_crd_schema():
    if not SELDON_SCHEMA.exists():
        pytest.skip(f"{SELDON_SCHEMA} is absent: no CRD schema to validate against")
    from jsonschema import Draft7Validator

    validator = Draft7Validator(json.loads(SELDON_SCHEMA.read_text()))
    sdeps = [d for _, d in _documents() if d["kind"] == "SeldonDeployment"]
    assert sdeps
    for sdep in sdeps:
        errors = ["/".join(map(str, e.absolute_path)) + ": " + e.message for e in validator.iter_errors(sdep)]
        assert not errors, errors
        predictors = sdep["spec"]["predictors"]
        assert sum(p["traffic"] for p in predictors) == 100  # a rule the schema does not check
        assert {p["labels"]["driftline.io/alias"] for p in predictors} == {"champion", "challenger"}
        assert all("prediction-log-sink" in p["graph"]["logger"]["url"] for p in predictors)
    bad = json.loads(json.dumps(sdeps[0]))
    bad["spec"]["predictors"][0]["traffic"] = "ninety"
    assert not validator.is_valid(bad)


def test_istio_policies_require_the_local_ingress_scopes():
    from seldon.auth import ADMIN, PREDICT

    docs = {d["metadata"]["name"]: d for _, d in _documents() if d["apiVersion"] == "security.istio.io/v1"}
    jwt_rules = docs["driftline-jwt"]["spec"]["jwtRules"]
    assert jwt_rules and all(r["issuer"] and r["jwksUri"] for r in jwt_rules)
    allow = docs["driftline-scopes"]["spec"]
    assert allow["action"] == "ALLOW"
    scope_by_path = {}
    for rule in allow["rules"]:
        (cond,) = rule["when"]
        assert cond["key"] == "request.auth.claims[scope]"
        for op in rule["to"]:
            for path in op["operation"]["paths"]:
                scope_by_path[path] = cond["values"]
    assert scope_by_path["/seldon/driftline/*"] == [PREDICT]
    assert scope_by_path["/admin/*"] == scope_by_path["/metrics"] == [ADMIN]
    deny = docs["driftline-require-jwt"]["spec"]
    assert deny["action"] == "DENY" and deny["rules"][0]["from"][0]["source"]["notRequestPrincipals"] == ["*"]


@pytest.mark.parametrize(
    "dockerfile,env,project",
    [("Dockerfile.user-code", "orchestration", "."), ("Dockerfile.serving", "serving", "./seldon")],
)
def test_dockerfiles_install_the_distribution_make_setup_installs(dockerfile, env, project):
    """The images install the same distribution with the same lock as `make setup` (less the
    test extra), never folders copied one by one onto a PYTHONPATH."""
    text = (ROOT / "deployment" / dockerfile).read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"-e '{re.escape(project)}\[test(,lint)?\]' -c requirements/{env}\.lock", makefile)
    installs = re.findall(r"pip install[^\n]*", text)
    assert len(installs) == 1
    assert f"-c /tmp/src/requirements/{env}.lock" in installs[0]
    assert "[test]" not in installs[0] and "PYTHONPATH" not in text
    for copied in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
        for src in copied.split():
            assert (ROOT / src.rstrip("/")).exists(), f"{dockerfile} copies missing {src}"


def test_prediction_log_sink_pairs_request_and_response_events(tmp_path):
    from deployment.prediction_log_sink import serve

    server = serve(str(tmp_path), 0, host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    request = {"data": {"names": ["amount", "user_id"], "ndarray": [[12.5, 7], [99.0, 8]]}}
    response = {"data": {"names": ["fraud_score"], "ndarray": [[0.1], [0.9]]}, "meta": {}}
    headers = {
        "Ce-Id": "puid-1",
        "Ce-Inferenceservicename": "fraud",
        "Ce-Endpoint": "main",
        "Ce-Modelid": "fraud-model",
        "Ce-Specversion": "1.0",
        "Ce-Source": "test",
        "Content-Type": "application/json",
    }
    for kind, body in (("request", request), ("response", response)):
        con = http.client.HTTPConnection("127.0.0.1", server.server_port)
        con.request("POST", "/", json.dumps(body), {**headers, "Ce-Type": f"io.seldon.serving.inference.{kind}"})
        assert con.getresponse().status == 202
    server.shutdown()
    server.pairing.log.close()
    table = pq.read_table(next((tmp_path / "prediction_log").rglob("*.parquet"))).to_pylist()
    assert [r["request_id"] for r in table] == ["puid-1", "puid-1"]
    assert [round(r["score"], 3) for r in table] == [0.1, 0.9]
    assert json.loads(table[1]["features"]) == {"amount": 99.0, "user_id": 8}
    assert {r["deployment"] for r in table} == {"fraud"} and {r["predictor"] for r in table} == {"main"}
