"""drift_sensor bookkeeping: one retraining per episode, cooldown, new champion, performance
floor, and a cursor and run keys that survive daemon restarts (a persistent DAGSTER_HOME)."""

import json

import dagster as dg
import pytest

from sensors.drift import EPISODE_TAG, RetrainPolicy, build_drift_sensor

POLICY = RetrainPolicy(min_drifted_windows=2, cooldown_days=7, pr_auc_floor=0.5, min_positives=20)


def _drift(instance, day, drifted, version="1"):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "drift_report",
            partition=day,
            metadata={"drifted": drifted, "reference_model_version": version, "current_rows": 1000, "reason": "test"},
        )
    )


def _perf(instance, day, pr_auc, first_day, version="1", positives=50):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "model_performance",
            partition=day,
            metadata={
                "champion_version": version,
                "champion_pr_auc": pr_auc,
                "champion_positives": positives,
                "prediction_days": f"{first_day}..{first_day}",
            },
        )
    )


def _tick(instance, cursor, policy=POLICY):
    result = build_drift_sensor(policy)(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult) and result.cursor is not None
    return [r.run_key for r in result.run_requests or []], result.cursor


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_one_retraining_per_episode_then_cooldown(instance):
    _drift(instance, "2026-10-10", True)
    keys, cursor = _tick(instance, None)
    assert keys == []  # one drifted window is not yet "drift holds"
    _drift(instance, "2026-10-11", True)
    keys, cursor = _tick(instance, cursor)
    assert keys == ["drift-v1-2026-10-11"]
    for day in ("2026-10-12", "2026-10-13"):
        _drift(instance, day, True)
    keys, cursor = _tick(instance, cursor)
    assert keys == []  # the same episode
    _drift(instance, "2026-10-14", False)  # episode over
    _drift(instance, "2026-10-15", True)
    _drift(instance, "2026-10-16", True)
    keys, cursor = _tick(instance, cursor)
    assert keys == []  # a new episode, but within the cooldown of the last retraining
    _drift(instance, "2026-10-18", True)
    keys, cursor = _tick(instance, cursor)
    assert keys == ["drift-v1-2026-10-18"]  # cooldown over and drift still holds
    state = json.loads(cursor)
    assert state["last_retrain_day"] == "2026-10-18" and state["drift_after"] > 0


def test_new_champion_starts_a_new_count(instance):
    for day in ("2026-10-10", "2026-10-11"):
        _drift(instance, day, True)
    keys, cursor = _tick(instance, None, RetrainPolicy(cooldown_days=0))
    assert keys == ["drift-v1-2026-10-11"]
    _drift(instance, "2026-10-12", True, version="2")  # promoted challenger: its own reference
    keys, cursor = _tick(instance, cursor, RetrainPolicy(cooldown_days=0))
    assert keys == []
    _drift(instance, "2026-10-13", True, version="2")
    keys, _ = _tick(instance, cursor, RetrainPolicy(cooldown_days=0))
    assert keys == ["drift-v2-2026-10-13"]


def test_performance_floor_triggers_once_and_ignores_predictions_before_the_last_retraining(instance):
    _perf(instance, "2026-11-01", 0.7, "2026-10-12")
    keys, cursor = _tick(instance, None)
    assert keys == []
    _perf(instance, "2026-11-02", 0.3, "2026-10-13", positives=5)  # too few labels to judge
    keys, cursor = _tick(instance, cursor)
    assert keys == []
    _perf(instance, "2026-11-03", 0.3, "2026-10-14")
    _perf(instance, "2026-11-04", 0.3, "2026-10-15")
    keys, cursor = _tick(instance, cursor)
    assert keys == ["performance-v1-2026-11-03"]
    # the champion is unchanged and still poor on predictions made before that retraining: no new run
    _perf(instance, "2026-11-12", 0.3, "2026-10-23")
    keys, cursor = _tick(instance, cursor)
    assert keys == []


def test_cursor_and_run_keys_survive_daemon_restarts(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as first:
        for day in ("2026-10-10", "2026-10-11"):
            _drift(first, day, True)
        keys, cursor = _tick(first, None)
        assert keys == ["drift-v1-2026-10-11"]
    # the daemon restarts: same storage, the cursor it had stored
    with dg.instance_for_test(temp_dir=str(home)) as second:
        assert _tick(second, cursor)[0] == []
        _drift(second, "2026-10-12", True)
        assert _tick(second, cursor)[0] == []
        # the cursor is lost: the history replays to the same run key, which Dagster launches once ...
        assert _tick(second, None)[0] == ["drift-v1-2026-10-11"]
        # ... and once that run exists, the sensor does not even ask again
        dg.materialize([noop], instance=second, tags={EPISODE_TAG: "drift-v1-2026-10-11"})
        assert _tick(second, None)[0] == []


@dg.asset
def noop():
    return None


def test_tick_skips_cleanly_without_reports(instance):
    result = build_drift_sensor(POLICY)(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SensorResult) and result.cursor is not None
    assert not result.run_requests and json.loads(result.cursor) == {}
