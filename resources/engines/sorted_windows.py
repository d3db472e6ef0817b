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


def window_bounds(keys: np.ndarray, width_us: int) -> np.ndarray:
    """Index of the first row of the same entity with time >= t - width (sorted `keys`)."""
    return np.searchsorted(keys, keys - width_us, side="left")


def prefix(values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values) + 1, dtype=values.dtype)
    np.cumsum(values, out=out[1:])
    return out


def previous_same(group_key: np.ndarray) -> np.ndarray:
    """For rows sorted by (entity, time): index of the previous row with the same `group_key`
    (e.g. the same user and merchant), or -1."""
    order = np.argsort(group_key, kind="stable")
    prev = np.full(len(group_key), -1, dtype=np.int64)
    same = group_key[order[1:]] == group_key[order[:-1]]
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


def last_strictly_before(prev_same: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Previous occurrence that is strictly earlier in time: skips occurrences at the same
    instant (rows between hi and the row itself)."""
    q = prev_same.copy()
    tied = np.flatnonzero(q >= hi)
    while tied.size:
        q[tied] = prev_same[q[tied]]
        tied = tied[q[tied] >= hi[tied]]
    return q
