"""Training frames: transactions of a window, features as served at their time, labels as known
at a cutoff, split by time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from driftline import spec
from seldon.artifact import FeatureSchema, encode_columns

from .features import LABEL

SPLITS = ("train", "val", "test")
REQUEST_COLUMNS = ["event_id", "event_ts", "user_id", "merchant_id", "amount", "category", "country", "channel"]


@dataclass(frozen=True)
class Window:
    """Transactions in [start, end) labelled with chargebacks known before `cutoff`."""

    start: dt.datetime
    end: dt.datetime
    cutoff: dt.datetime

    def days(self) -> list[str]:
        n = (self.end - self.start).days
        return [(self.start + dt.timedelta(days=k)).date().isoformat() for k in range(n)]


def window_for(last_feature_day: dt.date, window_days: int, maturity_days: int, cutoff: dt.datetime | None) -> Window:
    """The training window ends `maturity_days` before the cutoff: the newest transactions have
    had no time to be charged back, and training on them would teach the model they are clean."""
    cutoff = cutoff or dt.datetime.combine(last_feature_day + dt.timedelta(days=1), dt.time())
    end = dt.datetime.combine(cutoff.date(), dt.time()) - dt.timedelta(days=maturity_days)
    return Window(start=end - dt.timedelta(days=window_days), end=end, cutoff=cutoff)


def load_transactions(lake, window: Window) -> pd.DataFrame:
    files = lake.existing_partition_files("transaction_features", window.days())
    if not files:
        raise ValueError(f"no transaction_features partitions in {window.days()[0]}..{window.days()[-1]}")
    cols = ", ".join(REQUEST_COLUMNS)
    with lake.duckdb_connect() as con:  # reads the lake's URLs, object-store lakes included
        return con.sql(f"select {cols} from read_parquet(?) order by event_ts, event_id", params=[files]).df()


def load_stream_features(lake, window: Window) -> pd.DataFrame:
    """event_id and the STREAM_FEATURES of the window's transactions, from `transaction_features`:
    the offline, point-in-time definition of what the v2 online path serves at the event's time
    (`[t - w, t)`, the event itself and anything later excluded)."""
    files = lake.existing_partition_files("transaction_features", window.days())
    if not files:
        raise ValueError(f"no transaction_features partitions in {window.days()[0]}..{window.days()[-1]}")
    cols = ", ".join(["event_id", *spec.STREAM_FEATURES])
    with lake.duckdb_connect() as con:
        return con.sql(f"select {cols} from read_parquet(?)", params=[files]).df()


def service_frame(served: pd.DataFrame, stream: pd.DataFrame, service: str) -> pd.DataFrame:
    """The training frame of a feature service, row for row the same as `served`.

    `served`: the request columns, the fraud_model_v1 features Feast joined point-in-time
    (`FeastStore.training_frame`) and any further columns (label, split), which pass through.
    fraud_model_v1: `served` as it is. fraud_model_v2: its stream features replace the snapshot
    ones, taken from `stream` (`load_stream_features`) by event_id; the snapshot-based amount
    ratio, merchant state and calendar stay as Feast served them. Columns: the request columns,
    the service's features in service order, then the rest.
    """
    if service == spec.FEATURE_SERVICE:
        return served
    if service != spec.FEATURE_SERVICE_V2:
        raise ValueError(f"no training frame for feature service {service!r}")
    if not stream["event_id"].is_unique:
        raise ValueError("transaction_features has duplicate event_ids: rebuild the features")
    aligned = stream.set_index("event_id").reindex(served["event_id"])
    missing = int(aligned[spec.STREAM_FEATURES[0]].isna().sum())
    if missing:
        raise ValueError(f"{missing} training rows have no transaction_features row (by event_id)")
    head = [c for c in REQUEST_COLUMNS if c in served.columns]
    rest = [c for c in served.columns if c not in head and c not in spec.SERVED_FEATURES]
    out = pd.DataFrame(index=served.index)
    for c in head:
        out[c] = served[c]
    for c in spec.SERVED_FEATURES_V2:
        out[c] = aligned[c].to_numpy() if c in spec.STREAM_FEATURES else served[c]
    for c in rest:
        out[c] = served[c]
    return out


def known_labels(lake, window: Window) -> set[str]:
    """event_ids with a fraud chargeback whose label_ts is before the cutoff."""
    days = [
        (window.start + dt.timedelta(days=k)).date().isoformat() for k in range((window.cutoff - window.start).days + 1)
    ]
    files = lake.existing_partition_files("raw_labels", days)
    if not files:
        return set()
    with lake.duckdb_connect() as con:
        rows = con.sql(
            "select event_id from read_parquet(?) where is_fraud and label_ts < ?", params=[files, window.cutoff]
        ).fetchall()
    return {r[0] for r in rows}


def assign_splits(event_ts: pd.Series, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Whole days, oldest to train, then validation, newest to test: no shuffling across time."""
    days = np.sort(event_ts.dt.normalize().unique())
    n = len(days)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n - n_test - n_val < 1:
        raise ValueError(f"a window of {n} days is too short for train/validation/test splits")
    day = event_ts.dt.normalize().to_numpy()
    out = np.full(len(day), "train", dtype=object)
    out[day >= days[n - n_test - n_val]] = "val"
    out[day >= days[n - n_test]] = "test"
    return out


def encode_split(schema: FeatureSchema, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    columns = {name: frame[name].to_numpy() for name in schema.feature_names if name in frame.columns}
    cat, num = encode_columns(schema, columns)
    return cat, num, frame[LABEL].to_numpy().astype(np.float32)
