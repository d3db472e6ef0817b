"""A user's recent transactions, and the velocity features finished from them at read time.

The stream worker keeps one `RecentEvents` per user (`apply`) and pushes it to the online
store; the online path computes `features_at(state, t)` for the request's own time t. So a
window `[t - w, t)` is exact at whatever moment it is read, not as of the last event, with
exactly `transaction_features`' semantics (resources/engines/window_kernels.py):

- a window at t holds the user's events with `t - w <= ts < t`: events at the same instant as
  the request (the event itself included) are not in it;
- sums are exact: amounts are added as integer micro-units, then divided once (0.0 when none);
- the previous transaction is the latest one with `ts < t` within `spec.LOOKBACK`; none gives
  a null `seconds_since_prev_txn` and `country_changed` 0.

Retention (driftline.spec): every event with `event_us >= newest - RECENT_RETENTION_US` is
kept, plus the single latest evicted event (time, country) for "previous transaction". Reads
at `t >= newest - ALLOWED_LATENESS` are exact. An event later than the allowed lateness is
still applied when it arrives; reads made before it arrived missed it.

Standard library only: `seldon/` (serving) and `streaming/` both import it.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from driftline import spec

MICRO_UNITS = 1_000_000  # amounts are summed as exact integer micro-units, as the engines do
_EPOCH = dt.datetime(1970, 1, 1)
NO_COUNTRY = ""  # a null country in the store's string arrays (the wire never sends "")


@dataclass
class RecentEvents:
    """One user's retained events, sorted by event time (ties in arrival order)."""

    event_ids: list[str] = field(default_factory=list)
    event_us: list[int] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)
    merchants: list[int] = field(default_factory=list)
    countries: list[str | None] = field(default_factory=list)
    evicted_us: int | None = None
    evicted_country: str | None = None

    @property
    def newest_us(self) -> int | None:
        if self.event_us:
            return self.event_us[-1]
        return self.evicted_us


def epoch_us(value: dt.datetime) -> int:
    """Microseconds since the Unix epoch; a naive datetime is UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def _event_us(event: Mapping) -> int:
    if event.get("event_us") is not None:
        return int(event["event_us"])
    ts = event["event_ts"]
    if isinstance(ts, dt.datetime):
        return epoch_us(ts)
    if hasattr(ts, "to_pydatetime"):  # a pandas Timestamp
        return epoch_us(ts.to_pydatetime())
    raise TypeError(f"event_ts must be a datetime, got {type(ts).__name__}")


def apply(state: RecentEvents | None, events: Iterable[Mapping]) -> tuple[RecentEvents, int]:
    """`state` with one user's `events` added; also how many were new. Idempotent on event_id:
    an event already kept is skipped. An event older than the retention (a very late one, or a
    replay of an evicted one) only moves the evicted marker forward, and counts as new only
    when it does. The caller groups events by user; `state` is modified in place and returned."""
    state = state if state is not None else RecentEvents()
    seen = set(state.event_ids)
    rows: list[tuple[int, str, float, int, str | None]] = []
    for e in events:
        event_id = str(e["event_id"])
        if event_id in seen:
            continue
        seen.add(event_id)
        rows.append((_event_us(e), event_id, float(e["amount"]), int(e["merchant_id"]), e.get("country")))
    if not rows:
        return state, 0
    rows.sort(key=lambda r: r[0])  # stable: ties keep arrival order
    newest = max(rows[-1][0], state.event_us[-1]) if state.event_us else rows[-1][0]
    cutoff = newest - spec.RECENT_RETENTION_US
    _evict(state, cutoff)
    if rows[0][0] >= cutoff and (not state.event_us or rows[0][0] >= state.event_us[-1]):
        _append(state, rows)  # the common case: all in order after what is kept
        return state, len(rows)
    new = 0
    for us, event_id, amount, merchant, country in rows:
        if us < cutoff:  # beyond the retention: only "previous transaction" can still see it
            if state.evicted_us is None or us > state.evicted_us:
                state.evicted_us, state.evicted_country = us, country
                new += 1
            continue
        i = bisect_right(state.event_us, us) if state.event_us and us < state.event_us[-1] else len(state.event_us)
        state.event_ids.insert(i, event_id)
        state.event_us.insert(i, us)
        state.amounts.insert(i, amount)
        state.merchants.insert(i, merchant)
        state.countries.insert(i, country)
        new += 1
    return state, new


def _append(state: RecentEvents, rows: list[tuple[int, str, float, int, str | None]]) -> None:
    """Rows sorted by time, none older than the last kept event: appended as they are (what the
    insertion loop does for them, in one step per column)."""
    us, ids, amounts, merchants, countries = zip(*rows, strict=True)
    state.event_us.extend(us)
    state.event_ids.extend(ids)
    state.amounts.extend(amounts)
    state.merchants.extend(merchants)
    state.countries.extend(countries)


def _evict(state: RecentEvents, cutoff: int) -> None:
    """Drop the kept events older than `cutoff`; the latest dropped one becomes the marker
    (kept events are all newer than the marker)."""
    n = bisect_left(state.event_us, cutoff)
    if n == 0:
        return
    state.evicted_us, state.evicted_country = state.event_us[n - 1], state.countries[n - 1]
    del state.event_ids[:n], state.event_us[:n], state.amounts[:n], state.merchants[:n], state.countries[:n]


def features_at(state: RecentEvents | None, t_us: int, country: str | None = None) -> dict[str, int | float | None]:
    """spec.STREAM_FEATURES for a request at `t_us` (epoch microseconds) from the user's events
    with `ts < t_us`. `country` is the request's own country (for `country_changed`)."""
    out: dict[str, int | float | None] = {}
    us = state.event_us if state is not None else []
    hi = bisect_left(us, t_us)
    for w in spec.USER_WINDOWS:
        lo = bisect_left(us, t_us - w.micros, 0, hi)
        out[spec.user_txn_count(w)] = hi - lo
    for w in spec.USER_WINDOWS:
        lo = bisect_left(us, t_us - w.micros, 0, hi)
        amounts = state.amounts[lo:hi] if state is not None else []
        out[spec.user_amount_sum(w)] = sum(round(a * MICRO_UNITS) for a in amounts) / MICRO_UNITS
    lo = bisect_left(us, t_us - spec.DISTINCT_MERCHANTS.micros, 0, hi)
    out[spec.USER_DISTINCT_MERCHANTS] = len(set(state.merchants[lo:hi])) if state is not None else 0
    prev_us, prev_country = None, None
    if state is not None and hi > 0:
        prev_us, prev_country = us[hi - 1], state.countries[hi - 1]
    elif state is not None and state.evicted_us is not None and state.evicted_us < t_us:
        prev_us, prev_country = state.evicted_us, state.evicted_country
    if prev_us is not None and prev_us >= t_us - spec.LOOKBACK.micros:
        out[spec.SECONDS_SINCE_PREV_TXN] = (t_us - prev_us) / MICRO_UNITS
        out[spec.COUNTRY_CHANGED] = 1 if prev_country != country else 0
    else:
        out[spec.SECONDS_SINCE_PREV_TXN] = None
        out[spec.COUNTRY_CHANGED] = 0
    return out


# ------------------------------------------------------------------------------- the store's row
# RecentEvents <-> one row of the online store's `user_recent` view (spec.USER_RECENT_FIELDS).
_ARRAYS = ("event_ids", "event_us", "amounts", "merchants", "countries")


def to_row(state: RecentEvents) -> dict[str, object]:
    """The store's row of a state: one array per field (a null country as "")."""
    row: dict[str, object] = {
        "recent_event_ids": list(state.event_ids),
        "recent_event_us": list(state.event_us),
        "recent_amounts": list(state.amounts),
        "recent_merchants": list(state.merchants),
        "recent_countries": [NO_COUNTRY if c is None else c for c in state.countries],
        "evicted_us": state.evicted_us,
        "evicted_country": state.evicted_country,
    }
    return row


def from_row(row: Mapping[str, object]) -> RecentEvents | None:
    """The state of a store row (None when the user has none); arrays may be any sequences."""
    ids = row.get("recent_event_ids")
    evicted_us = row.get("evicted_us")
    if ids is None and evicted_us is None:
        return None

    def seq(name: str) -> list:
        value = row.get(name)
        return [] if value is None else list(value)  # pyright: ignore[reportArgumentType]

    evicted_country = row.get("evicted_country")
    return RecentEvents(
        event_ids=[str(x) for x in seq("recent_event_ids")],
        event_us=[int(x) for x in seq("recent_event_us")],
        amounts=[float(x) for x in seq("recent_amounts")],
        merchants=[int(x) for x in seq("recent_merchants")],
        countries=[None if c == NO_COUNTRY else str(c) for c in seq("recent_countries")],
        evicted_us=None if evicted_us is None else int(evicted_us),  # pyright: ignore[reportArgumentType]
        evicted_country=None if evicted_country in (None, NO_COUNTRY) else str(evicted_country),
    )
