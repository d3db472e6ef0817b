"""Canary rollouts end to end: a real MLflow store in tmp, the real `seldon_deployment` asset,
the local runtime with real predictors and the ingress, live traffic, and the controller's
tick (the canary sensor's body) deciding step / promote / rollback from the ingress metrics."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from assets.deployment import seldon_deployment
from resources.canary_policy import CanaryPolicy
from resources.lake import Lake
from resources.mlflow_registry import CHALLENGER, CHAMPION, STATUS_TAG, MlflowRegistry
from resources.seldon_target import SeldonTarget
from seldon import manifest as mf
from seldon.runtime import free_port
from sensors.canary import build_canary_sensor, run_config, tick
from testkit.registry import register_version
from testkit.serving import SECRET, SERVING_PY, BackgroundTraffic
from testkit.tokens import token

ROOT = Path(__file__).resolve().parents[1]
POLICY = CanaryPolicy(steps=[10, 25, 50, 100], min_requests=12, max_failed_checks=2, p99_slack_s=0.1)
pytestmark = [
    pytest.mark.slow,  # real predictors stepped through a whole rollout: about a minute
    pytest.mark.skipif(not SERVING_PY.exists(), reason=".venv-serving is missing: run `make setup`"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"),
]


@pytest.fixture
def setup(tmp_path):
    os.environ["DRIFTLINE_INGRESS_JWT_SECRET"] = SECRET
    registry = MlflowRegistry(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "mlart"))
    target = SeldonTarget(
        serving_dir=str(tmp_path / "serving"),
        lake=Lake(root=str(tmp_path / "lake")),
        feast_repo=str(tmp_path / "no-feast"),
        ingress_url=f"http://127.0.0.1:{free_port()}",
        canary=POLICY,
    )
    yield registry, target, tmp_path
    target.stop_runtime()


def materialize(registry, target, config: dict | None = None):
    result = dg.materialize(
        [seldon_deployment],
        resources={"mlflow_registry": registry, "seldon_target": target},
        run_config=config or {},
        raise_on_error=True,
    )
    return {k: v.value for k, v in result.asset_materializations_for_node("seldon_deployment")[0].metadata.items()}


def rollout(registry, target, timeout_s=150.0) -> list[dict]:
    """Drive the controller until it promotes or rolls back; returns the decision history."""
    history, cursor = [], {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.5)
        decision, cursor = tick(cursor, target.current_manifest(), target.ingress_metrics(), POLICY)
        if decision is None:
            break
        history.append(decision)
        if decision["action"] in ("step", "promote", "rollback"):
            meta = materialize(registry, target, run_config(decision, POLICY.steps))
            assert meta["action"] == decision["action"] and meta["reason"] == decision["reason"]
            if decision["action"] != "step":
                break
    return history


def test_healthy_challenger_is_promoted_through_every_step(setup):
    registry, target, tmp = setup
    v1 = register_version(registry, tmp, seed=0)
    registry.set_alias(CHAMPION, v1)
    v2 = register_version(registry, tmp, seed=0)  # same weights: same score distribution
    registry.set_alias(CHALLENGER, v2)
    meta = materialize(registry, target)
    assert meta["traffic"] == {"main": 90, "canary": 10} and meta["canary_version"] == v2

    sensor = build_canary_sensor()  # the policy comes with the target, as in definitions.py
    with dg.build_sensor_context(resources={"seldon_target": target}) as ctx:
        first = sensor(ctx)
    assert isinstance(first, dg.SensorResult)
    assert first.asset_events[0].metadata["canary_decision"].value == "hold" and not first.run_requests

    with BackgroundTraffic(target.ingress_url) as traffic:
        history = rollout(registry, target)
    actions = [(d["action"], d["weight"]) for d in history if d["action"] != "hold"]
    assert actions == [("step", 25), ("step", 50), ("promote", 100)], history
    assert all(d["figures"]["canary_error_rate"] == 0 for d in history if d["action"] != "hold")
    assert registry.aliases() == {CHAMPION: v2}
    current = target.current_manifest()
    assert mf.summary(current) == {"main": {"traffic": 100, "shadow": False, "version": v2}}
    main_results = traffic.codes("main")
    assert main_results and set(main_results) == {200}
    # The ingress follows the runtime's endpoints on its next reload: v2 answers within seconds.
    deadline, served = time.monotonic() + 20, None
    while time.monotonic() < deadline and served != v2:
        r = requests.post(traffic.url, json=traffic.bodies[0], headers={"Authorization": f"Bearer {token(SECRET)}"})
        served = r.json()["meta"]["tags"]["model_version"]
        time.sleep(0.2)
    assert served == v2


@pytest.mark.parametrize("interface", ["seldon.faults.FailingModel", "seldon.faults.SlowModel"])
def test_bad_challenger_is_rolled_back(setup, interface):
    registry, target, tmp = setup
    v1 = register_version(registry, tmp, seed=0)
    registry.set_alias(CHAMPION, v1)
    v2 = register_version(registry, tmp, seed=0, interface=interface)
    registry.set_alias(CHALLENGER, v2)
    materialize(registry, target)
    with BackgroundTraffic(target.ingress_url) as traffic:
        history = rollout(registry, target)
    assert history[-1]["action"] == "rollback", history
    failed = [d for d in history if d["reason"].startswith("failed check")]
    assert len(failed) == POLICY.max_failed_checks - 1
    why = "error rate" if "Failing" in interface else "p99"
    assert why in history[-1]["reason"]
    assert registry.aliases() == {CHAMPION: v1}
    assert registry.version_tags(v2)[STATUS_TAG] == "rejected"
    summary = mf.summary(target.current_manifest())
    assert summary["main"]["traffic"] == 100 and summary["canary"]["traffic"] == 0
    main_results = traffic.codes("main")
    assert main_results and set(main_results) == {200}  # the champion's requests are unaffected
    assert tick({}, target.current_manifest(), target.ingress_metrics(), POLICY)[0] is None  # nothing left to do
