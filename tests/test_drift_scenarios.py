"""The closed loop's trigger, scenario by scenario: each day the traffic lands in the prediction
log with a real champion's scores (chargebacks are landed up front: model_performance of a day
reads only the label partitions up to it), drift_report and model_performance materialize in a
real Dagster instance, and the drift sensor ticks. No drift: no retraining over many windows;
covariate drift: one retraining from the drift report; concept drift (inputs barely move): one
retraining from the champion's labelled PR-AUC.

The champion is the project's own model, trained once per module: the pre-drift world (the same
in every scenario) landed in a lake, its features and snapshots computed by the feature assets'
code, `training_set` + `fraud_model` run in Dagster on the 28 days that end 14 days before START
(labels known at START), registered in MLflow and promoted without the evaluation gate (tested in
test_training.py; on this small world it prefers its logistic-regression baseline). Every logged
day is scored by its serving artifact on the features Feast serves at each request's time
(testkit/simulate.py); the drift report's reference is its training split, as in production.
"""

import datetime as dt
import json
import shutil
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from assets.partitions import LOOKBACK_DAYS
from resources import SyntheticEventSource
from sensors.drift import RetrainPolicy, build_drift_sensor
from testkit.simulate import (
    build_features,
    champion_scores,
    days_between,
    land_days,
    replay,
    seed_history,
    train_champion,
)

WORLD: dict[str, Any] = dict(seed=11, n_users=800, n_merchants=150, events_per_day=1_500, fraud_rate=0.02)
START = dt.date(2026, 10, 1)
DRIFT_START = START + dt.timedelta(days=16)
# The champion: trained at START on 28 days whose chargebacks had 14+ days to arrive; CPU, seeded.
TRAINING = dict(window_days=28, maturity_days=14)
# A fraud_model_v1 model: testkit scores and logs it on the v1 features Feast serves (training_frame).
FIT = dict(seed=7, max_epochs=20, patience=5, feature_service="fraud_model_v1")
HISTORY_DAYS = days_between(START, START + dt.timedelta(days=14))  # served before monitoring starts
# The champion's labelled PR-AUC (7 pooled days, ~77 % of chargebacks known) is 0.57-0.81 without
# drift (the lowest: the first windows, only 1-2 days logged) and 0.32-0.35 once the concept
# drift's ramp is over (it scores the new pattern ~0: more than half the fraud); the floor sits
# midway.
POLICY = RetrainPolicy(pr_auc_floor=0.45, min_positives=20)
MONITORED_DAYS = {"none": 44, "covariate": 12, "concept": 28}


pytestmark = pytest.mark.slow  # weeks of simulated traffic, three scenarios: about two minutes


@pytest.fixture(scope="module")
def champion(tmp_path_factory, make_resources):
    """The pre-drift world in a lake (identical in every scenario), the champion trained on it,
    and its scores of the pre-drift days."""
    root = tmp_path_factory.mktemp("champion")
    resources = make_resources(root, event_source=SyntheticEventSource(**WORLD))
    lake, world = resources["lake"], resources["event_source"].world()
    first = START - dt.timedelta(days=TRAINING["window_days"] + TRAINING["maturity_days"])
    past = days_between(first - dt.timedelta(days=LOOKBACK_DAYS + 1), START)  # the window and its history
    land_days(lake, world, past)
    # snapshots a training row is served (the day before it), and the one START's traffic is served
    window = days_between(first - dt.timedelta(days=1), first + dt.timedelta(days=TRAINING["window_days"]))
    build_features(resources, past, window + [START - dt.timedelta(days=1)])
    version = train_champion(resources, START, **TRAINING, training=FIT)
    before_drift = days_between(START, DRIFT_START)
    land_days(lake, world, before_drift)
    build_features(resources, before_drift, before_drift)
    return {
        "root": root,
        "registry": resources["mlflow_registry"],
        "version": version,
        "world": world,
        "scores": champion_scores(resources, version, before_drift),
    }


def _sensor_tick(sensor):
    def tick(instance, cursor):
        result = sensor(dg.build_sensor_context(instance=instance, cursor=json.dumps(cursor) if cursor else None))
        return [
            {"key": r.run_key, "trigger": r.tags["driftline/trigger"]} for r in result.run_requests or []
        ], json.loads(result.cursor)

    return tick


def _scenario(tmp_path, champion, scenario, make_resources):
    source = SyntheticEventSource(
        **WORLD, drift_scenario=scenario, drift_start=None if scenario == "none" else DRIFT_START.isoformat()
    )
    world = source.world()
    last_shared = DRIFT_START - dt.timedelta(days=1)
    pd.testing.assert_frame_equal(world.transactions(last_shared), champion["world"].transactions(last_shared))
    shutil.copytree(champion["root"] / "lake", tmp_path / "lake")  # raw, features, snapshots, training_set
    resources = make_resources(tmp_path, event_source=source)
    resources["mlflow_registry"] = champion["registry"]
    version = champion["version"]
    days = [START + dt.timedelta(days=14 + k) for k in range(MONITORED_DAYS[scenario])]
    drifting = days_between(DRIFT_START, days[-1] + dt.timedelta(days=1))
    land_days(resources["lake"], world, drifting)
    build_features(resources, drifting, drifting[:-1])
    scores = champion["scores"] | champion_scores(resources, version, drifting)
    seed_history(resources, HISTORY_DAYS, scores, version)
    records = replay(
        resources,
        dg.DagsterInstance.ephemeral(),
        days,
        POLICY,
        scores,
        version,
        tick=_sensor_tick(build_drift_sensor(POLICY)),
    )
    keys = {}
    for r in records:  # the daemon launches a run key once
        for req in r["requests"]:
            keys.setdefault(req["key"], (r["day"], req["trigger"]))
    return records, keys


def _pr_aucs(records, before=None, after=None):
    """The champion's pooled PR-AUC per evaluation day, for windows wholly before / after a day."""
    out = []
    for r in records:
        perf = r["performance"]
        if "champion_pr_auc" not in perf:
            continue
        first, last = perf["prediction_days"].split("..")
        if (before is None or last < before) and (after is None or first >= after):
            out.append(perf["champion_pr_auc"])
    return out


def test_no_drift_over_many_windows_triggers_no_retraining(tmp_path, champion, capsys, make_resources):
    records, keys = _scenario(tmp_path, champion, "none", make_resources)
    windows = [r["drift"] for r in records]
    drifted = sum(bool(w["drifted"]) for w in windows)
    features = sorted(windows[0]["scores"])
    flags = {f: sum(w["scores"][f] >= 0.1 for w in windows) for f in features}
    worst = {f: max(w["scores"][f] for w in windows) for f in features}
    perf = _pr_aucs(records)
    assert len(perf) >= 30
    with capsys.disabled():
        print(
            f"\nno-drift: {len(windows)} daily windows, {drifted} drifted (false-positive rate "
            f"{drifted / len(windows):.1%}); per-feature flags {flags}; max score per feature "
            f"{ {f: round(v, 3) for f, v in worst.items()} } (threshold 0.1); retrainings {len(keys)}; "
            f"champion PR-AUC over {len(perf)} windows {min(perf):.3f}..{max(perf):.3f} "
            f"(floor {POLICY.pr_auc_floor})"
        )
    assert len(windows) >= 40
    assert drifted == 0 and keys == {}
    assert windows[0]["reference_source"] == "training_set train split"  # the champion's, cached on first use
    assert min(perf) > POLICY.pr_auc_floor


def test_covariate_drift_triggers_exactly_one_retraining(tmp_path, champion, capsys, make_resources):
    records, keys = _scenario(tmp_path, champion, "covariate", make_resources)
    assert len(keys) == 1, keys
    ((key, (day, trigger)),) = keys.items()
    assert trigger == "drift" and key.startswith("drift-v")
    lag = (dt.date.fromisoformat(day) - DRIFT_START).days
    before = [r for r in records if r["day"] < DRIFT_START.isoformat()]
    assert before and not any(r["drift"]["drifted"] for r in before)
    assert 0 < lag <= 3  # two drifted days in a row (min_drifted_windows) during the ramp
    after = [r for r in records if r["day"] > day]
    assert after and all(r["drift"]["drifted"] for r in after)  # drift persists: same episode, no new run
    with capsys.disabled():
        print(
            f"\ncovariate drift from {DRIFT_START}: retraining {key} requested on {day} (lag {lag} d); "
            f"scores that day {records[[r['day'] for r in records].index(day)]['drift']['scores']}"
        )


def test_concept_drift_triggers_exactly_one_retraining_from_labels(tmp_path, champion, capsys, make_resources):
    records, keys = _scenario(tmp_path, champion, "concept", make_resources)
    assert not any(r["drift"]["drifted"] for r in records)  # the inputs barely move
    assert len(keys) == 1, keys
    ((key, (day, trigger)),) = keys.items()
    assert trigger == "performance" and key.startswith("performance-v")
    by_day = {r["day"]: r["performance"] for r in records}
    assert by_day[day]["champion_pr_auc"] < POLICY.pr_auc_floor
    first_judged = by_day[day]["prediction_days"].split("..")[0]
    assert first_judged <= (DRIFT_START + dt.timedelta(days=7)).isoformat()
    before = _pr_aucs(records, before=DRIFT_START.isoformat())
    after = _pr_aucs(records, after=(DRIFT_START + dt.timedelta(days=3)).isoformat())  # after the 3-day ramp
    assert before and after
    highest = {f: round(max(r["drift"]["scores"][f] for r in records), 3) for f in records[0]["drift"]["scores"]}
    with capsys.disabled():
        print(
            f"\nconcept drift from {DRIFT_START}: retraining {key} requested on {day}: champion PR-AUC "
            f"{by_day[day]['champion_pr_auc']:.3f} on predictions {by_day[day]['prediction_days']}; "
            f"windows before the drift {min(before):.3f}..{max(before):.3f}, "
            f"wholly after the ramp {min(after):.3f}..{max(after):.3f}; highest drift scores {highest}"
        )
    assert min(before) > POLICY.pr_auc_floor > max(after)  # the real model separates them
