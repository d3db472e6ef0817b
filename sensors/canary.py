"""The canary controller (Flagger / Argo Rollouts style) as a Dagster sensor.

Each tick reads the figures of the interval since the step started, per predictor (requests,
5xx, p99 latency, score distribution), compares the canary with main, and either holds (an
AssetObservation on `seldon_deployment` with the figures), steps traffic, promotes, or rolls
back (a run of `seldon_deployment` with the action and the figures, so the decision is a
materialization). Where the figures come from is the target's `metrics_source`
(sensors/canary_metrics.py): the local ingress's `/metrics` (cumulative counters, one HTTP read)
or Prometheus (three PromQL queries); either way the tick is well under 60 s, and figures that
cannot be read are a hold that says why, never a rollback.
The policy (steps, checks) is the deployment target's `seldon_target.canary`, the one the
`seldon_deployment` asset rolls out with.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource types of
# the decorated functions from their annotations at definition time.
import json
import math

import dagster as dg

from resources.canary_policy import CanaryPolicy
from resources.seldon_target import SeldonTarget
from sensors.canary_metrics import IngressReading, MetricsUnavailable, Reading, Stats, delta, read_stats, reading

__all__ = ["Stats", "build_canary_sensor", "delta", "read_stats", "run_config", "tick"]

SENSOR_ASSET = dg.AssetKey("seldon_deployment")
canary_rollout_job = dg.define_asset_job(
    "canary_rollout_job",
    selection=[SENSOR_ASSET],
    description="Re-renders the SeldonDeployment for a rollout decision.",
)


def quantile(cumulative: dict, q: float) -> float | None:
    items = sorted(((math.inf if k == "+Inf" else float(k)), v) for k, v in cumulative.items())
    if not items or items[-1][1] <= 0:
        return None
    rank = q * items[-1][1]
    return next(le for le, c in items if c >= rank)


def psi(a: dict, b: dict) -> float | None:
    """Population stability index of two cumulative histograms (same buckets)."""
    keys = sorted(set(a) & set(b), key=lambda k: math.inf if k == "+Inf" else float(k))
    pa, pb, prev_a, prev_b = [], [], 0.0, 0.0
    for k in keys:
        pa.append(a[k] - prev_a)
        pb.append(b[k] - prev_b)
        prev_a, prev_b = a[k], b[k]
    ta, tb = sum(pa), sum(pb)
    if ta <= 0 or tb <= 0:
        return None
    return sum(
        (x / ta - y / tb) * math.log(max(x / ta, 1e-4) / max(y / tb, 1e-4)) for x, y in zip(pa, pb, strict=True)
    )  # one share per key in both


def analyze(canary: Stats, main: Stats, policy: CanaryPolicy) -> tuple[bool | None, str, dict]:
    """(passed, reason, figures); passed is None while the canary has too few requests."""
    p99_c, p99_m = quantile(canary.latency, 0.99), quantile(main.latency, 0.99)
    figures = {
        "canary_requests": canary.requests,
        "main_requests": main.requests,
        "canary_error_rate": round(canary.errors / canary.requests, 4) if canary.requests else None,
        "main_error_rate": round(main.errors / main.requests, 4) if main.requests else None,
        "canary_p99_s": p99_c,
        "main_p99_s": p99_m,
        "score_psi": psi(canary.scores, main.scores),
        "canary_scores": max(canary.scores.values(), default=0.0),
    }
    if canary.requests < policy.min_requests:
        return None, f"waiting: {canary.requests:.0f} canary requests < {policy.min_requests}", figures
    problems = []
    if figures["canary_error_rate"] > policy.max_error_rate:
        problems.append(f"error rate {figures['canary_error_rate']:.2%} > {policy.max_error_rate:.2%}")
    limit = (p99_m or 0.0) * policy.max_p99_ratio + policy.p99_slack_s
    if p99_c is not None and p99_c > limit:
        problems.append(f"p99 {p99_c * 1000:.0f} ms > {limit * 1000:.0f} ms")
    # PSI over ten buckets from a few dozen scores swings from 0.02 to 0.7 on identical models:
    # it is judged only from enough canary scores (the figures keep it either way)
    psi_judged = figures["canary_scores"] >= policy.min_score_rows
    if psi_judged and figures["score_psi"] is not None and figures["score_psi"] > policy.max_score_psi:
        problems.append(f"score PSI {figures['score_psi']:.3f} > {policy.max_score_psi}")
    return (not problems), ("; ".join(problems) or "healthy"), figures


def decide(state: dict, rollout: dict, passed: bool | None, reason: str, policy: CanaryPolicy) -> dict:
    """Next action: hold | step | promote | rollback, with the new weight and failure count."""
    weight, failures = int(rollout.get("canary_weight", 0)), int(state.get("failures", 0))
    if passed is None:
        return {"action": "hold", "weight": weight, "failures": failures, "reason": reason}
    if not passed:
        failures += 1
        if failures >= policy.max_failed_checks:
            return {
                "action": "rollback",
                "weight": 0,
                "failures": failures,
                "reason": f"{failures} failed checks: {reason}",
            }
        return {
            "action": "hold",
            "weight": weight,
            "failures": failures,
            "reason": f"failed check {failures}: {reason}",
        }
    higher = [s for s in policy.steps if s > weight]
    if not higher or higher[0] >= 100:
        return {"action": "promote", "weight": 100, "failures": 0, "reason": f"healthy at {weight}%: promote"}
    return {
        "action": "step",
        "weight": higher[0],
        "failures": 0,
        "reason": f"healthy at {weight}%: step to {higher[0]}%",
    }


def tick(cursor: dict, manifest: dict | None, metrics: str | Reading, policy: CanaryPolicy) -> tuple[dict | None, dict]:
    """One controller step: (decision or None when there is no canary, new cursor).

    `metrics`: the ingress's `/metrics` text, or a `Reading` (sensors/canary_metrics.py)."""
    from seldon import manifest as mf

    rollout = mf.rollout(manifest) if manifest else {}
    canary = rollout.get("canary")
    if not canary or rollout.get("action") == "rollback":
        return None, {}
    current = IngressReading(metrics) if isinstance(metrics, str) else metrics
    state = (
        cursor
        if cursor.get("canary") == canary and cursor.get("weight") == rollout.get("canary_weight")
        else {
            "canary": canary,
            "weight": rollout.get("canary_weight"),
            "failures": cursor.get("failures", 0) if cursor.get("canary") == canary else 0,
        }
    )
    held = {"figures": {}, "version": canary, "weight": rollout.get("canary_weight")}
    if "snapshot" not in state or state.get("source", "ingress") != current.source:
        # first look at this step (or at this source): the interval starts now
        state = {**state, "snapshot": current.mark(), "source": current.source}
        return {"action": "hold", "reason": "interval started", **held}, state
    try:
        d = current.since(state["snapshot"])
    except MetricsUnavailable as err:  # not the canary's fault: hold, the interval goes on
        return {"action": "hold", "reason": f"metrics unavailable: {err}", **held}, state
    passed, reason, figures = analyze(d.get("canary", Stats()), d.get("main", Stats()), policy)
    decision = decide(state, rollout, passed, reason, policy)
    new_state = {**state, "failures": decision["failures"]}
    if passed is not None:  # judged: the next interval starts from here
        new_state["snapshot"] = current.mark()
    figures["source"] = current.source
    return {**decision, "figures": figures, "version": canary, "from_weight": rollout.get("canary_weight")}, new_state


def run_config(decision: dict, steps: list[int]) -> dict:
    return {
        "ops": {
            "seldon_deployment": {
                "config": {
                    "action": decision["action"],
                    "canary_version": decision["version"],
                    "canary_weight": decision["weight"],
                    "steps": steps,
                    "reason": decision["reason"],
                    "figures": json.dumps(decision["figures"]),
                }
            }
        }
    }


def build_canary_sensor(
    policy: CanaryPolicy | None = None,
    interval_s: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
):
    """The sensor; `policy` None (definitions.py): the target's `seldon_target.canary`."""

    @dg.sensor(
        name="canary_sensor",
        job=canary_rollout_job,
        minimum_interval_seconds=interval_s,
        default_status=default_status,
        description="Steps, promotes or rolls back the canary from the ingress or Prometheus metrics.",
    )
    def canary_sensor(context: dg.SensorEvaluationContext, seldon_target: SeldonTarget):
        cursor = json.loads(context.cursor) if context.cursor else {}
        manifest = seldon_target.current_manifest()
        if not (manifest and mf_rollout(manifest).get("canary")):
            return dg.SkipReason("no canary in the deployment")
        rules = policy or seldon_target.canary
        decision, new_cursor = tick(cursor, manifest, reading(seldon_target), rules)
        if decision is None:
            return dg.SkipReason("no canary in the deployment")
        observation = dg.AssetObservation(
            asset_key=SENSOR_ASSET,
            metadata={
                "canary_decision": decision["action"],
                "reason": decision["reason"],
                "canary_version": decision["version"],
                "canary_weight": decision.get("from_weight", decision["weight"]),
                "figures": dg.MetadataValue.json(decision["figures"]),
            },
        )
        runs = []
        if decision["action"] in ("step", "promote", "rollback"):
            runs.append(
                dg.RunRequest(
                    run_key=f"canary-v{decision['version']}-{decision['action']}-{decision['weight']}",
                    run_config=run_config(decision, rules.steps),
                    tags={"driftline/trigger": "canary", "driftline/canary-action": decision["action"]},
                )
            )
        return dg.SensorResult(run_requests=runs, asset_events=[observation], cursor=json.dumps(new_cursor))

    return canary_sensor


def mf_rollout(manifest: dict) -> dict:
    from seldon import manifest as mf

    return mf.rollout(manifest)
