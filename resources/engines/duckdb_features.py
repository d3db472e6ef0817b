"""`transaction_features` on DuckDB: SQL scans, prunes and sorts the lake; the windows are
binary searches over the sorted arrays (see `sorted_windows`).

One sort by (user, time) serves every user window; the merchant windows need only a sort of
one int64 key. Chargebacks become a +1 at `label_ts` and a -1 when their transaction leaves
the 30-day window, so "known chargebacks" is a prefix count too.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import sorted_windows as sw

US = 1_000_000
HOUR = 3600 * US
DAY = 24 * HOUR
LOOKBACK = 30 * DAY
USER_WINDOWS = {"1h": HOUR, "24h": DAY, "7d": 7 * DAY}
MICRO_UNITS = 1_000_000  # amounts are summed as exact int64 micro-units

FEATURE_COLUMNS = [
    "event_id", "event_ts", "user_id", "merchant_id", "amount", "category", "country", "channel",
    "hour_of_day", "day_of_week",
    "user_txn_count_1h", "user_txn_count_24h", "user_txn_count_7d",
    "user_amount_sum_1h", "user_amount_sum_24h", "user_amount_sum_7d",
    "seconds_since_prev_txn", "amount_to_user_mean_30d", "user_distinct_merchants_24h",
    "is_new_merchant", "country_changed",
    "merchant_txn_count_30d", "merchant_cb_count_30d", "merchant_cb_rate_30d",
]


def _files_sql(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def _epoch_us(t: dt.datetime) -> int:
    return int((t - dt.datetime(1970, 1, 1)) / dt.timedelta(microseconds=1))


def _load_events(con, files: list[str], lo_us: int, hi_us: int) -> pa.Table:
    return con.sql(f"""
        select event_id, event_ts, user_id, merchant_id, amount, category, country, channel,
               epoch_us(event_ts) as ts
        from read_parquet({_files_sql(files)}, union_by_name = true)
        where event_ts >= make_timestamp({lo_us}) and event_ts < make_timestamp({hi_us})
    """).to_arrow_table()


def _load_label_deltas(con, files: list[str], lo_us: int, hi_us: int) -> pa.Table:
    """Chargebacks that can be known inside [lo, hi) while their transaction is < 30 d old."""
    if not files:
        return pa.table({"merchant_id": pa.array([], pa.int64()), "plus_us": pa.array([], pa.int64()),
                         "minus_us": pa.array([], pa.int64())})
    return con.sql(f"""
        select merchant_id, epoch_us(label_ts) as plus_us, epoch_us(event_ts) + {LOOKBACK} as minus_us
        from read_parquet({_files_sql(files)}, union_by_name = true)
        where is_fraud and label_ts < make_timestamp({hi_us})
          and epoch_us(label_ts) < epoch_us(event_ts) + {LOOKBACK}
          and epoch_us(event_ts) + {LOOKBACK} >= {lo_us}
    """).to_arrow_table()


def _np(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).to_numpy()


def compute_transaction_features(
    con: duckdb.DuckDBPyConnection,
    transaction_files: list[str],
    label_files: list[str],
    start: dt.datetime,
    end: dt.datetime,
) -> pa.Table:
    """Features for transactions with start <= event_ts < end, from the files given (which
    must cover [start - 30 d, end) for exact history)."""
    lo_us, start_us, end_us = _epoch_us(start) - LOOKBACK, _epoch_us(start), _epoch_us(end)
    if not transaction_files:
        return pa.table({c: [] for c in FEATURE_COLUMNS})
    ev = _load_events(con, transaction_files, lo_us, end_us)

    ts_file = _np(ev, "ts").astype(np.int64)
    base = lo_us - 1
    span = (end_us + LOOKBACK) - base + 1

    # One stable sort of a packed (user, time) int64 key orders everything; the string columns
    # never move (features are scattered back to the scan's row order at the end).
    user_small, _ = _small_ids(_np(ev, "user_id"), span)
    order = np.argsort(sw.pack_keys(user_small, ts_file - base, span), kind="stable")
    order = _ties_by_event_id(order, sw.pack_keys(user_small, ts_file - base, span), ev)
    ts = ts_file[order]
    rel = ts - base

    # User windows: one sorted key array, a binary search per window edge.
    user_ids = user_small[order]
    ukeys = sw.pack_keys(user_ids, rel, span)
    hi = np.searchsorted(ukeys, ukeys, side="left")  # first row at the same instant: excludes ties
    amount = _np(ev, "amount")[order]
    micro = np.rint(amount * MICRO_UNITS).astype(np.int64)
    csum = sw.prefix(micro)
    out: dict[str, np.ndarray] = {}
    for name, width in USER_WINDOWS.items():
        lo = sw.window_bounds(ukeys, width)
        out[f"user_txn_count_{name}"] = hi - lo
        out[f"user_amount_sum_{name}"] = (csum[hi] - csum[lo]) / MICRO_UNITS
    lo24 = sw.window_bounds(ukeys, DAY)
    lo30 = sw.window_bounds(ukeys, LOOKBACK)

    count30 = hi - lo30
    sum30 = (csum[hi] - csum[lo30]) / MICRO_UNITS
    with np.errstate(divide="ignore", invalid="ignore"):
        out["amount_to_user_mean_30d"] = np.where(count30 > 0, amount * count30 / sum30, np.nan)
    prev = hi - 1
    has_prev = prev >= lo30
    prev_safe = np.where(has_prev, prev, 0)
    out["seconds_since_prev_txn"] = np.where(has_prev, (ts - ts[prev_safe]) / US, np.nan)
    country = pc.dictionary_encode(ev.column("country")).combine_chunks().indices.to_numpy(zero_copy_only=False)[order]
    out["country_changed"] = (has_prev & (country[prev_safe] != country)).astype(np.int32)

    # Merchant recency per user: previous visit of the same (user, merchant).
    merchant_ids, merchant_uniq = _small_ids(_np(ev, "merchant_id")[order], span)
    n_merchants = int(merchant_ids.max()) + 1 if len(merchant_ids) else 1
    same_pair = user_ids.astype(np.int64) * np.int64(n_merchants) + merchant_ids
    prev_same = sw.previous_same(same_pair)
    out["user_distinct_merchants_24h"] = sw.distinct_in_window(lo24, hi, prev_same)
    last_visit = sw.last_strictly_before(prev_same, hi)
    out["is_new_merchant"] = (last_visit < lo30).astype(np.int32)

    # Merchant windows and known chargebacks.
    # Queries are issued in key order too: sorted binary searches stay in cache.
    mkeys = sw.pack_keys(merchant_ids, rel, span)
    morder = np.argsort(mkeys)
    msorted = mkeys[morder]
    mcount = np.empty(len(mkeys), dtype=np.int64)
    mcount[morder] = np.searchsorted(msorted, msorted, "left") - sw.window_bounds(msorted, LOOKBACK)
    out["merchant_txn_count_30d"] = mcount
    deltas = _load_label_deltas(con, label_files, lo_us, end_us)
    cb = np.empty(len(mkeys), dtype=np.int64)
    cb[morder] = _known_chargebacks(deltas, merchant_uniq, msorted, base, span)
    out["merchant_cb_count_30d"] = cb
    out["merchant_cb_rate_30d"] = out["merchant_cb_count_30d"] / np.maximum(mcount, 1)

    day_no = ts // DAY
    out["hour_of_day"] = ((ts - day_no * DAY) // HOUR).astype(np.int32)
    out["day_of_week"] = ((day_no + 3) % 7 + 1).astype(np.int32)

    keep = ts_file >= start_us
    table = ev.drop_columns(["ts"])
    for name in FEATURE_COLUMNS[8:]:
        in_scan_order = np.empty_like(out[name])
        in_scan_order[order] = out[name]
        table = table.append_column(name, pa.array(in_scan_order, from_pandas=True))  # NaN -> null
    if not keep.all():
        table = table.filter(pa.array(keep))
    return table.select(FEATURE_COLUMNS)


def _small_ids(values: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Ids usable in packed keys: the ids themselves when small enough (the common case, no
    extra sort), else dense 0..k-1 ids with the sorted distinct values."""
    values = values.astype(np.int64)
    if len(values) == 0 or (values.min() >= 0 and values.max() < (2**62) // span and values.max() < 2**31):
        return values, None
    ids, uniq = sw.dense_ids(values, sorted_input=False)
    return ids.astype(np.int64), uniq


def _ties_by_event_id(order: np.ndarray, keys: np.ndarray, ev: pa.Table) -> np.ndarray:
    """Rows of one user at the same instant are ordered by event_id, so results never depend
    on the order the files were scanned in (such ties are rare: fix them up locally)."""
    sorted_keys = keys[order]
    tied = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if not tied.size:
        return order
    order = order.copy()
    ids = ev.column("event_id")
    starts = tied[np.r_[True, np.diff(tied) > 1]]
    for s0 in starts:
        e0 = s0 + 1
        while e0 < len(sorted_keys) and sorted_keys[e0] == sorted_keys[s0]:
            e0 += 1
        block = order[s0:e0]
        names = ids.take(pa.array(block)).to_pylist()
        order[s0:e0] = block[np.argsort(np.array(names, dtype=object), kind="stable")]
    return order


def _known_chargebacks(deltas, merchant_uniq, mkeys, base, span) -> np.ndarray:
    """Chargebacks counted at t: +1 once label_ts < t, -1 once event_ts + 30 d < t.
    `mkeys` are the transactions' packed (merchant, time) keys, sorted."""
    lm = _np(deltas, "merchant_id").astype(np.int64)
    if merchant_uniq is None:  # merchant ids are used as they are
        limit = int(mkeys[-1] // span) + 1 if len(mkeys) else 0
        known = (lm >= 0) & (lm < limit)
        pos = lm[known]
    else:
        pos = np.searchsorted(merchant_uniq, lm)
        known = (pos < len(merchant_uniq)) & (merchant_uniq[np.minimum(pos, len(merchant_uniq) - 1)] == lm)
        pos = pos[known]
    plus = np.maximum(_np(deltas, "plus_us")[known] - base, 0)
    minus = _np(deltas, "minus_us")[known] - base
    plus_keys = np.sort(sw.pack_keys(pos, plus, span))
    minus_keys = np.sort(sw.pack_keys(pos, minus, span))
    block = (mkeys // span) * span
    return ((np.searchsorted(plus_keys, mkeys, "left") - np.searchsorted(plus_keys, block, "left"))
            - (np.searchsorted(minus_keys, mkeys, "left") - np.searchsorted(minus_keys, block, "left")))
