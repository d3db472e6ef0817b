"""Served traffic without the serving stack, for tests, benchmarks and dry runs.

Generator days are landed in the lake as ingestion stores them; the feature assets' own code
computes `transaction_features` and the daily `user_state` / `merchant_state` snapshots, and
Feast's point-in-time join gives each request the features the online store serves at its time
(tests/test_serving_skew.py: the same scores as the live raw path). A real champion, trained by
the `training_set` and `fraud_model` assets, scores them through its registered serving artifact
(the files the predictor loads), and the prediction log gets the rows in the ingress's format
(seldon/predlog.py), as the raw `jsonData` transactions a client sends, with the rows the model
scored beside them (`model_features`: the features Feast serves at each request's time).

Nothing here looks at the generator's ground truth: a pattern the champion never saw in its
training window (the concept-drift one) gets whatever score the model gives it.
`register_stand_in_champion` and `write_reference` remain for tests whose scores are hand-made.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

from driftline import spec

if TYPE_CHECKING:
    import numpy as np

RAW_FIELDS = ["event_id", "user_id", "merchant_id", "amount", "category", "country", "channel"]


def days_between(first: dt.date, end: dt.date) -> list[dt.date]:
    """The days of [first, end)."""
    return [first + dt.timedelta(days=k) for k in range((end - first).days)]


def land_days(lake, world, days: list[dt.date]) -> None:
    """`raw_transactions` and `raw_labels` partitions of `days`, typed as ingestion stores them
    (the generator's rows all pass the contracts: nothing to quarantine)."""
    import pyarrow as pa

    from assets.contracts import LABELS, TRANSACTIONS
    from assets.ingestion import storage_schema

    for d in days:
        for contract, frame in ((TRANSACTIONS, world.transactions(d)), (LABELS, world.labels(d))):
            table = pa.Table.from_pandas(
                frame[list(contract.columns)], schema=storage_schema(contract), preserve_index=False
            )
            lake.write_partition(contract.name, d.isoformat(), table)


def build_features(resources: dict, days: list[dt.date], snapshot_days: list[dt.date]) -> None:
    """What the feature assets materialize, without a Dagster run per partition: the
    `transaction_features` of `days` in one engine pass (as a backfill does), the `user_state` and
    `merchant_state` snapshots of `snapshot_days` (a request on day D is served D-1's), and the
    Feast registry (`feast_registry`)."""
    from concurrent.futures import ThreadPoolExecutor

    from assets.feature_store import (
        MERCHANT_STATE_TABLE,
        RAW_LABELS_TABLE,
        TRANSACTION_FEATURES_TABLE,
        USER_STATE_TABLE,
        compute_merchant_state,
        compute_user_state,
        snapshot_instant,
    )
    from assets.features import split_by_day
    from assets.partitions import LOOKBACK_DAYS, day_bounds, days_back

    lake = resources["lake"]
    if days:
        start, end = day_bounds(days[0])[0], day_bounds(days[-1])[1]
        table = resources["feature_engine"].compute(lake, start, end)
        lake.write_partitions(TRANSACTION_FEATURES_TABLE, split_by_day(table, start, end))

    def snapshot(d: dt.date) -> None:  # as the user_state and merchant_state assets compute day d
        tx_files = lake.existing_partition_files(TRANSACTION_FEATURES_TABLE, days_back(d, LOOKBACK_DAYS))
        label_files = lake.existing_partition_files(RAW_LABELS_TABLE, days_back(d, LOOKBACK_DAYS - 1))
        as_of = snapshot_instant(d.isoformat())
        lake.write_partition(USER_STATE_TABLE, d.isoformat(), compute_user_state(tx_files, as_of, lake))
        lake.write_partition(
            MERCHANT_STATE_TABLE, d.isoformat(), compute_merchant_state(tx_files, label_files, as_of, lake)
        )

    with ThreadPoolExecutor(2) as pool:  # small DuckDB queries: two at a time hide their overheads
        list(pool.map(snapshot, snapshot_days))
    resources["feast"].apply()


def train_champion(
    resources: dict, cutoff: dt.date, window_days: int, maturity_days: int, training: dict | None = None, instance=None
) -> str:
    """`training_set` (Feast point-in-time features, labels known before `cutoff`) and
    `fraud_model` (Lightning, logged and registered in MLflow) in one Dagster run, as the retraining
    job runs them; the registered version becomes champion. Returns the version.

    `model_evaluation` is not run: the gate has its own tests (tests/test_training.py), and here
    the model that monitoring watches must exist whatever the gate would say of it."""
    import dagster as dg

    from assets.training import fraud_model, training_set
    from resources.mlflow_registry import CHALLENGER, CHAMPION

    cutoff_ts = dt.datetime.combine(cutoff, dt.time()).isoformat()
    result = dg.materialize(
        [training_set, fraud_model],
        resources=resources,
        instance=instance,
        run_config={
            "ops": {
                "training_set": {
                    "config": {"window_days": window_days, "maturity_days": maturity_days, "cutoff": cutoff_ts}
                },
                "fraud_model": {
                    "config": {"accelerator": "cpu", "feature_service": spec.FEATURE_SERVICE, **(training or {})}
                },
            }
        },
    )
    meta = {
        e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }
    version = str(meta["fraud_model"]["model_version"])
    registry = resources["mlflow_registry"]
    registry.set_alias(CHAMPION, version)
    registry.delete_alias(CHALLENGER)
    return version


def champion_scores(resources: dict, version: str, days: list[dt.date]) -> dict[str, np.ndarray]:
    """Scores of registry version `version` for every transaction of `days` (ISO day -> scores in
    `world.transactions(day)` order): its serving artifact on the features Feast serves at each
    request's time. The lake needs the days' snapshots up to the day before the last one."""
    import tempfile

    import numpy as np
    import pandas as pd

    from seldon.artifact import ServingModel

    if not days:
        return {}
    world = resources["event_source"].world()
    frames = [world.transactions(d) for d in days]
    served = resources["feast"].training_frame(pd.concat(frames, ignore_index=True))
    with tempfile.TemporaryDirectory() as tmp:
        model = ServingModel(resources["mlflow_registry"].serving_artifact(version, tmp))
    scores = model.score_columns({c: served[c].to_numpy() for c in model.schema.feature_names})
    bounds = np.cumsum([0] + [len(f) for f in frames])
    return {d.isoformat(): scores[bounds[k] : bounds[k + 1]] for k, d in enumerate(days)}


def served_rows(resources: dict, days: list[dt.date]) -> dict:
    """The rows the model scores for every transaction of `days` (ISO day -> a frame of the model's
    inputs, in `world.transactions(day)` order): the features Feast serves at each request's time,
    what the predictor hands the prediction log as `model_features` for raw transactions."""
    import numpy as np
    import pandas as pd

    from ml.features import CATEGORICAL, INPUTS

    if not days:
        return {}
    world = resources["event_source"].world()
    frames = [world.transactions(d) for d in days]
    served = resources["feast"].training_frame(pd.concat(frames, ignore_index=True))
    inputs = dict.fromkeys([*CATEGORICAL, *(n for i in INPUTS.values() for n in i.numeric)])
    columns = [c for c in inputs if c in served.columns]
    bounds = np.cumsum([0] + [len(f) for f in frames])
    return {d.isoformat(): served[columns].iloc[bounds[k] : bounds[k + 1]] for k, d in enumerate(days)}


def write_prediction_log(
    lake_root,
    day: str,
    tx,
    scores,
    model_version: str = "1",
    predictor: str = "main",
    deployment: str = "fraud",
    model_rows=None,
) -> Path | str:
    """One Parquet file under prediction_log/date=<day>/, columns as the ingress writes them.

    `lake_root`: a local root (str / Path), or a `Lake` resource (any root, object stores
    included: written through the lake, atomically). `model_rows` (a frame, `served_rows`): the
    rows the model scored, logged as `model_features`; without it the file has no such column (as
    files written before the column existed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = tx[RAW_FIELDS].assign(event_ts=tx["event_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S")).to_dict("records")
    ts = tx["event_ts"].dt.tz_localize("UTC").to_numpy()
    n = len(tx)
    table = pa.table(
        {
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
        }
    )
    if model_rows is not None:  # pandas writes NaN as null
        text = model_rows.to_json(orient="records", lines=True, double_precision=15).splitlines()
        table = table.append_column("model_features", pa.array(text, pa.string()))
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
    """A registry version with the `champion` alias and no model behind it, for tests that write
    hand-made scores and only need a champion version to name."""
    from resources.mlflow_registry import CHAMPION

    mlflow, _ = registry.setup()
    client = mlflow.MlflowClient()
    if not client.search_registered_models(f"name = '{registry.model_name}'"):
        client.create_registered_model(registry.model_name)
    version = client.create_model_version(registry.model_name, source=str(Path(registry.artifact_root).resolve()))
    registry.set_alias(CHAMPION, version.version)
    return str(version.version)


def replay(
    resources: dict,
    instance,
    days: list[dt.date],
    policy,
    scores: dict,
    version: str = "1",
    engine: str = "numpy",
    tick=None,
) -> list[dict]:
    """Day by day as production would see it: the day's traffic with its `scores` (ISO day ->
    scores, e.g. `champion_scores`) in the prediction log, then drift_report and model_performance
    of the day, then a tick of the drift sensor's logic (`tick(instance, cursor) -> (requests,
    cursor)`). Returns one record per day.

    The raw partitions must be in the lake already (`land_days`: the snapshots behind the scores
    need them); model_performance of day D reads only the `raw_labels` partitions up to D."""
    import dagster as dg

    from assets import monitoring
    from sensors.drift import evaluate

    tick = tick or (lambda inst, cur: evaluate(inst, cur, policy)[:2])
    lake, world = resources["lake"], resources["event_source"].world()
    rows = served_rows(resources, days)  # as the predictor hands them to the log
    cursor, out = {}, []
    for d in days:
        day = d.isoformat()
        write_prediction_log(lake, day, world.transactions(d), scores[day], model_version=version, model_rows=rows[day])
        result = dg.materialize(
            [monitoring.prediction_log, monitoring.drift_report, monitoring.model_performance],
            selection=[monitoring.drift_report, monitoring.model_performance],
            partition_key=day,
            resources=resources,
            instance=instance,
            run_config={"ops": {"drift_report": {"config": {"engine": engine}}}},
        )
        meta = {
            e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()
        }
        requests, cursor = tick(instance, cursor)
        out.append(
            {"day": day, "drift": meta["drift_report"], "performance": meta["model_performance"], "requests": requests}
        )
    return out


def seed_history(resources: dict, days: list[dt.date], scores: dict, version: str = "1") -> None:
    """Served traffic of days before monitoring starts (no reports), with its `scores`."""
    lake, world = resources["lake"], resources["event_source"].world()
    rows = served_rows(resources, days)
    for d in days:
        day = d.isoformat()
        write_prediction_log(lake, day, world.transactions(d), scores[day], model_version=version, model_rows=rows[day])


def write_reference(lake, world, days: list[dt.date], version: str = "1") -> None:
    import pyarrow as pa

    from monitoring.data import reference_url

    frame = reference_from_days(world, days)
    lake.write_partition_file(reference_url(lake, version), pa.Table.from_pandas(frame, preserve_index=False))
