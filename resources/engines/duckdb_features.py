"""`transaction_features` on DuckDB: SQL scans and prunes the lake; compiled walks compute
the windows (see `window_kernels`).

Rows are bucketed once by user and once by merchant (stable, so time order holds inside a
bucket). Each bucket is then walked in time order with one pointer per window edge, so all
windows together cost O(n), not a search or a rescan per window. Chargebacks become a +1 at
`label_ts` and a -1 when their transaction leaves the merchant window, so "known chargebacks"
is two more pointers in the merchant walk. Windows, column names and types: driftline.spec.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftline import spec

from . import window_kernels as wk

US = spec.US_PER_SECOND
HOUR = 3600 * US  # calendar units of hour_of_day / day_of_week, not windows
DAY = 24 * HOUR
LOOKBACK = spec.LOOKBACK.micros
MICRO_UNITS = 1_000_000  # amounts are summed as exact int64 micro-units

FEATURE_COLUMNS = spec.COLUMNS


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
    """Chargebacks that can be known inside [lo, hi) while their transaction is inside the
    merchant window."""
    if not files:
        return pa.table(
            {
                "merchant_id": pa.array([], pa.int64()),
                "plus_us": pa.array([], pa.int64()),
                "minus_us": pa.array([], pa.int64()),
            }
        )
    width = spec.MERCHANT.micros
    return con.sql(f"""
        select merchant_id, epoch_us(label_ts) as plus_us, epoch_us(event_ts) + {width} as minus_us
        from read_parquet({_files_sql(files)}, union_by_name = true)
        where is_fraud and label_ts < make_timestamp({hi_us})
          and epoch_us(label_ts) < epoch_us(event_ts) + {width}
          and epoch_us(event_ts) + {width} >= {lo_us}
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
    the files given (which must cover [start - spec.LOOKBACK, end) for exact history). History rows
    only move the windows along, so one day with 30 days of history costs little more than one day."""
    lo_us, start_us, end_us = _epoch_us(start) - LOOKBACK, _epoch_us(start), _epoch_us(end)
    if not transaction_files:
        return pa.table({c: [] for c in FEATURE_COLUMNS})
    ev = _load_events(con, transaction_files, lo_us, end_us)
    deltas = _load_label_deltas(con, label_files, lo_us, end_us)
    ts = _np(ev, "ts").astype(np.int64)
    n = len(ts)
    # Partitions are written in time order, so the scan usually is; otherwise sort by time once.
    time_order = np.zeros(0, np.int64) if bool(np.all(ts[1:] >= ts[:-1])) else np.argsort(ts, kind="stable")
    keep = ts >= start_us
    n_out = int(keep.sum())
    out_pos = np.zeros(0, np.int64) if n_out == n else np.where(keep, np.cumsum(keep) - 1, -1)

    users, n_users, _ = _small_ids(_np(ev, "user_id"))
    merchants, n_merchants, merchant_uniq = _small_ids(_np(ev, "merchant_id"))
    amount = _np(ev, "amount").astype(np.float64)
    # Codes only compared for equality; a writable copy, as the kernels were compiled for.
    country = (
        pc.dictionary_encode(ev.column("country"))  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute defines its kernels at import time
        .combine_chunks()
        .indices.to_numpy(zero_copy_only=False)
        .astype(np.int32)
    )
    cb_starts, cb_plus, cb_minus = _chargebacks_by_merchant(deltas, merchant_uniq, n_merchants)

    walks = _WalkInputs(ts, time_order, out_pos, n_out, start_us)
    # The kernels release the GIL: the merchant walk runs beside the user walk.
    with ThreadPoolExecutor(1, thread_name_prefix="merchant-windows") as pool:
        merchant = pool.submit(_merchant_features, walks, merchants, n_merchants, cb_starts, cb_plus, cb_minus)
        f = _user_features(walks, users, n_users, amount, merchants, n_merchants, country)
        f |= merchant.result()
    ts_out = ts[keep] if n_out < n else ts
    day_no = ts_out // DAY
    f[spec.HOUR_OF_DAY] = ((ts_out - day_no * DAY) // HOUR).astype(np.int32)
    f[spec.DAY_OF_WEEK] = ((day_no + 3) % 7 + 1).astype(np.int32)

    table = ev.drop_columns(["ts"])
    if n_out < n:
        table = table.filter(pa.array(keep))
    for name in FEATURE_COLUMNS[len(spec.REQUEST_COLUMNS) :]:
        table = table.append_column(name, pa.array(f[name], from_pandas=True))  # NaN -> null
    return table.select(FEATURE_COLUMNS)


# The kernels' per-row records, slot by slot (see `window_kernels.user_windows`).
USER_FLOAT_SLOTS = [spec.user_amount_sum(w) for w in spec.USER_WINDOWS] + [
    spec.SECONDS_SINCE_PREV_TXN,
    spec.AMOUNT_TO_USER_MEAN,
]
USER_INT_SLOTS = [spec.user_txn_count(w) for w in spec.USER_WINDOWS] + [
    spec.USER_DISTINCT_MERCHANTS,
    spec.IS_NEW_MERCHANT,
    spec.COUNTRY_CHANGED,
]
MERCHANT_SLOTS = [spec.MERCHANT_TXN_COUNT, spec.MERCHANT_CB_COUNT, spec.MERCHANT_CB_RATE]
_NUMPY_TYPES = {"int64": np.int64, "int32": np.int32, "double": np.float64}
# The spec's types of the computed columns.
FEATURE_DTYPES = {
    name: _NUMPY_TYPES[spec.FEATURE_COLUMNS[name]] for name in USER_FLOAT_SLOTS + USER_INT_SLOTS + MERCHANT_SLOTS
}


@dataclass(frozen=True)
class _WalkInputs:
    """What both walks share: scan times, the time order (empty: the scan is in time order),
    scan row -> output row (empty: identity) and the first output instant."""

    ts: np.ndarray
    time_order: np.ndarray
    out_pos: np.ndarray
    n_out: int
    start_us: int


def _columns(records: np.ndarray, slots: list[str]) -> dict[str, np.ndarray]:
    """Per-row records to named feature columns of the spec's types."""
    columns = wk.columns_of(records)
    return {name: columns[k].astype(FEATURE_DTYPES[name], copy=False) for k, name in enumerate(slots)}


def _user_features(w: _WalkInputs, users, n_users, amount, merchants, n_merchants, country) -> dict:
    order, starts = wk.bucket_order(users, n_users, w.time_order)
    ts_w, amount_w, cents_w, merchant_w, country_w = wk.gather_by_order(
        order, w.ts, amount, merchants, country, MICRO_UNITS
    )
    floats = np.empty((w.n_out, len(USER_FLOAT_SLOTS)), np.float64)
    ints = np.empty((w.n_out, len(USER_INT_SLOTS)), np.int32)
    wk.user_windows(
        order,
        starts,
        ts_w,
        amount_w,
        cents_w,
        merchant_w,
        n_merchants,
        country_w,
        w.out_pos,
        w.start_us,
        np.array([w.micros for w in spec.USER_WINDOWS], np.int64),
        LOOKBACK,
        spec.DISTINCT_MERCHANTS.micros,
        spec.NEW_MERCHANT.micros,
        spec.USER_MEAN.micros,
        MICRO_UNITS,
        floats,
        ints,
    )
    return _columns(floats, USER_FLOAT_SLOTS) | _columns(ints, USER_INT_SLOTS)


def _merchant_features(w: _WalkInputs, merchants, n_merchants, cb_starts, cb_plus, cb_minus) -> dict:
    order, starts = wk.bucket_order(merchants, n_merchants, w.time_order)
    records = np.empty((w.n_out, len(MERCHANT_SLOTS)), np.float64)
    wk.merchant_windows(
        order,
        starts,
        wk.gather(w.ts, order),
        w.out_pos,
        w.start_us,
        spec.MERCHANT.micros,
        cb_starts,
        cb_plus,
        cb_minus,
        records,
    )
    return _columns(records, MERCHANT_SLOTS)


def _small_ids(values: np.ndarray) -> tuple[np.ndarray, int, np.ndarray | None]:
    """Ids 0..k-1 to bucket rows by: the ids themselves when small and non-negative (the common
    case, no extra sort), else dense ids with the sorted distinct values."""
    values = values.astype(np.int64)
    if len(values) == 0:
        return values, 0, None
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < max(4 * len(values), 1 << 20):
        return values, high + 1, None
    uniq, ids = np.unique(values, return_inverse=True)
    return ids.astype(np.int64), len(uniq), uniq


def _chargebacks_by_merchant(deltas: pa.Table, merchant_uniq, n_merchants: int):
    """Each merchant's chargeback +1 times (label_ts) and -1 times (event_ts + window), sorted,
    laid out by merchant (CSR offsets); merchants without events in the scan are dropped."""
    lm = _np(deltas, "merchant_id").astype(np.int64)
    if merchant_uniq is None:
        known = (lm >= 0) & (lm < n_merchants)
        ids = lm[known]
    else:
        pos = np.searchsorted(merchant_uniq, lm)
        known = (pos < len(merchant_uniq)) & (merchant_uniq[np.minimum(pos, len(merchant_uniq) - 1)] == lm)
        ids = pos[known]
    plus, minus = _np(deltas, "plus_us")[known].astype(np.int64), _np(deltas, "minus_us")[known].astype(np.int64)
    starts = np.zeros(n_merchants + 1, np.int64)
    np.cumsum(np.bincount(ids, minlength=n_merchants), out=starts[1:])
    return starts, plus[np.lexsort((plus, ids))], minus[np.lexsort((minus, ids))]
