"""Names shared by the Feast definitions, the snapshot assets and their consumers.

Importing this module does not import feast (the Dagster code location must load fast).
"""

from __future__ import annotations

import datetime as dt

PROJECT = "driftline"
FEATURE_SERVICE = "fraud_model_v1"

# Lake tables that hold the daily snapshots (Feast offline sources).
USER_STATE_TABLE = "user_state"
MERCHANT_STATE_TABLE = "merchant_state"

# Timestamp column of the snapshot tables: the materialization instant T (end of day D).
SNAPSHOT_TS = "event_timestamp"

# How old a snapshot may be and still be served / joined. One daily snapshot is the norm;
# the slack covers a missed day. Online and offline both see the latest snapshot <= t.
SNAPSHOT_TTL = dt.timedelta(days=3)

USER_STATE_FEATURES: dict[str, str] = {  # name -> Feast type name
    "user_txn_count_24h": "Int64",
    "user_amount_sum_24h": "Float64",
    "user_txn_count_7d": "Int64",
    "user_amount_sum_7d": "Float64",
    "user_mean_amount_30d": "Float64",
    "user_distinct_merchants_7d": "Int64",
    "user_last_txn_epoch_s": "Float64",
    "user_last_country": "String",
}

MERCHANT_STATE_FEATURES: dict[str, str] = {
    "merchant_txn_count_30d": "Int64",
    "merchant_cb_count_30d": "Int64",
    "merchant_cb_rate_30d": "Float64",
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
    "amount_to_user_mean_30d": "Float64",
    "seconds_since_last_txn": "Float64",
    "country_changed": "Int64",
    "hour_of_day": "Int64",
    "day_of_week": "Int64",
}

ENTITY_KEYS = ("user_id", "merchant_id")

# Every feature of the fraud_model_v1 service, in service order (the model's column order).
SERVED_FEATURES: list[str] = [*USER_STATE_FEATURES, *MERCHANT_STATE_FEATURES, *ON_DEMAND_FEATURES]


def epoch_seconds(ts) -> "object":
    """Seconds since the Unix epoch (float) of a timestamp / pandas Series; naive means UTC.

    This is the one definition of `event_epoch_s`: callers of the online path must send the
    same number that `FeastStore.training_frame` derives from `event_ts`.
    """
    import pandas as pd

    if isinstance(ts, pd.Series):
        s = pd.to_datetime(ts, utc=True)
        return (s - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return (t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
