"""`transaction_features` on DuckDB: SQL scans, prunes and sorts the lake; the windows are
binary searches over the sorted arrays (see `sorted_windows`).

One sort by (user, time) serves every user window; the merchant windows need only a sort of
one int64 key. Chargebacks become a +1 at `label_ts` and a -1 when their transaction leaves
the 30-day window, so "known chargebacks" is a prefix count too.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

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
    """Features for transactions with start <= event_ts < end, in the files' row order, from
    the files given (which must cover [start - 30 d, end) for exact history). History rows are
    sorted but never queried, so one day with 30 days of history costs ~one day of searches."""
    lo_us, start_us, end_us = _epoch_us(start) - LOOKBACK, _epoch_us(start), _epoch_us(end)
    if not transaction_files:
        return pa.table({c: [] for c in FEATURE_COLUMNS})
    ev = _load_events(con, transaction_files, lo_us, end_us)
    ts_scan = _np(ev, "ts").astype(np.int64)
    base = lo_us - 1
    span = (end_us + LOOKBACK) - base + 1

    # Partitions are written in time order, so the scan usually is; otherwise sort by time once.
    in_time_order = bool(np.all(ts_scan[1:] >= ts_scan[:-1]))
    time_order = None if in_time_order else np.argsort(ts_scan, kind="stable")
    keep = ts_scan >= start_us
    out_pos = _output_positions(keep)  # scan row -> output row (-1: history only)

    user_small, _ = _small_ids(_np(ev, "user_id"), span)
    merchant_small, merchant_uniq = _small_ids(_np(ev, "merchant_id"), span)
    deltas = _load_label_deltas(con, label_files, lo_us, end_us)
    # The merchant windows run beside the user windows: numpy's sorts and searches release the GIL.
    with ThreadPoolExecutor(1, thread_name_prefix="merchant-windows") as pool:
        merchant = pool.submit(_merchant_features, deltas, ts_scan, merchant_small, merchant_uniq, time_order,
                               start_us, base, span, out_pos)
        features = _user_features(ev, ts_scan, user_small, merchant_small, time_order, start_us, base, span, out_pos)
        features |= merchant.result()
    ts_out = ts_scan[keep]
    day_no = ts_out // DAY
    features["hour_of_day"] = ((ts_out - day_no * DAY) // HOUR).astype(np.int32)
    features["day_of_week"] = ((day_no + 3) % 7 + 1).astype(np.int32)

    table = ev.drop_columns(["ts"])
    if not keep.all():
        table = table.filter(pa.array(keep))
    for name in FEATURE_COLUMNS[8:]:
        table = table.append_column(name, pa.array(features[name], from_pandas=True))  # NaN -> null
    return table.select(FEATURE_COLUMNS)


def _output_positions(keep: np.ndarray) -> np.ndarray | None:
    """Scan row -> output row (-1: history only); None when every row is output (identity)."""
    if keep.all():
        return None
    return np.where(keep, np.cumsum(keep) - 1, -1)


def _destinations(out_pos: np.ndarray | None, order: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """Output rows of the queried rows of `order` (all of them when `rows` is None)."""
    picked = order if rows is None else order[rows]
    return picked if out_pos is None else out_pos[picked]


def _to_output(values: np.ndarray, dest: np.ndarray, n_out: int) -> np.ndarray:
    """Scatter per-query values into output (scan) row order."""
    out = np.empty(n_out, dtype=values.dtype)
    out[dest] = values
    return out


def _user_features(ev, ts_scan, user_small, merchant_small, time_order, start_us, base, span, out_pos) -> dict:
    """Every user window from one (user, time) order: binary searches over packed keys."""
    order = sw.stable_order_by(user_small, time_order)  # (user, time); ties keep scan order
    ts = ts_scan[order]
    user_ids = user_small[order]
    ukeys = sw.pack_keys(user_ids, ts - base, span)
    hi_all = sw.run_starts(ukeys)  # first row at the same instant: the window excludes ties
    amount_all = _np(ev, "amount")[order]
    csum = sw.prefix(np.rint(amount_all * MICRO_UNITS).astype(np.int64))

    rows = None if out_pos is None else np.flatnonzero(ts >= start_us)  # rows to answer for
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])
    qkeys, hi, amount, qts = pick(ukeys), pick(hi_all), pick(amount_all), pick(ts)
    dest = _destinations(out_pos, order, rows)
    n_out = len(dest)

    out: dict[str, np.ndarray] = {}
    for name, width in USER_WINDOWS.items():
        lo = sw.window_bounds(ukeys, width, qkeys)
        out[f"user_txn_count_{name}"] = hi - lo
        out[f"user_amount_sum_{name}"] = (csum[hi] - csum[lo]) / MICRO_UNITS
    lo24 = sw.window_bounds(ukeys, DAY, qkeys)
    lo30 = sw.window_bounds(ukeys, LOOKBACK, qkeys)
    count30 = hi - lo30
    sum30 = (csum[hi] - csum[lo30]) / MICRO_UNITS
    with np.errstate(divide="ignore", invalid="ignore"):
        out["amount_to_user_mean_30d"] = np.where(count30 > 0, amount * count30 / sum30, np.nan)
    prev = hi - 1
    has_prev = prev >= lo30
    prev_safe = np.where(has_prev, prev, 0)
    out["seconds_since_prev_txn"] = np.where(has_prev, (qts - ts[prev_safe]) / US, np.nan)
    country = pc.dictionary_encode(ev.column("country")).combine_chunks().indices.to_numpy(zero_copy_only=False)[order]
    out["country_changed"] = (has_prev & (country[prev_safe] != pick(country))).astype(np.int32)

    # Merchant recency per user: previous visit of the same (user, merchant).
    merchant_ids = merchant_small[order]
    n_merchants = int(merchant_ids.max()) + 1 if len(merchant_ids) else 1
    prev_same = sw.previous_same(user_ids * np.int64(n_merchants) + merchant_ids)
    out["user_distinct_merchants_24h"] = sw.distinct_in_window(lo24, hi, prev_same)
    last_visit = sw.last_strictly_before(prev_same, hi, rows)
    out["is_new_merchant"] = (last_visit < lo30).astype(np.int32)
    return {name: _to_output(values, dest, n_out) for name, values in out.items()}


def _merchant_features(deltas, ts_scan, merchant_small, merchant_uniq, time_order,
                       start_us, base, span, out_pos) -> dict:
    """Merchant 30-day counts and known chargebacks, from a (merchant, time) order."""
    morder = sw.stable_order_by(merchant_small, time_order)
    ts = ts_scan[morder]
    mkeys = sw.pack_keys(merchant_small[morder], ts - base, span)
    rows = None if out_pos is None else np.flatnonzero(ts >= start_us)
    qkeys = mkeys if rows is None else mkeys[rows]
    hi = sw.run_starts(mkeys) if rows is None else sw.run_starts(mkeys)[rows]
    count = hi - sw.window_bounds(mkeys, LOOKBACK, qkeys)
    chargebacks = _known_chargebacks(deltas, merchant_uniq, qkeys, base, span, int(mkeys[-1] // span) + 1 if len(mkeys) else 0)
    dest = _destinations(out_pos, morder, rows)
    n_out = len(dest)
    return {
        "merchant_txn_count_30d": _to_output(count, dest, n_out),
        "merchant_cb_count_30d": _to_output(chargebacks, dest, n_out),
        "merchant_cb_rate_30d": _to_output(chargebacks / np.maximum(count, 1), dest, n_out),
    }


def _small_ids(values: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Ids usable in packed keys: the ids themselves when small enough (the common case, no
    extra sort), else dense 0..k-1 ids with the sorted distinct values."""
    values = values.astype(np.int64)
    if len(values) == 0 or (values.min() >= 0 and values.max() < (2**62) // span and values.max() < 2**31):
        return values, None
    ids, uniq = sw.dense_ids(values, sorted_input=False)
    return ids.astype(np.int64), uniq


def _known_chargebacks(deltas, merchant_uniq, mkeys, base, span, limit) -> np.ndarray:
    """Chargebacks counted at t: +1 once label_ts < t, -1 once event_ts + 30 d < t.
    `mkeys` are the transactions' packed (merchant, time) keys, sorted; `limit` bounds the
    merchant ids when they are used as they are."""
    lm = _np(deltas, "merchant_id").astype(np.int64)
    if merchant_uniq is None:  # merchant ids are used as they are
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
    # Keys of earlier merchants come first in the packed order: subtract, per merchant, the
    # count of events of all merchants before it (one search per merchant, not per row).
    run, merchants = sw.dense_ids(mkeys // span, sorted_input=True)
    starts = merchants * span
    before = np.searchsorted(plus_keys, starts, "left") - np.searchsorted(minus_keys, starts, "left")
    return (np.searchsorted(plus_keys, mkeys, "left") - np.searchsorted(minus_keys, mkeys, "left")) - before[run]
