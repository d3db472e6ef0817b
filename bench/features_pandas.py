"""pandas baseline of docs/features.md, written the way a data scientist would.

It is the benchmark's baseline, so it favours the obvious idioms over speed:
`groupby(key).rolling(window, closed="left")` on a time index for the half-open windows,
`merge_asof(allow_exact_matches=False)` for "the latest strictly earlier transaction", a
rolling `apply` for distinct merchants, and a merge-then-filter for chargebacks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.spec import COLUMNS, LOOKBACK, USER_WINDOWS

REQUEST_COLUMNS = ["event_id", "event_ts", "user_id", "merchant_id", "amount", "category", "country", "channel"]


def _rolling(frame: pd.DataFrame, key: str, window: str, column: str, how):
    """Aggregate `column` over [t - window, t) per `key`. `frame` must be sorted by
    (key, event_ts): groupby-rolling returns rows in that order, so the result is put
    back on frame's index."""
    r = frame.set_index("event_ts").groupby(key)[column].rolling(window, closed="left")
    out = r.apply(how, raw=True) if callable(how) else r.agg(how)
    return out.set_axis(frame.index, axis=0)


def _latest_before(tx: pd.DataFrame, keys: list[str], cols: list[str]) -> pd.DataFrame:
    """Per row, the latest transaction of the same `keys` strictly before it, within 30 days."""
    left = tx[["event_ts", *keys]].reset_index().sort_values("event_ts", kind="stable")
    right = tx[["event_ts", *keys, *cols]].rename(columns={"event_ts": "prev_ts", **{c: f"prev_{c}" for c in cols}})
    right = right.sort_values("prev_ts", kind="stable")
    prev = pd.merge_asof(left, right, left_on="event_ts", right_on="prev_ts", by=keys, direction="backward",
                         allow_exact_matches=False, tolerance=pd.Timedelta(LOOKBACK))
    return prev.set_index("index").reindex(tx.index)


def compute_features_pandas(transactions: pd.DataFrame, labels: pd.DataFrame, start, end) -> pd.DataFrame:
    """Feature rows for transactions with start <= event_ts < end; earlier rows of
    `transactions` (up to 30 days) serve as history."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    lookback = pd.Timedelta(LOOKBACK)
    tx = transactions[(transactions["event_ts"] >= start - lookback) & (transactions["event_ts"] < end)]
    # Earlier payments at one instant are ordered as they come (the spec leaves that tie open).
    tx = tx.sort_values(["user_id", "event_ts"], kind="stable", ignore_index=True)

    f = tx[REQUEST_COLUMNS].copy()
    f["hour_of_day"] = tx["event_ts"].dt.hour.astype("int32")
    f["day_of_week"] = (tx["event_ts"].dt.dayofweek + 1).astype("int32")

    for name, window in USER_WINDOWS.items():
        agg = _rolling(tx, "user_id", window, "amount", ["count", "sum"])
        f[f"user_txn_count_{name}"] = agg["count"].fillna(0).astype("int64")
        f[f"user_amount_sum_{name}"] = agg["sum"].fillna(0.0)

    prev = _latest_before(tx, ["user_id"], ["country"])
    f["seconds_since_prev_txn"] = (tx["event_ts"] - prev["prev_ts"]).dt.total_seconds()
    f["country_changed"] = (prev["prev_country"].notna() & (prev["prev_country"] != tx["country"])).astype("int32")

    f["amount_to_user_mean_30d"] = tx["amount"] / _rolling(tx, "user_id", LOOKBACK, "amount", "mean")
    distinct = _rolling(tx, "user_id", "24h", "merchant_id", lambda m: len(np.unique(m)))
    f["user_distinct_merchants_24h"] = distinct.fillna(0).astype("int64")

    same_merchant = _latest_before(tx, ["user_id", "merchant_id"], [])
    f["is_new_merchant"] = same_merchant["prev_ts"].isna().astype("int32")

    by_merchant = tx.sort_values(["merchant_id", "event_ts"], kind="stable")
    merchant_count = _rolling(by_merchant, "merchant_id", LOOKBACK, "user_id", "count")
    f["merchant_txn_count_30d"] = merchant_count.fillna(0).astype("int64")

    f = f[(f["event_ts"] >= start)]
    f["merchant_cb_count_30d"] = _chargebacks(f, labels).astype("int64")
    f["merchant_cb_rate_30d"] = f["merchant_cb_count_30d"] / f["merchant_txn_count_30d"].clip(lower=1)
    return f[COLUMNS].reset_index(drop=True)


def _chargebacks(f: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """Chargebacks of the row's merchant known before t (label_ts < t) for transactions of
    the last 30 days (label event_ts >= t - 30d): join on merchant, then filter."""
    cb = labels[["merchant_id", "event_ts", "label_ts"]].rename(columns={"event_ts": "cb_event_ts"})
    pairs = f[["merchant_id", "event_ts"]].reset_index().merge(cb, on="merchant_id")
    known = pairs[(pairs["label_ts"] < pairs["event_ts"])
                  & (pairs["cb_event_ts"] >= pairs["event_ts"] - pd.Timedelta(LOOKBACK))]
    return known.groupby("index").size().reindex(f.index, fill_value=0)


def compute_features_pandas_from_files(transaction_files: list[str], label_files: list[str], start, end) -> pd.DataFrame:
    """Read the lake's Parquet partitions with pandas, then compute."""
    transactions = pd.concat([pd.read_parquet(p) for p in transaction_files], ignore_index=True)
    labels = pd.concat([pd.read_parquet(p) for p in label_files], ignore_index=True)
    return compute_features_pandas(transactions, labels, start, end)
