"""One Parquet file of the prediction log: a batch of answered requests, one row per scored
transaction, written atomically under <lake>/prediction_log/date=<day>/. Runs in the log's
writer processes (`seldon.predlog.PredictionLog`), so it is a plain module-level function.

Each row keeps the request (`features`, as sent) and beside it the feature row the model scored
(`model_features`): what drift monitoring compares with the training features."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path

from seldon.predlog_encoding import FeatureEncoder

TABLE = "prediction_log"


def write_file(root: str, day: str, items: list) -> int:
    """One Parquet file of the day's requests under <root>/prediction_log/date=<day>/, written
    atomically; the number of rows. Columns are built by whole-request extends (no per-row
    Python), the features as one JSON object per row (`FeatureEncoder`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {k: [] for k in COLUMNS if k not in _TEXT}
    features, completed = FeatureEncoder(), FeatureEncoder()
    spans: list[tuple[str, int, int]] = []  # model rows: ("completed", start in `completed`, n) | ("null", 0, n)
    done = 0
    for item in items:
        rid, ts, sub, dep, pred, ver, body, scores, lat = item[:9]
        seen = item[9] if len(item) > 9 and isinstance(item[9], dict) else {}
        n = len(scores)
        names, rows = seen.get("names"), seen.get("ndarray")
        # `data` rows are the model's (positional ones named by the model's answer): null beside them
        features.add(body, n, names=names if rows is None else None)
        if isinstance(rows, list):  # raw transactions: the rows the online lookup completed
            completed.add_rows(names, rows, n)
            _extend(spans, "completed", done, n)
            done += n
        else:
            _extend(spans, "null", 0, n)
        when = dt.datetime.fromtimestamp(ts, dt.UTC)
        cols["request_id"] += [rid] * n
        cols["row"] += range(n)
        cols["ts"] += [(when - _EPOCH) // _US] * n
        cols["subject"] += [sub] * n
        cols["deployment"] += [dep] * n
        cols["predictor"] += [pred] * n
        cols["model_version"] += [ver] * n
        cols["score"] += scores
        cols["latency_ms"] += [lat * 1000.0] * n
    cols["features"] = features.finish()
    cols["model_features"] = _model_features(spans, completed.finish())
    table = pa.table(
        {name: cols[name] if name in _TEXT else pa.array(cols[name], kind) for name, kind in arrow_types().items()}
    )
    root_path = Path(root)
    target = root_path / TABLE / f"date={day}" / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    staging = root_path / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging / f"{TABLE}-{uuid.uuid4().hex}.parquet"
    # features are near-unique JSON text: a dictionary page for them is wasted work
    pq.write_table(table, tmp, compression="zstd", use_dictionary=[c for c in COLUMNS if c not in _TEXT])  # pyright: ignore[reportArgumentType]  # documented `bool or list`; pyright infers bool from the default
    os.replace(tmp, target)
    return table.num_rows


def _extend(spans: list, kind: str, start: int, n: int) -> None:
    """Appends a span of rows, merged with the previous one when it continues it."""
    if spans and spans[-1][0] == kind and (kind == "null" or spans[-1][1] + spans[-1][2] == start):
        spans[-1] = (kind, spans[-1][1], spans[-1][2] + n)
    elif n:
        spans.append((kind, start, n))


def _model_features(spans: list, completed):
    """The `model_features` column: the completed rows of raw transactions; null where the
    request's own row (`features`) is the model's row, or where it is not known."""
    import pyarrow as pa

    parts = [completed.slice(start, n) if kind == "completed" else pa.nulls(n, pa.string()) for kind, start, n in spans]
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


COLUMNS = (
    "request_id",
    "row",
    "ts",
    "subject",
    "deployment",
    "predictor",
    "model_version",
    "features",
    "score",
    "latency_ms",
    "model_features",
)
_TEXT = ("features", "model_features")  # JSON text, built by FeatureEncoder
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def arrow_types() -> dict:
    """The table's schema: the per-row writer's it replaces, plus `model_features` (appended)."""
    import pyarrow as pa

    s = pa.string()
    return {
        "request_id": s,
        "row": pa.int32(),
        "ts": pa.timestamp("us", tz="UTC"),
        "subject": s,
        "deployment": s,
        "predictor": s,
        "model_version": s,
        "features": s,
        "score": pa.float32(),
        "latency_ms": pa.float64(),
        # The feature row the model scored, before normalisation (JSON object, the model's
        # names), where the request is not it: for raw transactions, the row the online lookup
        # completed. Null for `data` rows (their `features` are the model's row, positional ones
        # named by the model) and where unknown; files written before it lack the column.
        # Readers take coalesce(model_features, features).
        "model_features": s,
    }
