"""`drift_sensor`: retrains when the served inputs drift (`drift_report`) or the champion's
labelled PR-AUC falls below a floor (`model_performance`).

A tick only reads new materialization records (metadata, no data), so it stays far below the
60 s sensor timeout. One retraining per episode: drift must hold for `min_drifted_windows`
reports in a row; the episode ends with a clean report or a new champion; a cooldown (in
partition days) spaces retrainings; the run key names the episode, so a daemon that lost the
cursor re-creates the same key and Dagster does not launch it twice. The cursor (JSON) holds
the last storage ids read and the episode state, and is stored by the daemon across restarts.
"""

import datetime as dt
import json
from dataclasses import dataclass, field

import dagster as dg

RETRAIN_ASSETS = ["training_set", "fraud_model", "model_evaluation", "seldon_deployment"]
EPISODE_TAG = "driftline/retrain-episode"
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.assets(*RETRAIN_ASSETS),
    description="Fresh training set (recent data included), model, evaluation gate, canary deployment.",
)


@dataclass(frozen=True)
class RetrainPolicy:
    min_drifted_windows: int = 2  # consecutive drifted daily reports before drift "holds"
    cooldown_days: int = 7  # partition days between two retrainings
    pr_auc_floor: float = 0.3  # champion's labelled PR-AUC below this: retrain
    min_positives: int = 20  # fewer labelled frauds in the window: no judgement
    # Recent data in the new training set: labels need only be this old (the default waits 10
    # days); younger than ~7 days, the newest (test) days have too few chargebacks to judge a model.
    training_set: dict = field(default_factory=lambda: {"maturity_days": 7, "window_days": 21})


def _days_between(a: str, b: str) -> int:
    return (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days


def on_drift(state: dict, day: str, drifted: bool, version: str, policy: RetrainPolicy) -> str | None:
    """Update the episode state with one drift report; the episode key when it should retrain."""
    if state.get("reference") != version:  # a new champion: its reference starts a fresh count
        state.update(reference=version, streak=0, drift_episode=None)
    if not drifted:
        state.update(streak=0, drift_episode=None)
        return None
    state["streak"] = state.get("streak", 0) + 1
    if state["streak"] < policy.min_drifted_windows or state.get("drift_episode"):
        return None
    if _cooling(state, day, policy):
        return None
    key = f"drift-v{version}-{day}"
    state.update(drift_episode=key, last_retrain_day=day)
    return key


def on_performance(
    state: dict, day: str, first_prediction_day: str, pr_auc, positives: int, version: str, policy: RetrainPolicy
) -> str | None:
    """Same for one model_performance result of the champion."""
    if pr_auc is None or positives < policy.min_positives:
        return None
    if pr_auc >= policy.pr_auc_floor:
        state["perf_episode"] = None
        return None
    last = state.get("last_retrain_day")
    if state.get("perf_episode") or (last and last >= first_prediction_day) or _cooling(state, day, policy):
        return None  # already handled, or judged on predictions made before the last retraining
    key = f"performance-v{version}-{day}"
    state.update(perf_episode=key, last_retrain_day=day)
    return key


def _cooling(state: dict, day: str, policy: RetrainPolicy) -> bool:
    last = state.get("last_retrain_day")
    return bool(last) and _days_between(last, day) < policy.cooldown_days


def _records(instance, key: str, after: int):
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), after_storage_id=after), limit=200, ascending=True
    ).records


def _value(meta, name, default=None):
    return meta[name].value if name in meta else default


def evaluate(instance, cursor: dict, policy: RetrainPolicy) -> tuple[list[dict], dict, list[str]]:
    """(retraining requests, new cursor, log lines) from the reports stored since the cursor."""
    state = dict(cursor)
    events = [("drift", r) for r in _records(instance, "drift_report", state.get("drift_after", 0))]
    events += [("perf", r) for r in _records(instance, "model_performance", state.get("perf_after", 0))]
    requests, notes = [], []
    for kind, record in sorted(events, key=lambda e: e[1].storage_id):
        meta, day = record.asset_materialization.metadata, record.partition_key
        if kind == "drift":
            state["drift_after"] = record.storage_id
            if "reference_model_version" not in meta or _value(meta, "current_rows", 0) == 0:
                continue
            key = on_drift(
                state, day, bool(_value(meta, "drifted")), str(_value(meta, "reference_model_version")), policy
            )
            reason = f"drift {day}: {_value(meta, 'reason')}"
        else:
            state["perf_after"] = record.storage_id
            champion = str(_value(meta, "champion_version", "none"))
            first = str(_value(meta, "prediction_days", day)).split("..")[0]
            key = on_performance(
                state,
                day,
                first,
                _value(meta, "champion_pr_auc"),
                int(_value(meta, "champion_positives", 0)),
                champion,
                policy,
            )
            reason = (
                f"champion v{champion} PR-AUC {_value(meta, 'champion_pr_auc')} < floor {policy.pr_auc_floor}"
                f" on predictions {_value(meta, 'prediction_days')}"
            )
        if key:
            requests.append(
                {"key": key, "trigger": kind if kind == "drift" else "performance", "reason": reason, "day": day}
            )
            notes.append(f"retrain {key}: {reason}")
    return requests, state, notes


def _already_requested(instance, key: str) -> bool:
    return bool(instance.get_run_ids(dg.RunsFilter(tags={EPISODE_TAG: key}), limit=1))


def build_drift_sensor(
    policy: RetrainPolicy | None = None,
    interval_s: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
):
    policy = policy or RetrainPolicy()

    @dg.sensor(
        name="drift_sensor",
        job=retrain_job,
        minimum_interval_seconds=interval_s,
        default_status=default_status,
        description="Retrains (training set .. canary) when drift holds or the champion's PR-AUC drops.",
    )
    def drift_sensor(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        requests, state, notes = evaluate(context.instance, cursor, policy)
        for line in notes:
            context.log.info(line)
        runs = [
            dg.RunRequest(
                run_key=r["key"],
                run_config={"ops": {"training_set": {"config": dict(policy.training_set)}}},
                tags={"driftline/trigger": r["trigger"], EPISODE_TAG: r["key"], "driftline/reason": r["reason"][:200]},
            )
            for r in requests
            if not _already_requested(context.instance, r["key"])
        ]
        cursor_out = json.dumps(state, sort_keys=True)
        if not runs:
            return dg.SensorResult(skip_reason=dg.SkipReason("no new drift or performance episode"), cursor=cursor_out)
        return dg.SensorResult(run_requests=runs, cursor=cursor_out)

    return drift_sensor
