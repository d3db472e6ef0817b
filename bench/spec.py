"""The feature table's columns, in the order and types of docs/features.md.

Shared by the pandas and Polars baselines, the benchmark's comparison and the tests, so a
change to the spec is made in one place (and then in docs/features.md).
"""

FEATURE_COLUMNS: dict[str, str] = {
    "event_id": "string",
    "event_ts": "timestamp",
    "user_id": "int64",
    "merchant_id": "int64",
    "amount": "double",
    "category": "string",
    "country": "string",
    "channel": "string",
    "hour_of_day": "int32",
    "day_of_week": "int32",
    "user_txn_count_1h": "int64",
    "user_txn_count_24h": "int64",
    "user_txn_count_7d": "int64",
    "user_amount_sum_1h": "double",
    "user_amount_sum_24h": "double",
    "user_amount_sum_7d": "double",
    "seconds_since_prev_txn": "double",
    "amount_to_user_mean_30d": "double",
    "user_distinct_merchants_24h": "int64",
    "is_new_merchant": "int32",
    "country_changed": "int32",
    "merchant_txn_count_30d": "int64",
    "merchant_cb_count_30d": "int64",
    "merchant_cb_rate_30d": "double",
}
COLUMNS = list(FEATURE_COLUMNS)
# User windows of the count/sum features: suffix -> length.
USER_WINDOWS = {"1h": "1h", "24h": "24h", "7d": "7D"}
LOOKBACK = "30D"
