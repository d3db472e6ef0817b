"""The SeldonDeployment through a real API server: Seldon Core 1.17.1's v1 CRD installed (its
upstream `openAPIV3Schema`, testkit/cluster.py `seldon_crd`), the `seldon_deployment` asset's
kubernetes target creating and patching the resource, and `canary_sensor` deciding from a
recorded sequence of metrics, reading the resource from the API server each tick, all as the
`driftline` service account (deployment/k8s/rbac.yaml).

Every change is accepted by the API server after its server-side validation against the CRD's
structural schema (unknown fields would be pruned: the stored spec is compared with the one
sent); a manifest it refuses fails with the server's message. No Seldon operator runs here, so
no predictor pods, Services or VirtualServices come from the resource: what is verified is the
resource and its changes, not serving through it (tests/test_serving_image.py serves the model).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from assets.deployment import seldon_deployment
from deployment.k8s_config import RUN_SERVICE_ACCOUNT
from resources.canary_policy import CanaryPolicy
from resources.lake import Lake
from resources.mlflow_registry import CHALLENGER, CHAMPION, MlflowRegistry
from resources.seldon_target import ManifestRejected, SeldonTarget
from seldon import manifest as mf
from seldon.prom import P
from sensors.canary import build_canary_sensor
from testkit import cluster as kc
from testkit.registry import register_version
from testkit.s3 import CREDENTIALS, moto_s3

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
POLICY = CanaryPolicy(steps=[10, 25, 50, 100], min_requests=20, max_failed_checks=2)
LE = ("0.05", "0.1", "0.5", "+Inf")
QUOTA = "count/seldondeployments.machinelearning.seldon.io"
SCORE_LE = ("0.1", "0.5", "0.9", "+Inf")


class RecordedIngress:
    """The ingress's `/metrics` as recorded: cumulative counters that the test advances by one
    recorded interval before each controller tick (the controller reads them over HTTP)."""

    def __init__(self):
        self.counts: dict[tuple[str, str], float] = {}
        self.latency: dict[tuple[str, str], float] = {}
        self.scores: dict[tuple[str, str], float] = {}
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def advance(self, predictor: str, ok: int, errors: int = 0, slow: bool = False) -> None:
        for status, n in (("200", ok), ("500", errors)):
            self.counts[(predictor, status)] = self.counts.get((predictor, status), 0) + n
        for le in LE:
            fast_enough = float(le if le != "+Inf" else "inf") >= (0.4 if slow else 0.03)
            self.latency[(predictor, le)] = self.latency.get((predictor, le), 0) + ((ok + errors) if fast_enough else 0)
        share = {"0.1": 0.7, "0.5": 0.9, "0.9": 0.97, "+Inf": 1.0}  # the same score distribution for both
        for le in SCORE_LE:
            self.scores[(predictor, le)] = self.scores.get((predictor, le), 0) + round(ok * share[le])

    def text(self) -> str:
        lines = [f'{P}requests_total{{predictor="{p}",status="{s}"}} {v}' for (p, s), v in self.counts.items()]
        lines += [
            f'{P}request_duration_seconds_bucket{{predictor="{p}",le="{le}"}} {v}'
            for (p, le), v in self.latency.items()
        ]
        lines += [f'{P}score_bucket{{predictor="{p}",le="{le}"}} {v}' for (p, le), v in self.scores.items()]
        return "\n".join(lines) + "\n"

    def _handler(self):
        ingress = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # http.server's name
                body = ingress.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def seldon(namespace, tmp_path_factory):
    """The CRD, a registry whose artifacts are in a bucket, the recorded ingress, and the target,
    whose API calls authenticate as the `driftline` account."""
    how = kc.install_seldon_crd(namespace.cluster)
    print(f"\nCRD seldondeployments.machinelearning.seldon.io: {how}")
    tmp = tmp_path_factory.mktemp("seldon")
    with moto_s3("driftline-seldon") as s3, pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        mp.setenv("MLFLOW_S3_ENDPOINT_URL", s3.endpoint)
        registry = MlflowRegistry(
            tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_root=f"s3://{s3.bucket}/mlartifacts"
        )
        ingress = RecordedIngress()
        target = SeldonTarget(
            kind="kubernetes",
            kubeconfig_file=str(namespace.kubeconfigs[RUN_SERVICE_ACCOUNT]),  # calls as `driftline`
            namespace=namespace.name,
            deployment_name="fraud",
            image="localhost/driftline/serving:dev",
            lake=Lake(root=f"s3://{s3.bucket}/lake", s3_endpoint_url=s3.endpoint),
            online_features="server",
            feast_server_url="http://127.0.0.1:6566",
            ingress_url=ingress.url,
            ingress_jwt_secret="recorded-ingress-ignores-tokens",
            canary=POLICY,
            metrics_source="ingress",
        )
        try:
            yield {"registry": registry, "target": target, "ingress": ingress, "tmp": tmp, "ns": namespace}
        finally:
            ingress.close()


def _materialize(seldon, config: dict | None = None, target: SeldonTarget | None = None) -> dict:
    result = dg.materialize(
        [seldon_deployment],
        resources={"mlflow_registry": seldon["registry"], "seldon_target": target or seldon["target"]},
        run_config=config or {},
        raise_on_error=True,
    )
    meta = result.asset_materializations_for_node("seldon_deployment")[0].metadata
    return {k: v.value for k, v in meta.items()}


def _stored(seldon) -> dict:
    """The resource as the API server stored it (read as the `driftline` account)."""
    stored = seldon["target"].current_manifest()
    assert stored is not None
    return stored


def _accepted(seldon, meta: dict, log: list) -> dict:
    """The server accepted the change and stored the spec as sent: nothing pruned."""
    stored = _stored(seldon)
    sent = meta["manifest"]
    assert stored["spec"] == sent["spec"], "the API server pruned or changed fields of the spec"
    applied = meta["target"]
    entry = {
        "action": meta["action"],
        "api": applied["action"],
        "resourceVersion": stored["metadata"]["resourceVersion"],
        "generation": stored["metadata"]["generation"],
        "traffic": {p["name"]: p["traffic"] for p in stored["spec"]["predictors"]},
    }
    assert applied["resourceVersion"] == entry["resourceVersion"]
    log.append(entry)
    print(f"API server accepted: {json.dumps(entry)}")
    return entry


def _drive(seldon, healthy: bool, log: list, max_ticks: int = 12) -> list[dict]:
    """canary_sensor ticks, each after one recorded interval; every RunRequest is materialized with
    its run config, as the daemon would launch it. Returns the decisions."""
    sensor = build_canary_sensor()  # the policy comes with the target, as in definitions.py
    ingress, cursor, decisions = seldon["ingress"], None, []
    for _ in range(max_ticks):
        ingress.advance("main", ok=200)
        ingress.advance("canary", ok=50 if healthy else 30, errors=0 if healthy else 20)
        with dg.build_sensor_context(resources={"seldon_target": seldon["target"]}, cursor=cursor) as ctx:
            result = sensor(ctx)
        if isinstance(result, dg.SkipReason):
            break
        assert isinstance(result, dg.SensorResult)
        cursor = result.cursor
        decision = result.asset_events[0].metadata
        decisions.append({"action": decision["canary_decision"].value, "reason": decision["reason"].value})
        for request in result.run_requests or []:
            meta = _materialize(seldon, dict(request.run_config))
            _accepted(seldon, meta, log)
            if meta["action"] in ("promote", "rollback"):
                return decisions
    return decisions


def test_canary_steps_through_the_api_server_then_rolls_back(seldon):
    registry, log = seldon["registry"], []
    v1 = register_version(registry, seldon["tmp"], seed=0)
    registry.set_alias(CHAMPION, v1)
    v2 = register_version(registry, seldon["tmp"], seed=0)
    registry.set_alias(CHALLENGER, v2)

    first = _materialize(seldon)
    created = _accepted(seldon, first, log)
    assert created["api"] == "created" and created["traffic"] == {"main": 90, "canary": 10}
    assert mf.parameters(_stored(seldon)["spec"]["predictors"][1])["model_uri"].startswith("s3://")

    decisions = _drive(seldon, healthy=True, log=log)
    steps = [(e["action"], e["traffic"]) for e in log]
    assert steps == [
        ("render", {"main": 90, "canary": 10}),
        ("step", {"main": 75, "canary": 25}),
        ("step", {"main": 50, "canary": 50}),
        ("promote", {"main": 100}),
    ], decisions
    assert all(e["api"] == "patched" for e in log[1:]) and registry.aliases() == {CHAMPION: v2}
    generations = [e["generation"] for e in log]
    assert generations == sorted(set(generations)), "each change is a new generation of the spec"

    # a second rollout: a challenger whose recorded interval has 40 % server errors
    v3 = register_version(registry, seldon["tmp"], seed=1)
    registry.set_alias(CHALLENGER, v3)
    second: list = []
    _accepted(seldon, _materialize(seldon), second)
    decisions = _drive(seldon, healthy=False, log=second)
    assert [e["action"] for e in second] == ["render", "rollback"], decisions
    assert second[-1]["traffic"] == {"main": 100, "canary": 0}
    assert any(d["reason"].startswith("failed check 1") for d in decisions)
    assert registry.aliases() == {CHAMPION: v2}
    print(f"\nrollout: {json.dumps(log)}\nrollback: {json.dumps(second)}")


def test_a_manifest_the_server_refuses_fails_the_asset_with_its_message(seldon):
    """A spec that breaks the CRD's schema is refused by the server's validation (422), through
    the call the asset makes; and the asset's run fails with the server's words when the server
    refuses its manifest at admission, here a ResourceQuota of no SeldonDeployments (403). The renderer cannot
    produce a schema-invalid spec from its inputs (and int32 ranges are not enforced by the
    server: traffic 3000000000 is accepted), so the schema refusal is a hand-broken manifest."""
    manifest = _stored(seldon)
    manifest["spec"]["predictors"][0]["traffic"] = "most of it"
    manifest["metadata"] = {"name": "fraud", "namespace": seldon["ns"].name}
    with pytest.raises(ManifestRejected) as invalid:
        seldon["target"].apply(manifest)
    print(f"\nschema refused: {invalid.value}")
    assert "HTTP 422" in str(invalid.value) and "traffic" in str(invalid.value)
    assert "must be of type integer" in str(invalid.value)

    ns = seldon["ns"]
    core = ns.cluster.api("CoreV1Api")
    quota = {"metadata": {"name": "no-more-seldondeployments"}, "spec": {"hard": {QUOTA: "0"}}}
    core.create_namespaced_resource_quota(ns.name, quota)
    try:
        # admission uses the quota once the controller has computed its usage; for a CRD just
        # installed that waits for the quota controller's next discovery of resources
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            status = core.read_namespaced_resource_quota(quota["metadata"]["name"], ns.name).status
            if status and status.used is not None and QUOTA in status.used:
                break
            time.sleep(0.5)
        second = SeldonTarget(**{**seldon["target"].model_dump(), "deployment_name": "fraud-shadow"})
        with pytest.raises(ManifestRejected) as refused:
            _materialize(seldon, target=second)
        print(f"asset refused: {refused.value}")
        # refused by the quota either way: over it, or before its usage is known
        message = str(refused.value)
        assert "HTTP 403" in message and ("exceeded quota" in message or "status unknown for quota" in message)
    finally:
        core.delete_namespaced_resource_quota(quota["metadata"]["name"], ns.name)


def test_the_run_account_may_not_delete_the_deployment(seldon):
    """rbac.yaml gives `driftline` get/list/create/patch on seldondeployments, not delete: the
    API server refuses it with 403, and says so for `kubectl auth can-i` as well."""
    from kubernetes.client.exceptions import ApiException

    ns = seldon["ns"]
    kubeconfig = str(ns.kubeconfigs[RUN_SERVICE_ACCOUNT])
    allowed = {
        verb: kc.can_i(ns.cluster, kubeconfig, verb, "seldondeployments", ns.name, "machinelearning.seldon.io")
        for verb in ("get", "list", "create", "patch", "delete", "update")
    }
    print(f"\n`driftline` on seldondeployments: {allowed}")
    assert allowed == {"get": True, "list": True, "create": True, "patch": True, "delete": False, "update": False}
    api = ns.cluster.api("CustomObjectsApi", kubeconfig)
    with pytest.raises(ApiException) as refused:
        api.delete_namespaced_custom_object("machinelearning.seldon.io", "v1", ns.name, "seldondeployments", "fraud")
    assert refused.value.status == 403
    print(f"delete as `driftline`: 403 {json.loads(str(refused.value.body))['message']}")
