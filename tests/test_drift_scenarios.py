"""The closed loop's trigger, scenario by scenario: each day the traffic lands in the prediction
log and the chargebacks in raw_labels, drift_report and model_performance materialize in a real
Dagster instance, and the drift sensor ticks. No drift: no retraining over many windows;
covariate drift: one retraining from the drift report; concept drift (inputs barely move): one
retraining from the champion's labelled PR-AUC.

Scores come from a stand-in champion that knows the pre-drift fraud patterns (monitoring/simulate.py).
"""

import datetime as dt
import json

import dagster as dg
import pytest

from monitoring.simulate import register_stand_in_champion, replay, seed_history, write_reference
from resources import SyntheticEventSource
from sensors.drift import RetrainPolicy, build_drift_sensor

from .conftest import make_resources

WORLD = dict(seed=11, n_users=800, n_merchants=150, events_per_day=1_500, fraud_rate=0.02)
START = dt.date(2026, 10, 1)
DRIFT_START = START + dt.timedelta(days=16)
REFERENCE_DAYS = [START + dt.timedelta(days=k) for k in range(14)]
# The stand-in champion's labelled PR-AUC is ~0.8 before the drift and ~0.45 once half the fraud
# is of a pattern it never saw; the floor sits between.
POLICY = RetrainPolicy(pr_auc_floor=0.6, min_positives=20)
MONITORED_DAYS = {"none": 44, "covariate": 12, "concept": 28}


@pytest.fixture(scope="module")
def registry_root(tmp_path_factory):
    return tmp_path_factory.mktemp("drift-registry")


def _sensor_tick(sensor):
    def tick(instance, cursor):
        result = sensor(dg.build_sensor_context(instance=instance, cursor=json.dumps(cursor) if cursor else None))
        return [{"key": r.run_key, "trigger": r.tags["driftline/trigger"]} for r in result.run_requests or []], \
            json.loads(result.cursor)
    return tick


def _scenario(tmp_path, registry_root, scenario):
    source = SyntheticEventSource(**WORLD, drift_scenario=scenario,
                                  drift_start=None if scenario == "none" else DRIFT_START.isoformat())
    resources = make_resources(tmp_path, event_source=source)
    resources["mlflow_registry"] = make_resources(registry_root)["mlflow_registry"]
    registry = resources["mlflow_registry"]
    version = registry.aliases().get("champion") or register_stand_in_champion(registry)
    world = source.world()
    write_reference(resources["lake"], world, REFERENCE_DAYS, version)
    seed_history(resources, REFERENCE_DAYS, version)
    days = [START + dt.timedelta(days=14 + k) for k in range(MONITORED_DAYS[scenario])]
    records = replay(resources, dg.DagsterInstance.ephemeral(), days, POLICY, version,
                     tick=_sensor_tick(build_drift_sensor(POLICY)))
    keys = {}
    for r in records:  # the daemon launches a run key once
        for req in r["requests"]:
            keys.setdefault(req["key"], (r["day"], req["trigger"]))
    return records, keys


def test_no_drift_over_many_windows_triggers_no_retraining(tmp_path, registry_root, capsys):
    records, keys = _scenario(tmp_path, registry_root, "none")
    windows = [r["drift"] for r in records]
    drifted = sum(bool(w["drifted"]) for w in windows)
    features = sorted(windows[0]["scores"])
    flags = {f: sum(w["scores"][f] >= 0.1 for w in windows) for f in features}
    worst = {f: max(w["scores"][f] for w in windows) for f in features}
    with capsys.disabled():
        print(f"\nno-drift: {len(windows)} daily windows, {drifted} drifted (false-positive rate "
              f"{drifted / len(windows):.1%}); per-feature flags {flags}; max score per feature "
              f"{ {f: round(v, 3) for f, v in worst.items()} } (threshold 0.1); retrainings {len(keys)}")
    assert len(windows) >= 40
    assert drifted == 0 and keys == {}
    perf = [r["performance"].get("champion_pr_auc") for r in records if "champion_pr_auc" in r["performance"]]
    assert perf and min(perf) > POLICY.pr_auc_floor


def test_covariate_drift_triggers_exactly_one_retraining(tmp_path, registry_root, capsys):
    records, keys = _scenario(tmp_path, registry_root, "covariate")
    assert len(keys) == 1, keys
    (key, (day, trigger)), = keys.items()
    assert trigger == "drift" and key.startswith("drift-v")
    lag = (dt.date.fromisoformat(day) - DRIFT_START).days
    before = [r for r in records if r["day"] < DRIFT_START.isoformat()]
    assert before and not any(r["drift"]["drifted"] for r in before)
    assert 0 < lag <= 3  # two drifted days in a row (min_drifted_windows) during the ramp
    after = [r for r in records if r["day"] > day]
    assert after and all(r["drift"]["drifted"] for r in after)  # drift persists: same episode, no new run
    with capsys.disabled():
        print(f"\ncovariate drift from {DRIFT_START}: retraining {key} requested on {day} (lag {lag} d); "
              f"scores that day {records[[r['day'] for r in records].index(day)]['drift']['scores']}")


def test_concept_drift_triggers_exactly_one_retraining_from_labels(tmp_path, registry_root, capsys):
    records, keys = _scenario(tmp_path, registry_root, "concept")
    assert not any(r["drift"]["drifted"] for r in records)  # the inputs barely move
    assert len(keys) == 1, keys
    (key, (day, trigger)), = keys.items()
    assert trigger == "performance" and key.startswith("performance-v")
    by_day = {r["day"]: r["performance"] for r in records}
    assert by_day[day]["champion_pr_auc"] < POLICY.pr_auc_floor
    first_judged = by_day[day]["prediction_days"].split("..")[0]
    assert first_judged <= (DRIFT_START + dt.timedelta(days=7)).isoformat()
    with capsys.disabled():
        print(f"\nconcept drift from {DRIFT_START}: retraining {key} requested on {day}: champion PR-AUC "
              f"{by_day[day]['champion_pr_auc']:.3f} on predictions {by_day[day]['prediction_days']} "
              f"(before the drift: {by_day[records[0]['day']].get('champion_pr_auc', float('nan')):.3f})")
