"""The feature spec: windows, the feature table's columns and types, and the Feast names.

Everything that computes, stores, serves or documents a feature reads its windows and names
from here: the DuckDB and Spark engines, the snapshot SQL, the Feast repo, `ml/`, the online
path in `seldon/`, the benchmark baselines, the reference test and docs/features.md (checked
by tests/test_feature_spec.py). Column names are derived from the windows, so changing a
window's length here renames its columns everywhere.

Standard library only: `seldon/` imports this module in the serving environment.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

US_PER_SECOND = 1_000_000
_UNITS = {"h": (3600, "HOUR"), "d": (86_400, "DAY")}


@dataclass(frozen=True)
class Window:
    """A half-open look-back `[t - length, t)`; its `suffix` ("7d") ends the names of the
    columns computed over it, so names and lengths cannot disagree."""

    count: int
    unit: str  # "h" or "d"

    def __post_init__(self) -> None:
        if self.unit not in _UNITS or self.count <= 0:
            raise ValueError(f"a window is a positive count of 'h' or 'd', got {self.count}{self.unit}")

    @property
    def suffix(self) -> str:
        return f"{self.count}{self.unit}"

    @property
    def seconds(self) -> int:
        return self.count * _UNITS[self.unit][0]

    @property
    def micros(self) -> int:
        return self.seconds * US_PER_SECOND

    @property
    def timedelta(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.seconds)

    @property
    def sql(self) -> str:
        """The length as a SQL interval literal (DuckDB, Spark SQL)."""
        return f"INTERVAL {self.count} {_UNITS[self.unit][1]}"


def hours(n: int) -> Window:
    return Window(n, "h")


def days(n: int) -> Window:
    return Window(n, "d")


# ------------------------------------------------------------------------------- windows
# The user's transaction count and amount sum are computed over each of these.
USER_SHORT = hours(1)
USER_MEDIUM = hours(24)
USER_LONG = days(7)
USER_WINDOWS = (USER_SHORT, USER_MEDIUM, USER_LONG)
DISTINCT_MERCHANTS = hours(24)  # distinct merchants the user paid
NEW_MERCHANT = days(30)  # "new" = no payment to this merchant within it
USER_MEAN = days(30)  # the user's mean amount
MERCHANT = days(30)  # the merchant's transactions and known chargebacks
# History the engines read before the first row; "previous transaction" looks this far back.
LOOKBACK = days(30)
LOOKBACK_DAYS = -(-LOOKBACK.seconds // 86_400)  # daily partitions of history


def user_txn_count(window: Window) -> str:
    return f"user_txn_count_{window.suffix}"


def user_amount_sum(window: Window) -> str:
    return f"user_amount_sum_{window.suffix}"


# ------------------------------------------------------------------------------- the feature table
ENTITY_KEYS = ("user_id", "merchant_id")
HOUR_OF_DAY, DAY_OF_WEEK = "hour_of_day", "day_of_week"
SECONDS_SINCE_PREV_TXN = "seconds_since_prev_txn"
AMOUNT_TO_USER_MEAN = f"amount_to_user_mean_{USER_MEAN.suffix}"
USER_DISTINCT_MERCHANTS = f"user_distinct_merchants_{DISTINCT_MERCHANTS.suffix}"
IS_NEW_MERCHANT, COUNTRY_CHANGED = "is_new_merchant", "country_changed"
MERCHANT_TXN_COUNT = f"merchant_txn_count_{MERCHANT.suffix}"
MERCHANT_CB_COUNT = f"merchant_cb_count_{MERCHANT.suffix}"
MERCHANT_CB_RATE = f"merchant_cb_rate_{MERCHANT.suffix}"


@dataclass(frozen=True)
class Column:
    """A column of `transaction_features`: name, type (string, timestamp, int64, int32,
    double) and meaning, as docs/features.md shows them."""

    name: str
    type: str
    meaning: str


def _in(window: Window) -> str:
    return f"`[t-{window.suffix}, t)`"


def _feature_table() -> tuple[Column, ...]:
    request = [
        Column("event_id", "string", "the transaction"),
        Column("event_ts", "timestamp", "when it happened (UTC)"),
        Column("user_id", "int64", "who paid whom"),
        Column("merchant_id", "int64", "who paid whom"),
        Column("amount", "double", "request-time: settlement amount in EUR"),
        *(Column(n, "string", "request-time fields") for n in ("category", "country", "channel")),
    ]
    calendar = [
        Column(HOUR_OF_DAY, "int32", "0..23 of `event_ts`"),
        Column(DAY_OF_WEEK, "int32", "ISO 1 (Mon) .. 7 (Sun)"),
    ]
    counts = [Column(user_txn_count(w), "int64", f"user's transactions in {_in(w)}") for w in USER_WINDOWS]
    sums = [
        Column(user_amount_sum(w), "double", f"their amounts in {_in(w)} summed (0 when none)") for w in USER_WINDOWS
    ]
    previous = f"the user's latest earlier transaction within {LOOKBACK.suffix}"
    user = [
        Column(SECONDS_SINCE_PREV_TXN, "double", f"`t` minus {previous}; null when none"),
        Column(
            AMOUNT_TO_USER_MEAN,
            "double",
            f"`amount` / mean amount of the user's transactions in {_in(USER_MEAN)}; null when none",
        ),
        Column(
            USER_DISTINCT_MERCHANTS,
            "int64",
            f"distinct merchants among the user's transactions in {_in(DISTINCT_MERCHANTS)}",
        ),
        Column(IS_NEW_MERCHANT, "int32", f"1 when the user has no transaction at this merchant in {_in(NEW_MERCHANT)}"),
        Column(COUNTRY_CHANGED, "int32", f"1 when {previous} was in another country; 0 otherwise or when none"),
    ]
    merchant = [
        Column(MERCHANT_TXN_COUNT, "int64", f"the merchant's transactions in {_in(MERCHANT)}"),
        Column(
            MERCHANT_CB_COUNT,
            "int64",
            f"chargebacks of this merchant with `label_ts < t` for transactions with `event_ts >= t-{MERCHANT.suffix}`",
        ),
        Column(MERCHANT_CB_RATE, "double", f"`{MERCHANT_CB_COUNT} / max({MERCHANT_TXN_COUNT}, 1)`"),
    ]
    return (*request, *calendar, *counts, *sums, *user, *merchant)


FEATURE_TABLE = _feature_table()
# name -> type, in the table's column order.
FEATURE_COLUMNS: dict[str, str] = {c.name: c.type for c in FEATURE_TABLE}
COLUMNS = list(FEATURE_COLUMNS)
# Fields of the raw transaction that every row carries as they came.
REQUEST_COLUMNS = COLUMNS[:8]

# ------------------------------------------------------------------------------- Feast
PROJECT = "driftline"
FEATURE_SERVICE = "fraud_model_v1"
# Lake tables that hold the daily snapshots (Feast offline sources).
USER_STATE_TABLE = "user_state"
MERCHANT_STATE_TABLE = "merchant_state"
# Feature views over them (the online store's tables are "<project>_<view>"), and the
# on-demand view computed per request.
USER_STATE_VIEW = "user_state"
MERCHANT_STATE_VIEW = "merchant_state"
ON_DEMAND_VIEW = "fraud_request_features"
# Timestamp column of the snapshot tables: the materialization instant T (end of day D).
SNAPSHOT_TS = "event_timestamp"
# How old a snapshot may be and still be served / joined. One daily snapshot is the norm;
# the slack covers a missed day. Online and offline both see the latest snapshot <= t.
SNAPSHOT_TTL = dt.timedelta(days=3)

# The user windows a snapshot keeps, and the window of its distinct-merchant count.
STATE_USER_WINDOWS = (USER_MEDIUM, USER_LONG)
STATE_DISTINCT_MERCHANTS = USER_LONG
USER_MEAN_AMOUNT = f"user_mean_amount_{USER_MEAN.suffix}"
USER_STATE_DISTINCT_MERCHANTS = f"user_distinct_merchants_{STATE_DISTINCT_MERCHANTS.suffix}"
USER_LAST_TXN_EPOCH_S, USER_LAST_COUNTRY = "user_last_txn_epoch_s", "user_last_country"
SECONDS_SINCE_LAST_TXN = "seconds_since_last_txn"

USER_STATE_FEATURES: dict[str, str] = {  # name -> Feast type name
    **{
        name: t
        for w in STATE_USER_WINDOWS
        for name, t in ((user_txn_count(w), "Int64"), (user_amount_sum(w), "Float64"))
    },
    USER_MEAN_AMOUNT: "Float64",
    USER_STATE_DISTINCT_MERCHANTS: "Int64",
    USER_LAST_TXN_EPOCH_S: "Float64",
    USER_LAST_COUNTRY: "String",
}
MERCHANT_STATE_FEATURES: dict[str, str] = {
    MERCHANT_TXN_COUNT: "Int64",
    MERCHANT_CB_COUNT: "Int64",
    MERCHANT_CB_RATE: "Float64",
}
# Fields the caller sends with every request (online) / that the entity frame carries
# (offline). event_epoch_s is the transaction's event_ts in seconds since the Unix epoch (UTC).
REQUEST_FIELDS: dict[str, str] = {
    "amount": "Float64",
    "event_epoch_s": "Float64",
    "country": "String",
}
# Computed per request by the on-demand feature view from the request and user_state.
ON_DEMAND_FEATURES: dict[str, str] = {
    AMOUNT_TO_USER_MEAN: "Float64",
    SECONDS_SINCE_LAST_TXN: "Float64",
    COUNTRY_CHANGED: "Int64",
    HOUR_OF_DAY: "Int64",
    DAY_OF_WEEK: "Int64",
}
# Every feature of the fraud_model_v1 service, in service order (the model's column order).
SERVED_FEATURES: list[str] = [*USER_STATE_FEATURES, *MERCHANT_STATE_FEATURES, *ON_DEMAND_FEATURES]


# ------------------------------------------------------------------------------- fresh features (v2)
# The service of models trained on event-time velocity features kept fresh by the stream
# worker (docs/streaming.md): the window is finished at read time for the request's t.
FEATURE_SERVICE_V2 = "fraud_model_v2"
# transaction_features' columns served exactly over `[t - w, t)` at request time t.
STREAM_FEATURE_TYPES: dict[str, str] = {  # name -> Feast type name
    **{user_txn_count(w): "Int64" for w in USER_WINDOWS},
    **{user_amount_sum(w): "Float64" for w in USER_WINDOWS},
    USER_DISTINCT_MERCHANTS: "Int64",
    SECONDS_SINCE_PREV_TXN: "Float64",
    COUNTRY_CHANGED: "Int64",
}
STREAM_FEATURES: list[str] = list(STREAM_FEATURE_TYPES)
# Every feature of the fraud_model_v2 service, in service order (the v2 model's column order).
SERVED_FEATURES_V2: list[str] = [
    *STREAM_FEATURES,
    AMOUNT_TO_USER_MEAN,  # snapshot-based, as in v1
    *MERCHANT_STATE_FEATURES,  # daily snapshot, as in v1
    HOUR_OF_DAY,
    DAY_OF_WEEK,
]
# An event older than (the newest event seen for its user - ALLOWED_LATENESS) is late: it is
# still applied when it arrives, but reads made before its arrival missed it.
ALLOWED_LATENESS = dt.timedelta(minutes=10)
ALLOWED_LATENESS_US = int(ALLOWED_LATENESS.total_seconds()) * US_PER_SECOND
# A user's recent events are kept while `event_us >= newest - RECENT_RETENTION_US`, plus the
# single latest evicted one (its time and country: "previous transaction" within LOOKBACK).
RECENT_RETENTION = max((*USER_WINDOWS, DISTINCT_MERCHANTS), key=lambda w: w.seconds)
RECENT_RETENTION_US = RECENT_RETENTION.micros + ALLOWED_LATENESS_US
# The online store's per-user view of recent events, fed through a Feast PushSource whose
# batch source is the lake table USER_RECENT_TABLE (may be empty), and the on-demand view
# that finishes the windows for the request.
USER_RECENT_VIEW = "user_recent"
USER_RECENT_PUSH = "user_recent_push"
USER_RECENT_TABLE = "user_recent"
ON_DEMAND_VIEW_V2 = "fraud_stream_features"
RECENT_TS = "event_timestamp"  # the push row's timestamp: the user's newest event time
USER_RECENT_FIELDS: dict[str, str] = {  # name -> Feast type name
    "recent_event_ids": "Array(String)",
    "recent_event_us": "Array(Int64)",
    "recent_amounts": "Array(Float64)",
    "recent_merchants": "Array(Int64)",
    "recent_countries": "Array(String)",
    "evicted_us": "Int64",
    "evicted_country": "String",
}
# Computed per request by the v2 on-demand view from the request, user_recent and user_state.
ON_DEMAND_FEATURES_V2: dict[str, str] = {
    **STREAM_FEATURE_TYPES,
    AMOUNT_TO_USER_MEAN: "Float64",
    HOUR_OF_DAY: "Int64",
    DAY_OF_WEEK: "Int64",
}


def _check() -> None:
    """History must cover every window, or the engines' first rows would see too little."""
    longest = max(
        (*USER_WINDOWS, DISTINCT_MERCHANTS, NEW_MERCHANT, USER_MEAN, MERCHANT, STATE_DISTINCT_MERCHANTS),
        key=lambda w: w.seconds,
    )
    if longest.seconds > LOOKBACK.seconds:
        raise ValueError(f"window {longest.suffix} is longer than the lookback {LOOKBACK.suffix}")
    if len(set(COLUMNS)) != len(COLUMNS):
        raise ValueError("two feature columns share a name: give their windows different lengths")


_check()
