"""Served traffic without the serving stack, for tests, benchmarks and dry runs: generator days
written to the lake's `prediction_log` in the ingress's format (seldon/predlog.py), as the raw
`jsonData` transactions a client sends, with scores from a stand-in champion.

The stand-in knows the fraud patterns that existed when it was trained (the standing ones) and
not the concept-drift pattern: the behaviour of a real model trained before the drift.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

RAW_FIELDS = ["event_id", "user_id", "merchant_id", "amount", "category", "country", "channel"]


def stand_in_scores(world, day: dt.date, tx, seed: int = 0):
    """High for frauds of the standing patterns, low (with some false alarms) for everything else."""
    import numpy as np

    rng = np.random.default_rng([seed, day.toordinal()])
    truth = world.fraud_truth(day)
    known = set(truth.loc[truth["pattern"] != "night_contactless", "event_id"])
    is_known = tx["event_id"].isin(known).to_numpy()
    legit = rng.beta(1.0, 12.0, len(tx))
    return np.where(is_known, rng.uniform(0.35, 1.0, len(tx)), legit).astype(np.float32)


def write_prediction_log(lake_root, day: str, tx, scores, model_version: str = "1",
                         predictor: str = "main", deployment: str = "fraud") -> Path | str:
    """One Parquet file under prediction_log/date=<day>/, columns as the ingress writes them.

    `lake_root`: a local root (str / Path), or a `Lake` resource (any root, object stores
    included: written through the lake, atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = tx[RAW_FIELDS].assign(event_ts=tx["event_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")).to_dict("records")
    ts = tx["event_ts"].dt.tz_localize("UTC").to_numpy()
    n = len(tx)
    table = pa.table({
        "request_id": pa.array([r["event_id"] for r in records], pa.string()),
        "row": pa.array([0] * n, pa.int32()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "subject": pa.array(["simulator"] * n, pa.string()),
        "deployment": pa.array([deployment] * n, pa.string()),
        "predictor": pa.array([predictor] * n, pa.string()),
        "model_version": pa.array([str(model_version)] * n, pa.string()),
        "features": pa.array([json.dumps(r, default=_plain) for r in records], pa.string()),
        "score": pa.array(scores, pa.float32()),
        "latency_ms": pa.array([1.0] * n, pa.float64()),
    })
    name = f"part-sim-{model_version}-{predictor}.parquet"
    if hasattr(lake_root, "write_partition_file"):  # a Lake
        if lake_root.is_remote:
            return lake_root.write_partition_file(lake_root.partition_url("prediction_log", day, file=name), table)
        lake_root = lake_root.url
    target = Path(lake_root) / "prediction_log" / f"date={day}" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target)
    return target


def _plain(value):
    return value.item() if hasattr(value, "item") else str(value)


def reference_from_days(world, days: list[dt.date]):
    """A champion's training features, as far as the raw request carries them."""
    import pandas as pd

    from monitoring.data import with_time_features

    tx = pd.concat([world.transactions(d) for d in days], ignore_index=True)
    return with_time_features(tx.assign(event_ts=tx["event_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")))


def register_stand_in_champion(registry) -> str:
    """A registry version with the `champion` alias and no model behind it (the stand-in scores)."""
    from resources.mlflow_registry import CHAMPION

    mlflow, _ = registry.setup()
    client = mlflow.MlflowClient()
    if not client.search_registered_models(f"name = '{registry.model_name}'"):
        client.create_registered_model(registry.model_name)
    version = client.create_model_version(registry.model_name, source=str(Path(registry.artifact_root).resolve()))
    registry.set_alias(CHAMPION, version.version)
    return str(version.version)


def replay(resources: dict, instance, days: list[dt.date], policy, version: str = "1", engine: str = "numpy",
           tick=None) -> list[dict]:
    """Day by day as production would see it: the day's traffic in the prediction log and its
    chargebacks in raw_labels, then drift_report and model_performance of the day, then a tick of
    the drift sensor's logic (`tick(instance, cursor) -> (requests, cursor)`). Returns one record per day."""
    import dagster as dg
    import pyarrow as pa

    from assets import monitoring
    from sensors.drift import evaluate

    tick = tick or (lambda inst, cur: evaluate(inst, cur, policy)[:2])
    lake, world = resources["lake"], resources["event_source"].world()
    cursor, out = {}, []
    for d in days:
        day = d.isoformat()
        tx = world.transactions(d)
        write_prediction_log(lake, day, tx, stand_in_scores(world, d, tx), model_version=version)
        lake.write_partition("raw_labels", day, pa.Table.from_pandas(world.labels(d), preserve_index=False))
        result = dg.materialize([monitoring.prediction_log, monitoring.drift_report, monitoring.model_performance],
                                selection=[monitoring.drift_report, monitoring.model_performance], partition_key=day,
                                resources=resources, instance=instance,
                                run_config={"ops": {"drift_report": {"config": {"engine": engine}}}})
        meta = {e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
        requests, cursor = tick(instance, cursor)
        out.append({"day": day, "drift": meta["drift_report"], "performance": meta["model_performance"],
                    "requests": requests})
    return out


def seed_history(resources: dict, days: list[dt.date], version: str = "1") -> None:
    """Traffic and chargebacks of days before monitoring starts (no reports)."""
    import pyarrow as pa

    lake, world = resources["lake"], resources["event_source"].world()
    for d in days:
        tx = world.transactions(d)
        write_prediction_log(lake, d.isoformat(), tx, stand_in_scores(world, d, tx), model_version=version)
        lake.write_partition("raw_labels", d.isoformat(), pa.Table.from_pandas(world.labels(d), preserve_index=False))


def write_reference(lake, world, days: list[dt.date], version: str = "1") -> None:
    import pyarrow as pa

    from monitoring.data import reference_url

    frame = reference_from_days(world, days)
    lake.write_partition_file(reference_url(lake, version), pa.Table.from_pandas(frame, preserve_index=False))
