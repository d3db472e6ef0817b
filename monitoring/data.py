"""Data access for monitoring: the prediction log's window, the champion's reference features,
report rows for the lake, and labelled performance. Heavy imports stay inside functions (the
code location imports this module)."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from urllib.parse import urlparse

LOG_TABLE = "prediction_log"
REFERENCE_TABLE = "drift_reference"


def report_dir(lake) -> Path | str:
    """data/reports/drift beside data/lake: HTML reports a person opens from the UI. For an
    object-store lake, the URL `reports/drift` beside the lake's prefix (s3://bucket/reports/drift
    for s3://bucket/lake)."""
    if not lake.is_remote:
        return lake.path.parent / "reports" / "drift"
    parsed = urlparse(lake.url)
    parent = posixpath.dirname(parsed.path.rstrip("/"))
    return f"{parsed.scheme}://{parsed.netloc}{parent.rstrip('/')}/reports/drift"


def _log_files(lake, days: list[str]) -> list[str]:
    """Every file of the prediction log's `date=<day>` folders (the ingress writes several a day)."""
    return lake.partition_files(LOG_TABLE, days)


def reference_url(lake, version: str) -> str:
    return lake.partition_url(REFERENCE_TABLE, str(version), key="model_version")


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def read_prediction_window(lake, days: list[str], categorical: list[str], numeric: list[str]):
    """(the window's monitored columns, total rows): the features the model scored and the
    `score`. DuckDB parses each row's JSON once into a struct of just those fields (a million
    rows in ~3 s). The model's row is `model_features` where the log has it (the served features
    after the online lookup, before normalisation), else the request (`features`: files written
    before the column existed; for raw transactions that is only the request's fields).
    Columns that no row carried (all null) are dropped."""
    import pandas as pd

    files = _log_files(lake, days)
    if not files:
        return pd.DataFrame(columns=[*categorical, *numeric, "score"]), 0
    fields = dict.fromkeys(categorical, "VARCHAR") | dict.fromkeys(numeric, "DOUBLE") | {"event_ts": "VARCHAR"}
    struct = json.dumps(fields).replace("'", "''")
    ts = "try_cast(s.event_ts as timestamptz)"
    derived = {"hour_of_day": f"hour({ts})", "day_of_week": f"isodow({ts}) - 1"}  # Feast's UTC definitions
    cols = [f's."{c}"' for c in categorical]
    cols += [f'coalesce(s."{n}", {derived[n]}) as "{n}"' if n in derived else f's."{n}"' for n in numeric]
    source = f"read_parquet({_sql_list(files)}, union_by_name = true)"
    with lake.duckdb_connect() as con:
        con.execute("set TimeZone = 'UTC'")
        present = {row[0] for row in con.sql(f"describe select * from {source}").fetchall()}
        text = "coalesce(model_features, features)" if "model_features" in present else "features"
        frame = con.sql(
            f"select {', '.join(cols)}, score::double as score from (select json_transform({text}, '{struct}') as s, "
            f"score from {source})"
        ).df()
    return frame.dropna(axis=1, how="all"), len(frame)


def champion_model(registry, version: str, dest):
    """The version's serving model (the artifact the predictors load, scored with the same code),
    or None when the version has none (a stand-in without a model)."""
    from seldon.artifact import ServingModel

    try:
        return ServingModel(registry.serving_artifact(version, dest))
    except Exception:  # noqa: BLE001 - no artifact, an unreadable one: the score is not monitored
        return None


def model_features(model) -> tuple[list[str], list[str]]:
    """(categorical, numeric) inputs of the champion (its serving schema), else of the v1 model."""
    if model is not None:
        return [c.name for c in model.schema.categorical], [n.name for n in model.schema.numeric]
    from ml.features import CATEGORICAL, NUMERIC

    return list(CATEGORICAL), list(NUMERIC)


def with_scores(lake, version: str, reference, model):
    """The reference with the champion's `score` of each row (the score distribution the drift
    report compares the served scores with), stored beside the cached reference. Needs every
    model input in the reference; else it is returned unchanged."""
    import pyarrow as pa

    if "score" in reference or model is None or not set(model.schema.feature_names) <= set(reference.columns):
        return reference
    columns = {c: reference[c].to_numpy() for c in model.schema.feature_names}
    scored = reference.assign(score=model.score_columns(columns).astype("float64"))
    lake.write_partition_file(reference_url(lake, version), pa.Table.from_pandas(scored, preserve_index=False))
    return scored


def with_time_features(frame):
    """hour_of_day / day_of_week from event_ts when a raw (jsonData) request did not carry them:
    the same UTC definitions as the Feast on-demand view."""
    import pandas as pd

    if "event_ts" in frame and ("hour_of_day" not in frame or "day_of_week" not in frame):
        ts = pd.to_datetime(frame["event_ts"], utc=True, errors="coerce", format="ISO8601")
        frame = frame.assign(
            **{k: v for k, v in (("hour_of_day", ts.dt.hour), ("day_of_week", ts.dt.dayofweek)) if k not in frame}
        )
    return frame


def reference_frame(lake, registry, version: str, cap: int, seed: int = 0, table: str = "training_set"):
    """(the champion's training features, source). Cached per version in the lake on first use,
    from the train split of `table` (the training frame of the champion's feature service), so a
    later retraining cannot change a champion's reference."""
    import pyarrow as pa

    cached = reference_url(lake, version)
    if lake.exists(cached):
        return lake.read_pandas(cached), f"{REFERENCE_TABLE}/model_version={version}"
    split = lake.partition_url(table, "train", key="split")
    if not lake.exists(split):
        raise ValueError(f"no reference for v{version}: neither {cached} nor the {table} train split exist")
    train = lake.read_pandas(split)
    source = f"{table} train split"
    window = _run_window(registry, version)
    if window and str(train["event_ts"].min()) != window["train"][0]:
        source += f" (differs from v{version}'s training window {window['train']})"
    sample = train.sample(n=min(cap, len(train)), random_state=seed)
    lake.write_partition_file(cached, pa.Table.from_pandas(sample, preserve_index=False))
    return sample, source


def _run_window(registry, version: str):
    try:
        client = registry.client()
        run = client.get_run(client.get_model_version(registry.model_name, str(version)).run_id)
        return json.loads(run.data.tags.get("training_window", "null"))
    except Exception:  # noqa: BLE001 - a version without a run (tests, imports) has no window
        return None


def report_rows(day: str, result, version: str, total: int) -> list[dict]:
    """One row per feature, for analysts (`select * from drift_report`)."""
    return [
        {
            "feature": f.name,
            "kind": f.kind,
            "method": f.method,
            "score": float(f.score),
            "threshold": float(f.threshold),
            "feature_drifted": bool(f.drifted),
            "window_drifted": bool(result.drifted),
            "share_drifted": float(result.share),
            "reference_model_version": version,
            "current_rows": int(total),
            "sampled_current_rows": int(result.sampled_current),
            "engine": result.engine,
        }
        for f in result.features
    ]


def performance_rows(lake, pred_days: list[str], label_days: list[str], threshold: float):
    """(rows per prediction day and model version, metrics per version pooled over the days)."""
    files = _log_files(lake, pred_days)
    labels = lake.existing_partition_files("raw_labels", label_days)
    if not files:
        return [], {}
    with lake.duckdb_connect() as con:
        con.execute(
            f"create view log as select * from read_parquet({_sql_list(files)}, hive_partitioning = true, "
            "union_by_name = true)"
        )
        label_sql = (
            f"select distinct event_id from read_parquet({_sql_list(labels)}) where is_fraud"
            if labels
            else "select null::varchar as event_id where false"
        )
        con.execute(f"create view fraud as {label_sql}")
        frame = con.sql("""
            select l.date::varchar as prediction_date, l.model_version, l.score,
                   f.event_id is not null as y
            from (select *, coalesce(json_extract_string(features, '$.event_id'), request_id) as event_id from log) l
            left join fraud f using (event_id)""").df()
    per_day = [
        {"prediction_date": d, "model_version": str(v), **metrics(g["y"].to_numpy(), g["score"].to_numpy(), threshold)}
        for (d, v), g in frame.groupby(["prediction_date", "model_version"], sort=True)
    ]
    pooled = {
        str(v): metrics(g["y"].to_numpy(), g["score"].to_numpy(), threshold)
        for v, g in frame.groupby("model_version", sort=True)
    }
    return per_day, pooled


def metrics(y, score, threshold: float) -> dict:
    import numpy as np

    from ml.metrics import pr_auc

    y, score = np.asarray(y, dtype=bool), np.asarray(score, dtype=np.float64)
    flagged = score >= threshold
    pos, hits = int(y.sum()), int((flagged & y).sum())
    return {
        "rows": len(y),
        "positives": pos,
        "flagged": int(flagged.sum()),
        "pr_auc": pr_auc(y, score) if pos else float("nan"),
        "recall": hits / pos if pos else float("nan"),
        "precision": hits / int(flagged.sum()) if flagged.any() else float("nan"),
    }
