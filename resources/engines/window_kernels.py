"""Compiled (numba) passes behind `duckdb_features`: one stable bucket sort per entity, then
one walk per entity block with a pointer per window edge, so every window costs O(n) in all.

Window semantics (the reference in tests/test_feature_reference.py): a row at time t sees the
same entity's rows with t - width <= time < t. Rows at the same instant do not see each other.

The kernels release the GIL (`nogil`), so the user and merchant walks run on two threads, and
are cached on disk (`cache`), so only the first process on a machine pays for compiling them.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def _kernel(fn):
    """Compiled with an on-disk cache; where no cache folder is writable (read-only code, no
    NUMBA_CACHE_DIR), compiled per process instead of failing."""
    try:
        return njit(cache=True, nogil=True, boundscheck=False)(fn)
    except RuntimeError:
        return njit(nogil=True, boundscheck=False)(fn)


@_kernel
def bucket_order(keys, n_keys, base):
    """Row indices grouped by `keys` (ids 0..n_keys-1), in `base`'s order within a key (rows'
    own order when `base` is empty); plus each key's first position (CSR offsets)."""
    n = len(keys)
    starts = np.zeros(n_keys + 1, np.int64)
    for r in range(n):
        starts[keys[r] + 1] += 1
    for k in range(n_keys):
        starts[k + 1] += starts[k]
    fill = starts[:-1].copy()
    order = np.empty(n, np.int64)
    if len(base) == 0:
        for r in range(n):
            k = keys[r]
            order[fill[k]] = r
            fill[k] += 1
    else:
        for i in range(n):
            r = base[i]
            k = keys[r]
            order[fill[k]] = r
            fill[k] += 1
    return order, starts


@_kernel
def gather_by_order(order, ts, amount, merchant, country, micro):
    """The walk's inputs in walk order: independent random reads in a tight loop overlap well,
    where the same reads inside the walk would wait one after another. Amounts also come as
    exact integer micro-units (`cents`), so window sums are exact."""
    n = len(order)
    ts_s = np.empty(n, np.int64)
    amount_s = np.empty(n, np.float64)
    cents_s = np.empty(n, np.int64)
    merchant_s = np.empty(n, np.int64)
    country_s = np.empty(n, np.int32)
    for i in range(n):
        r = order[i]
        ts_s[i] = ts[r]
        amount_s[i] = amount[r]
        cents_s[i] = np.int64(np.rint(amount[r] * micro))
        merchant_s[i] = merchant[r]
        country_s[i] = country[r]
    return ts_s, amount_s, cents_s, merchant_s, country_s


@_kernel
def user_windows(
    order,
    starts,
    ts,
    amount,
    cents,
    merchant,
    n_merchants,
    country,
    out_pos,
    first_out_ts,
    widths,
    history,
    distinct_width,
    new_width,
    mean_width,
    micro,
    floats,
    ints,
):
    """Every per-user feature, walking each user's rows in time order. The inputs are in walk
    order (`gather_by_order`); `order[i]` is walk row i's scan row and `out_pos[scan row]` its
    output row (an empty `out_pos` means the identity); rows before `first_out_ts` are history.
    Window lengths come from driftline.spec: `widths` of the counts and sums, `history` (how
    far back "previous transaction" looks), and the distinct-merchant, new-merchant and mean
    windows.

    A row's results go to one record, `floats[o]` = (sum per width..., seconds since previous,
    amount to mean) and `ints[o]` = (count per width..., distinct merchants, new merchant,
    country changed): two cache lines per row rather than one per feature column."""
    n_w = len(widths)
    in_distinct = np.zeros(n_merchants, np.int32)  # visits per merchant in the open distinct window
    in_new = np.zeros(n_merchants, np.int32)  # ... and in the new-merchant window
    # The new-merchant and mean windows are usually one length: then one pointer serves both.
    shared = new_width == mean_width
    # "A previous row within `history`": the mean's pointer answers that when the lengths agree.
    history_is_mean = history == mean_width
    lo = np.empty(n_w, np.int64)
    run_sum = np.empty(n_w, np.int64)
    identity = len(out_pos) == 0
    for u in range(len(starts) - 1):
        b, e = starts[u], starts[u + 1]
        if b == e:
            continue
        for k in range(n_w):
            lo[k] = b
            run_sum[k] = 0
        lo_d = lo_n = lo_m = hi = b
        sum_m = np.int64(0)
        distinct = 0
        i = b
        while i < e:
            t = ts[i]
            # Admit the rows before this instant into every window.
            while hi < i:
                c = cents[hi]
                for k in range(n_w):
                    run_sum[k] += c
                sum_m += c
                m = merchant[hi]
                if in_distinct[m] == 0:
                    distinct += 1
                in_distinct[m] += 1
                in_new[m] += 1
                hi += 1
            # Drop the rows that fell out of each window.
            for k in range(n_w):
                while lo[k] < hi and ts[lo[k]] < t - widths[k]:
                    run_sum[k] -= cents[lo[k]]
                    lo[k] += 1
            while lo_d < hi and ts[lo_d] < t - distinct_width:
                m = merchant[lo_d]
                in_distinct[m] -= 1
                if in_distinct[m] == 0:
                    distinct -= 1
                lo_d += 1
            if shared:
                while lo_m < hi and ts[lo_m] < t - mean_width:
                    sum_m -= cents[lo_m]
                    in_new[merchant[lo_m]] -= 1
                    lo_m += 1
                lo_n = lo_m
            else:
                while lo_m < hi and ts[lo_m] < t - mean_width:
                    sum_m -= cents[lo_m]
                    lo_m += 1
                while lo_n < hi and ts[lo_n] < t - new_width:
                    in_new[merchant[lo_n]] -= 1
                    lo_n += 1
            # Every row at this instant gets the same windows.
            j = i
            while j < e and ts[j] == t:
                if t >= first_out_ts:
                    o = order[j] if identity else out_pos[order[j]]
                    for k in range(n_w):
                        ints[o, k] = hi - lo[k]
                        floats[o, k] = run_sum[k] / micro
                    count_m = hi - lo_m
                    floats[o, n_w + 1] = amount[j] * count_m / (sum_m / micro) if count_m > 0 else np.nan
                    if (hi > lo_m) if history_is_mean else (hi > b and ts[hi - 1] >= t - history):
                        floats[o, n_w] = (t - ts[hi - 1]) / 1_000_000
                        ints[o, n_w + 2] = 1 if country[hi - 1] != country[j] else 0
                    else:
                        floats[o, n_w] = np.nan
                        ints[o, n_w + 2] = 0
                    ints[o, n_w] = distinct
                    ints[o, n_w + 1] = 1 if in_new[merchant[j]] == 0 else 0
                j += 1
            i = j
        # Leave the merchant tallies empty for the next user.
        for q in range(lo_d, hi):
            in_distinct[merchant[q]] -= 1
        for q in range(lo_n, hi):
            in_new[merchant[q]] -= 1
    return 0


@_kernel
def merchant_windows(order, starts, ts, out_pos, first_out_ts, width, cb_starts, cb_plus, cb_minus, out):
    """Per merchant: transactions in the last `width` and chargebacks known at each row's time
    (+1 once label_ts < t, -1 once the charged-back transaction is `width` old). `ts` is in walk
    order; `cb_plus` and `cb_minus` hold each merchant's sorted times, laid out by `cb_starts`
    (CSR). Results go to one record per row: `out[o]` = (count, chargebacks, rate)."""
    identity = len(out_pos) == 0
    for mch in range(len(starts) - 1):
        b, e = starts[mch], starts[mch + 1]
        lo = b
        p, p_end = cb_starts[mch], cb_starts[mch + 1]
        q = p
        i = b
        while i < e:
            t = ts[i]
            while lo < i and ts[lo] < t - width:
                lo += 1
            while p < p_end and cb_plus[p] < t:
                p += 1
            while q < p_end and cb_minus[q] < t:
                q += 1
            count, known = i - lo, p - q
            j = i
            while j < e and ts[j] == t:
                if t >= first_out_ts:
                    o = order[j] if identity else out_pos[order[j]]
                    out[o, 0] = count
                    out[o, 1] = known
                    out[o, 2] = known / max(count, 1)
                j += 1
            i = j
    return 0


@_kernel
def gather(values, order):
    out = np.empty(len(order), values.dtype)
    for i in range(len(order)):
        out[i] = values[order[i]]
    return out


@_kernel
def columns_of(records):
    """Records (rows x k) to k contiguous columns, in one pass."""
    n, k = records.shape
    out = np.empty((k, n), records.dtype)
    for i in range(n):
        for c in range(k):
            out[c, i] = records[i, c]
    return out


def _load_compiled() -> None:
    """Run each kernel once on tiny inputs of the real dtypes, so importing this module loads
    (or, on a new machine, compiles) them rather than the first feature run doing it."""
    i64, f64, i32 = np.zeros(2, np.int64), np.zeros(2, np.float64), np.zeros(2, np.int32)
    empty = np.zeros(0, np.int64)
    order, starts = bucket_order(i64, 1, empty)
    bucket_order(i64, 1, order)
    walk = gather_by_order(order, i64, f64, i64, i32, 1_000_000)
    user_windows(
        order,
        starts,
        *walk[:4],
        1,
        walk[4],
        empty,
        0,
        np.ones(3, np.int64),
        1,
        1,
        1,
        1,
        1_000_000,
        np.zeros((2, 5)),
        np.zeros((2, 6), np.int32),
    )
    merchant_windows(
        order, starts, gather(i64, order), empty, 0, 1, np.zeros(2, np.int64), empty, empty, np.zeros((2, 3))
    )
    columns_of(np.zeros((2, 5)))
    columns_of(np.zeros((2, 6), np.int32))


_load_compiled()
