"""Time-window aggregates over event arrays sorted by (entity, time).

Every window feature is a pair of binary searches over one sorted key array plus a
prefix sum: O(n log n) after a single sort, instead of one sort-and-scan per window.
Keys pack (entity, time) into one int64 so a single `searchsorted` stays inside the
entity's block.
"""

from __future__ import annotations

import numpy as np

_KEY_LIMIT = 2**62


def pack_keys(entity: np.ndarray, rel_us: np.ndarray, span_us: int) -> np.ndarray:
    """int64 key ordering rows by (entity, time); `entity` must be a small non-negative id."""
    if len(entity) and int(entity.max()) >= _KEY_LIMIT // span_us:
        raise OverflowError("entity ids too large to pack with this time span")
    return entity.astype(np.int64) * np.int64(span_us) + rel_us


def dense_ids(values: np.ndarray, sorted_input: bool) -> tuple[np.ndarray, np.ndarray]:
    """Small ids 0..k-1 for arbitrary int64 ids, plus the sorted distinct values."""
    if sorted_input:
        starts = np.ones(len(values), dtype=bool)
        starts[1:] = values[1:] != values[:-1]
        return np.cumsum(starts) - 1, values[starts]
    uniq, inverse = np.unique(values, return_inverse=True)
    return inverse, uniq


def stable_order_by(ids: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Row indices ordered by `ids` (small non-negative ints), keeping `base`'s order (or the
    rows' own order) within equal ids. LSD radix over 16-bit digits: numpy sorts uint16 stably
    by radix, O(n) per digit, about ten times faster than a stable sort of int64."""
    if len(ids) == 0:
        return np.arange(0) if base is None else base
    top, shift, order = int(ids.max()), 0, base
    while True:
        digit = ((ids if order is None else ids[order]) >> shift) & 0xFFFF
        step = np.argsort(digit.astype(np.uint16), kind="stable")
        order = step if order is None else order[step]
        shift += 16
        if top >> shift == 0:
            return order


def run_starts(keys: np.ndarray) -> np.ndarray:
    """For sorted `keys`: index of the first row with the same key (searchsorted-left on
    itself, in O(n))."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.empty(len(keys), dtype=bool)
    first[0] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    return np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))


def window_bounds(keys: np.ndarray, width_us: int, queries: np.ndarray | None = None) -> np.ndarray:
    """Index of the first row of the same entity with time >= t - width (sorted `keys`), for
    every row or for the sorted key subset `queries`."""
    return np.searchsorted(keys, (keys if queries is None else queries) - width_us, side="left")


def prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=values.dtype)
    np.cumsum(values, out=out[1:])
    return out


def previous_same(group_key: np.ndarray) -> np.ndarray:
    """For rows sorted by (entity, time): index of the previous row with the same `group_key`
    (e.g. the same user and merchant), or -1.

    When (key, row index) fits one int64, a plain sort of the packed values (SIMD, no
    argsort) gives the stable order; otherwise a stable argsort."""
    n = len(group_key)
    prev = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return prev
    index_bits = int(n).bit_length()
    if int(group_key.min()) >= 0 and int(group_key.max()).bit_length() + index_bits <= 62:
        packed = np.sort((group_key.astype(np.int64) << index_bits) | np.arange(n, dtype=np.int64))
        order = packed & ((1 << index_bits) - 1)
        sorted_key = packed >> index_bits
    else:
        order = np.argsort(group_key, kind="stable")
        sorted_key = group_key[order]
    same = sorted_key[1:] == sorted_key[:-1]
    prev[order[1:][same]] = order[:-1][same]
    return prev


def distinct_in_window(lo: np.ndarray, hi: np.ndarray, prev_same: np.ndarray) -> np.ndarray:
    """Distinct groups among rows [lo, hi): rows whose previous occurrence lies before lo.

    Walks the windows backwards one offset at a time over the rows still inside their window,
    so the cost is the total window size, not n times the longest window.
    """
    counts = np.zeros(len(lo), dtype=np.int64)
    rows = np.flatnonzero(hi > lo)
    j = hi[rows] - 1
    while rows.size:
        counts[rows] += prev_same[j] < lo[rows]
        j -= 1
        keep = j >= lo[rows]
        rows, j = rows[keep], j[keep]
    return counts


def last_strictly_before(prev_same: np.ndarray, hi: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Previous occurrence that is strictly earlier in time, for every row (or `rows`, with
    `hi` given for those rows): skips occurrences at the same instant (between hi and the row)."""
    q = prev_same.copy() if rows is None else prev_same[rows]
    tied = np.flatnonzero(q >= hi)
    while tied.size:
        q[tied] = prev_same[q[tied]]
        tied = tied[q[tied] >= hi[tied]]
    return q
