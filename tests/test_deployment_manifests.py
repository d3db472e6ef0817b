"""deployment/: core and RBAC manifests against Kubernetes K8S_VERSION (kubernetes-validate,
strict), SeldonDeployments against Seldon's v1 CRD schema, the Istio Gateway and policies for
structure and against the local ingress's scopes (no Istio CRD schema here), the RBAC rules
against what the code calls, Prometheus's scrape config with promtool, Dockerfiles against the
distributions `make setup` installs, and the sink with a real model component's response."""

from __future__ import annotations

import fnmatch
import http.client
import json
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import kubernetes_validate
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deployment" / "k8s"
K8S_VERSION = "1.33.0"
SELDON_SCHEMA = ROOT.parent / "shared" / "schemas" / "seldondeployment-v1.openapi.json"
CORE_GROUPS = ("v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1")
ISTIO_GROUPS = ("networking.istio.io/v1", "security.istio.io/v1")
SHARED_GATEWAY = {"istio": "ingressgateway"}  # the cluster's shared ingress: driftline must not select it


def _documents():
    return [(f.name, d) for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def _core():
    return [(n, d) for n, d in _documents() if d["apiVersion"] in CORE_GROUPS]


@pytest.mark.parametrize("name,doc", _core(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_core_manifest_is_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_manifest_is_checked_by_one_validator():
    kinds = {(d["apiVersion"], d["kind"]) for _, d in _documents()}
    known = {a for a, _ in kinds if a in CORE_GROUPS} | {"machinelearning.seldon.io/v1", *ISTIO_GROUPS}
    assert {a for a, _ in kinds} <= known
    assert {
        "Deployment",
        "Service",
        "SeldonDeployment",
        "Gateway",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    } <= {k for _, k in kinds}


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


def _istio():
    return {d["metadata"]["name"]: d for _, d in _documents() if d["apiVersion"] in ISTIO_GROUPS}


def _bare_hosts(hosts) -> set[str]:
    """Gateway hosts (`namespace/host`) and policy hosts (`host`, `host:*`) as plain host names."""
    return {h.split("/", 1)[-1].removesuffix(":*") for h in hosts}


def test_gateway_is_driftlines_own_and_every_policy_selects_it():
    """A RequestAuthentication answers 401 to tokens of issuers it does not know and an ALLOW
    policy denies what it does not list: on the shared ingress gateway that would break every
    other application routed through it, so all of them select driftline's dedicated gateway."""
    docs = _istio()
    gateway = docs["driftline-gateway"]
    assert gateway["kind"] == "Gateway"
    selector = gateway["spec"]["selector"]
    assert selector and selector != SHARED_GATEWAY
    namespace = gateway["metadata"]["namespace"]
    servers = {s["port"]["protocol"]: s for s in gateway["spec"]["servers"]}
    assert servers["HTTPS"]["tls"]["mode"] == "SIMPLE" and servers["HTTPS"]["tls"]["credentialName"]
    assert servers["HTTP"]["tls"] == {"httpsRedirect": True}
    hosts = {h for s in servers.values() for h in s["hosts"]}
    assert hosts and all(h.startswith(f"{namespace}/") and "*" not in h for h in hosts)  # no wildcard, own VSs only
    policies = [d for d in docs.values() if d["apiVersion"] == "security.istio.io/v1"]
    assert {d["kind"] for d in policies} == {"RequestAuthentication", "AuthorizationPolicy"}
    for doc in policies:
        # a selector applies to workloads of the policy's own namespace: the gateway's pods there
        assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
        assert doc["spec"]["selector"]["matchLabels"] == selector, doc["metadata"]["name"]
        for rule in doc["spec"].get("rules", []):
            for op in rule.get("to", []):
                assert _bare_hosts(op["operation"].get("hosts", [])) <= _bare_hosts(hosts)


def test_istio_policies_require_the_local_ingress_scopes():
    from seldon.auth import ADMIN, PREDICT

    docs = _istio()
    jwt_rules = docs["driftline-jwt"]["spec"]["jwtRules"]
    assert jwt_rules and all(r["issuer"] and r["jwksUri"] for r in jwt_rules)
    allow = docs["driftline-scopes"]["spec"]
    assert allow["action"] == "ALLOW"
    scope_by_path = {}
    for rule in allow["rules"]:
        (cond,) = rule["when"]
        assert cond["key"] == "request.auth.claims[scope]"
        for op in rule["to"]:
            assert op["operation"]["hosts"]  # scoped to driftline's hosts, not every host
            for path in op["operation"]["paths"]:
                scope_by_path[path] = cond["values"]
    assert scope_by_path["/seldon/driftline/*"] == [PREDICT]
    assert scope_by_path["/admin/*"] == scope_by_path["/metrics"] == [ADMIN]
    deny = docs["driftline-require-jwt"]["spec"]
    assert deny["action"] == "DENY" and deny["rules"][0]["from"][0]["source"]["notRequestPrincipals"] == ["*"]


def _matches(rule: dict, request: dict) -> bool:
    """One AuthorizationPolicy rule against a request, as Istio evaluates it: every field of a
    `from`/`to` entry must match (entries are alternatives), every `when` must hold. Paths `x*` are
    prefixes, hosts `h:*` any port; a list claim matches when any value is listed."""

    def any_of(patterns, value):
        return any(fnmatch.fnmatchcase(value, p) for p in patterns)

    def source_ok(src):
        principal = request.get("principal")
        if "notRequestPrincipals" in src and principal is not None and any_of(src["notRequestPrincipals"], principal):
            return False
        return not (
            "requestPrincipals" in src and (principal is None or not any_of(src["requestPrincipals"], principal))
        )

    def op_ok(op):
        checks = (("hosts", request["host"]), ("paths", request["path"]), ("methods", request["method"]))
        return all(field not in op or any_of(op[field], value) for field, value in checks)

    def cond_ok(cond):
        claim = cond["key"].removeprefix("request.auth.claims[").removesuffix("]")
        values = request.get("claims", {}).get(claim, [])
        return bool(set(values) & set(cond["values"]))

    return (
        (not rule.get("from") or any(source_ok(f["source"]) for f in rule["from"]))
        and (not rule.get("to") or any(op_ok(t["operation"]) for t in rule["to"]))
        and all(cond_ok(c) for c in rule.get("when", []))
    )


def _decide(policies: list[dict], request: dict) -> str:
    """Istio's order: any matching DENY denies; then, with ALLOW policies present, one must match."""
    if any(_matches(r, request) for p in policies if p["action"] == "DENY" for r in p["rules"]):
        return "deny"
    allows = [r for p in policies if p["action"] == "ALLOW" for r in p["rules"]]
    return "allow" if not allows or any(_matches(r, request) for r in allows) else "deny"


def test_istio_policies_decide_like_the_local_ingress():
    """The scope contract as decisions on driftline's gateway (the structure above keeps them off
    every other gateway): predict tokens reach the Seldon API only, admin tokens the admin paths
    only, no token nothing, and nothing else on the host passes."""
    policies = [d["spec"] for d in _istio().values() if d["kind"] == "AuthorizationPolicy"]
    host = "driftline.example.com"
    predict = {"principal": "https://auth.example.com//svc", "claims": {"scope": ["predict"]}}
    admin = {"principal": "https://auth.example.com//ops", "claims": {"scope": ["admin"]}}
    both = {"principal": "https://auth.example.com//ops", "claims": {"scope": ["predict", "admin"]}}
    api = "/seldon/driftline/fraud/api/v1.0/predictions"
    cases = [
        (predict, "POST", host, api, "allow"),
        (predict, "POST", f"{host}:443", api, "allow"),
        (both, "POST", host, api, "allow"),
        (admin, "POST", host, api, "deny"),
        ({}, "POST", host, api, "deny"),
        (predict, "DELETE", host, api, "deny"),
        (predict, "POST", "other.example.com", api, "deny"),
        (admin, "GET", host, "/metrics", "allow"),
        (admin, "POST", host, "/admin/traffic", "allow"),
        (predict, "GET", host, "/metrics", "deny"),
        (predict, "POST", host, "/admin/traffic", "deny"),
        ({}, "GET", host, "/admin/traffic", "deny"),
        (both, "GET", host, "/anything-else", "deny"),
    ]
    for who, method, req_host, path, expected in cases:
        request = {**who, "method": method, "host": req_host, "path": path}
        assert _decide(policies, request) == expected, request


def _rbac():
    docs = [d for _, d in _documents() if d["apiVersion"] in ("v1", "rbac.authorization.k8s.io/v1")]
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    grants: dict[str, set[tuple[str, str, str]]] = {}
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        role = roles[binding["roleRef"]["name"]]
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount" and subject["name"] in accounts
            assert subject["namespace"] == binding["metadata"]["namespace"] == role["metadata"]["namespace"]
            grants.setdefault(subject["name"], set()).update(
                (group, resource, verb)
                for rule in role["rules"]
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            )
    return accounts, roles, grants


def test_rbac_grants_what_the_pods_call_and_no_more():
    """Each account gets the calls its pods make (dagster_k8s 0.29's launcher and executor,
    resources/seldon_target.py) and nothing broad: no wildcards, no secrets, no cluster scope."""
    from deployment import k8s_config as kc

    accounts, roles, grants = _rbac()
    assert {kc.LAUNCHER_SERVICE_ACCOUNT, kc.RUN_SERVICE_ACCOUNT} <= accounts
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], role["metadata"]["name"]
            assert not {"secrets", "configmaps", "roles", "rolebindings"} & set(rule["resources"])
    launcher = grants[kc.LAUNCHER_SERVICE_ACCOUNT]
    assert {("batch", "jobs", "create"), ("batch", "jobs", "delete"), ("batch", "jobs/status", "get")} <= launcher
    assert ("", "pods/log", "get") in launcher and ("", "events", "list") in launcher  # run failure debug info
    runs = grants[kc.RUN_SERVICE_ACCOUNT]
    assert {("batch", "jobs", "create"), ("batch", "jobs/status", "get"), ("", "pods", "list")} <= runs
    seldon = {v for g, r, v in runs if (g, r) == ("machinelearning.seldon.io", "seldondeployments")}
    assert seldon == {"get", "list", "create", "patch"}
    assert not any(g == "machinelearning.seldon.io" for g, _, _ in launcher)  # the daemon never touches serving
    assert all(
        v not in {"update", "deletecollection", "escalate", "bind", "impersonate"} for _, _, v in runs | launcher
    )


def test_pods_that_call_no_api_mount_no_token():
    for _, doc in _core():
        if doc["kind"] == "Deployment":
            assert doc["spec"]["template"]["spec"]["automountServiceAccountToken"] is False, doc["metadata"]["name"]


@pytest.mark.prometheus
def test_prometheus_scrape_config_passes_promtool(tmp_path):
    """The scrape config through `promtool check config`. Debian's Prometheus (the one here) is
    built without Kubernetes service discovery and rejects `kubernetes_sd_configs`, so that block
    is checked for structure and swapped for a static target before promtool sees the rest
    (relabelling, paths, intervals); upstream Prometheus accepts it as written."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian's prometheus package: scripts/ensure_prometheus.sh)")
    configs = [d for _, d in _core() if d["kind"] == "ConfigMap" and "prometheus.yml" in d.get("data", {})]
    assert configs, "deployment/k8s has no Prometheus scrape config"
    for doc in configs:
        config = yaml.safe_load(doc["data"]["prometheus.yml"])
        for job in config["scrape_configs"]:
            for sd in job.pop("kubernetes_sd_configs", []):
                assert sd["role"] == "pod" and sd["namespaces"]["names"] == ["driftline"]
                job.setdefault("static_configs", []).append({"targets": ["127.0.0.1:8000"]})
        path = tmp_path / f"{doc['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump(config))
        out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr


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
    installs = re.findall(r"pip[\w-]* install[^\n]*", text)
    assert any(re.search(rf"-c \S*requirements/{env}\.lock", line) for line in installs), installs
    target = "/src" + project.removeprefix(".")  # the distribution's folder in the build context
    # the distribution is built as a wheel from its folder, and that wheel installed without deps
    assert re.search(rf"pip[\w-]* wheel --no-deps --wheel-dir /out {re.escape(target)}/?(\s|$)", text, flags=re.M)
    dist = "driftline" if project == "." else "driftline_serving"
    assert any(re.search(rf"install --no-deps .*/out/{dist}-\*\.whl", line) for line in installs), installs
    assert not any("[test" in line for line in installs) and "PYTHONPATH" not in text
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        sources = [w for w in line.split()[:-1] if not w.startswith("--")]
        if "--from=" in line:
            continue  # from another stage, not from the build context
        for src in sources:
            assert (ROOT / src.rstrip("/")).exists(), f"{dockerfile} copies missing {src}"


@pytest.fixture(scope="module", name="served")
def served_fixture(tmp_path_factory):
    """A request and the model component's real response to it (FraudModel.predict_raw, what
    seldon-core-microservice returns and Seldon's executor logs), for a version-4 model."""
    from seldon.model import FraudModel
    from testkit.artifacts import build_artifact, sample_rows

    artifact = tmp_path_factory.mktemp("artifact")
    build_artifact(artifact, version="4")
    model = FraudModel(str(artifact), model_version="4")
    names, rows = sample_rows(2)
    request = {"data": {"names": names, "ndarray": rows}}
    return request, model.predict_raw(request)


def _post(port: int, kind: str, body, headers: dict) -> tuple[int, dict]:
    """One CloudEvent as Seldon's executor sends it: its own Ce-Id, the prediction's Ce-Requestid."""
    con = http.client.HTTPConnection("127.0.0.1", port)
    event = {**headers, "Ce-Id": str(uuid.uuid4()), "Ce-Type": f"io.seldon.serving.inference.{kind}"}
    con.request("POST", "/", body if isinstance(body, bytes) else json.dumps(body), event)
    response = con.getresponse()
    return response.status, json.loads(response.read() or b"{}")


SELDON_HEADERS = {  # executor/logger/worker.go: node name, SeldonDeployment, predictor, namespace
    "Ce-Modelid": "fraud-model",
    "Ce-Inferenceservicename": "fraud",
    "Ce-Endpoint": "canary",
    "Ce-Namespace": "driftline",
    "Ce-Specversion": "1.0",
    "Ce-Source": "http://fraud-canary.driftline:8000/",
    "Content-Type": "application/json",
}


def test_prediction_log_sink_records_the_version_that_answered(tmp_path, served):
    """The version comes from the response's meta.tags (the component's), not from Ce-Modelid
    (the graph node's name, the same for every version); events pair on Ce-Requestid, in either order."""
    from deployment.prediction_log_sink import serve

    request, response = served
    assert response["meta"]["tags"]["model_version"] == "4"
    server = serve(str(tmp_path), 0, host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        headers = {**SELDON_HEADERS, "Ce-Requestid": "puid-1"}
        assert _post(server.server_port, "response", response, headers)[0] == 202  # the response first
        assert _post(server.server_port, "request", request, headers)[0] == 202
        # a response without the version tag is refused, naming the tag
        untagged = {**response, "meta": {}}
        status, body = _post(server.server_port, "response", untagged, {**SELDON_HEADERS, "Ce-Requestid": "puid-2"})
        assert status == 400 and "meta.tags.model_version" in body["error"]
        status, body = _post(server.server_port, "response", b"not json", {**SELDON_HEADERS, "Ce-Requestid": "p3"})
        assert status == 400 and "not JSON" in body["error"]
    finally:
        server.shutdown()
        server.pairing.log.close()
    table = pq.read_table(next((tmp_path / "prediction_log").rglob("*.parquet"))).to_pylist()
    assert [r["request_id"] for r in table] == ["puid-1", "puid-1"]
    assert [r["score"] for r in table] == pytest.approx(response["data"]["ndarray"])
    assert {r["model_version"] for r in table} == {"4"}
    assert {r["predictor"] for r in table} == {"canary"} and {r["deployment"] for r in table} == {"fraud"}
    features = json.loads(table[1]["features"])
    assert features == dict(zip(request["data"]["names"], request["data"]["ndarray"][1], strict=True))


def test_prediction_log_sink_takes_the_predictor_tag_first(tmp_path):
    """A `predictor` tag (the local ingress sets one) wins over Ce-Endpoint; tensors are read too."""
    from deployment.prediction_log_sink import serve

    server = serve(str(tmp_path), 0, host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    request = {"data": {"names": ["amount", "user_id"], "ndarray": [[12.5, 7]]}}
    response = {
        "data": {"names": ["score"], "tensor": {"shape": [1], "values": [0.25]}},
        "meta": {"tags": {"model_name": "driftline-fraud", "model_version": "3", "predictor": "main"}},
    }
    try:
        headers = {**SELDON_HEADERS, "Ce-Requestid": "puid-9"}
        assert _post(server.server_port, "request", request, headers)[0] == 202
        assert _post(server.server_port, "response", response, headers)[0] == 202
    finally:
        server.shutdown()
        server.pairing.log.close()
    (row,) = pq.read_table(next((tmp_path / "prediction_log").rglob("*.parquet"))).to_pylist()
    assert (row["predictor"], row["model_version"], row["score"]) == ("main", "3", 0.25)


def test_stream_worker_shares_cover_every_partition_once():
    """deployment/k8s/stream-worker.yaml: one pod per share, `--share <ordinal>/<replicas>`."""
    from streaming.worker import parse_share

    sts = next(d for n, d in _documents() if n == "stream-worker.yaml" and d["kind"] == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    share = container["args"][container["args"].index("--share") + 1]
    index, members = share.split("/")
    assert index == "$(SHARE_INDEX)" and int(members) == sts["spec"]["replicas"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SHARE_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    for partitions in (4, 8):
        owned = [p for i in range(int(members)) for p in parse_share(f"{i}/{members}", partitions)]
        assert sorted(owned) == list(range(partitions))
