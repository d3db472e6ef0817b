"""pandas baseline of docs/features.md, written the way a data scientist would.

It is the benchmark's baseline, so it favours the obvious idioms over speed:
`groupby(key).rolling(window, closed="left")` on a time index for the half-open windows,
`merge_asof(allow_exact_matches=False)` for "the latest strictly earlier transaction", a
rolling `apply` for distinct merchants, and a merge-then-filter for chargebacks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftline import spec

COLUMNS, REQUEST_COLUMNS = spec.COLUMNS, spec.REQUEST_COLUMNS
LOOKBACK = pd.Timedelta(spec.LOOKBACK.timedelta)


def _rolling(frame: pd.DataFrame, key: str, window: spec.Window, column: str, how):
    """Aggregate `column` over [t - window, t) per `key`. `frame` must be sorted by
    (key, event_ts): groupby-rolling returns rows in that order, so the result is put
    back on frame's index."""
    r = frame.set_index("event_ts").groupby(key)[column].rolling(pd.Timedelta(window.timedelta), closed="left")
    out = r.apply(how, raw=True) if callable(how) else r.agg(how)
    return out.set_axis(frame.index, axis=0)


def _latest_before(tx: pd.DataFrame, keys: list[str], cols: list[str], within: pd.Timedelta) -> pd.DataFrame:
    """Per row, the latest transaction of the same `keys` strictly before it, within `within`."""
    left = tx[["event_ts", *keys]].reset_index().sort_values("event_ts", kind="stable")
    right = tx[["event_ts", *keys, *cols]].rename(columns={"event_ts": "prev_ts", **{c: f"prev_{c}" for c in cols}})
    right = right.sort_values("prev_ts", kind="stable")
    prev = pd.merge_asof(
        left,
        right,
        left_on="event_ts",
        right_on="prev_ts",
        by=keys,
        direction="backward",
        allow_exact_matches=False,
        tolerance=within,
    )
    return prev.set_index("index").reindex(tx.index)


def compute_features_pandas(transactions: pd.DataFrame, labels: pd.DataFrame, start, end) -> pd.DataFrame:
    """Feature rows for transactions with start <= event_ts < end; earlier rows of
    `transactions` (up to the lookback) serve as history."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    tx = transactions[(transactions["event_ts"] >= start - LOOKBACK) & (transactions["event_ts"] < end)]
    # Earlier payments at one instant are ordered as they come (the spec leaves that tie open).
    tx = tx.sort_values(["user_id", "event_ts"], kind="stable", ignore_index=True)

    f = tx[REQUEST_COLUMNS].copy()
    f[spec.HOUR_OF_DAY] = tx["event_ts"].dt.hour.astype("int32")
    f[spec.DAY_OF_WEEK] = (tx["event_ts"].dt.dayofweek + 1).astype("int32")

    for window in spec.USER_WINDOWS:
        agg = _rolling(tx, "user_id", window, "amount", ["count", "sum"])
        f[spec.user_txn_count(window)] = agg["count"].fillna(0).astype("int64")
        f[spec.user_amount_sum(window)] = agg["sum"].fillna(0.0)

    prev = _latest_before(tx, ["user_id"], ["country"], LOOKBACK)
    f[spec.SECONDS_SINCE_PREV_TXN] = (tx["event_ts"] - prev["prev_ts"]).dt.total_seconds()
    f[spec.COUNTRY_CHANGED] = (prev["prev_country"].notna() & (prev["prev_country"] != tx["country"])).astype("int32")

    f[spec.AMOUNT_TO_USER_MEAN] = tx["amount"] / _rolling(tx, "user_id", spec.USER_MEAN, "amount", "mean")
    distinct = _rolling(tx, "user_id", spec.DISTINCT_MERCHANTS, "merchant_id", lambda m: len(np.unique(m)))
    f[spec.USER_DISTINCT_MERCHANTS] = distinct.fillna(0).astype("int64")

    same_merchant = _latest_before(tx, ["user_id", "merchant_id"], [], pd.Timedelta(spec.NEW_MERCHANT.timedelta))
    f[spec.IS_NEW_MERCHANT] = same_merchant["prev_ts"].isna().astype("int32")

    by_merchant = tx.sort_values(["merchant_id", "event_ts"], kind="stable")
    merchant_count = _rolling(by_merchant, "merchant_id", spec.MERCHANT, "user_id", "count")
    f[spec.MERCHANT_TXN_COUNT] = merchant_count.fillna(0).astype("int64")

    f = f[(f["event_ts"] >= start)]
    f[spec.MERCHANT_CB_COUNT] = _chargebacks(f, labels).astype("int64")
    f[spec.MERCHANT_CB_RATE] = f[spec.MERCHANT_CB_COUNT] / f[spec.MERCHANT_TXN_COUNT].clip(lower=1)
    return f[COLUMNS].reset_index(drop=True)


def _chargebacks(f: pd.DataFrame, labels: pd.DataFrame) -> pd.Series:
    """Chargebacks of the row's merchant known before t (label_ts < t) for transactions of
    the merchant window (label event_ts >= t - window): join on merchant, then filter."""
    cb = labels[["merchant_id", "event_ts", "label_ts"]].rename(columns={"event_ts": "cb_event_ts"})
    pairs = f[["merchant_id", "event_ts"]].reset_index().merge(cb, on="merchant_id")
    known = pairs[
        (pairs["label_ts"] < pairs["event_ts"])
        & (pairs["cb_event_ts"] >= pairs["event_ts"] - pd.Timedelta(spec.MERCHANT.timedelta))
    ]
    return known.groupby("index").size().reindex(f.index, fill_value=0)


def compute_features_pandas_from_files(
    transaction_files: list[str], label_files: list[str], start, end
) -> pd.DataFrame:
    """Read the lake's Parquet partitions with pandas, then compute."""
    transactions = pd.concat([pd.read_parquet(p) for p in transaction_files], ignore_index=True)
    labels = pd.concat([pd.read_parquet(p) for p in label_files], ignore_index=True)
    return compute_features_pandas(transactions, labels, start, end)
