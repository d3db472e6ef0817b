"""One Parquet file of the prediction log: a batch of answered requests, one row per scored
transaction, written atomically under <lake>/prediction_log/date=<day>/. Runs in the log's
writer processes (`seldon.predlog.PredictionLog`), so it is a plain module-level function."""

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

    cols = {k: [] for k in COLUMNS if k != "features"}
    features = FeatureEncoder()
    for rid, ts, sub, dep, pred, ver, body, scores, lat in items:
        n = len(scores)
        features.add(body, n)
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
    table = pa.table(
        {name: cols[name] if name == "features" else pa.array(cols[name], kind) for name, kind in _types().items()}
    )
    root_path = Path(root)
    target = root_path / TABLE / f"date={day}" / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    staging = root_path / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging / f"{TABLE}-{uuid.uuid4().hex}.parquet"
    # features are near-unique JSON text: a dictionary page for them is wasted work
    pq.write_table(table, tmp, compression="zstd", use_dictionary=[c for c in COLUMNS if c != "features"])  # pyright: ignore[reportArgumentType]  # documented `bool or list`; pyright infers bool from the default
    os.replace(tmp, target)
    return table.num_rows


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
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def _types() -> dict:
    """The table's schema (unchanged from the per-row writer it replaces)."""
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
    }
