"""`transaction_features` on Spark: the same semantics as `duckdb_features`, as window functions.

Every `[t - w, t)` window is a RANGE frame over integer microseconds, `w PRECEDING .. 1
PRECEDING`: rows at the same instant fall out exactly as in the DuckDB engine's left binary
search. Widths, column order and the micro-unit summation come from `duckdb_features`, so the
two engines cannot drift apart silently (tests/test_spark_parity.py compares them row by row).

Known chargebacks: the label stream (+1 at `label_ts`, -1 when the transaction leaves the
30-day window) is unioned with the merchant's transactions; a running sum of the deltas
strictly before `t` is the count, the same prefix-count idea as the DuckDB engine.

The result is collected to the driver as Arrow (`DataFrame.toArrow`): the asset writes one
file per day through `Lake.write_partition` (staged, then renamed), so both engines share one
atomic writer and one lake layout. Spark distributes the expensive part (the 30-day history
scan and the windows); what comes back is only the partition range's rows.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pyarrow as pa

from .duckdb_features import DAY, FEATURE_COLUMNS, HOUR, LOOKBACK, MICRO_UNITS, US, USER_WINDOWS, _epoch_us

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

REQUEST_COLUMNS = FEATURE_COLUMNS[:8]
_INT32 = {"hour_of_day", "day_of_week", "is_new_merchant", "country_changed"}
_INT64 = {"user_id", "merchant_id", "user_distinct_merchants_24h", "merchant_txn_count_30d",
          "merchant_cb_count_30d"} | {f"user_txn_count_{w}" for w in USER_WINDOWS}
_STRING = {"event_id", "category", "country", "channel"}


def _arrow_type(name: str) -> pa.DataType:
    if name == "event_ts":
        return pa.timestamp("us")
    if name in _STRING:
        return pa.string()
    return pa.int32() if name in _INT32 else pa.int64() if name in _INT64 else pa.float64()


# The lake schema of `transaction_features` (what the DuckDB engine returns too).
SCHEMA = pa.schema([(c, _arrow_type(c)) for c in FEATURE_COLUMNS])


def _micros(df: "DataFrame", name: str):
    """Microseconds since the epoch; nanosecond Parquet timestamps arrive as longs
    (spark.sql.legacy.parquet.nanosAsLong) and are truncated like DuckDB's epoch_us."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    if isinstance(df.schema[name].dataType, LongType):
        return F.expr(f"`{name}` div 1000")  # integer division: a double loses ns precision
    return F.unix_micros(F.col(name).cast("timestamp"))


def _events(spark: "SparkSession", files: list[str], lo_us: int, end_us: int) -> "DataFrame":
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    df = spark.read.option("mergeSchema", "true").parquet(*files)
    df = df.select(*REQUEST_COLUMNS, _micros(df, "event_ts").alias("ts"))
    if isinstance(df.schema["event_ts"].dataType, LongType):  # nanoseconds: back to a timestamp
        df = df.withColumn("event_ts", F.expr("cast(timestamp_micros(ts) as timestamp_ntz)"))
    return df.where((F.col("ts") >= lo_us) & (F.col("ts") < end_us))


def _label_deltas(spark: "SparkSession", files: list[str], lo_us: int, end_us: int) -> "DataFrame | None":
    """+1 at label_ts, -1 at event_ts + 30 d, for the chargebacks DuckDB's engine counts."""
    from pyspark.sql import functions as F

    if not files:
        return None
    df = spark.read.option("mergeSchema", "true").parquet(*files)
    plus, minus = _micros(df, "label_ts"), _micros(df, "event_ts") + LOOKBACK
    cb = df.where(F.col("is_fraud") & (plus < end_us) & (plus < minus) & (minus >= lo_us))
    return (cb.select("merchant_id", plus.alias("ts"), F.lit(1).alias("delta"))
            .unionByName(cb.select("merchant_id", minus.alias("ts"), F.lit(-1).alias("delta"))))


def compute_transaction_features_spark(spark: "SparkSession", transaction_files: list[str],
                                       label_files: list[str], start: dt.datetime, end: dt.datetime) -> pa.Table:
    """Features for transactions with start <= event_ts < end (files must cover [start - 30 d, end))."""
    from pyspark.sql import Window as W
    from pyspark.sql import functions as F

    if not transaction_files:
        return SCHEMA.empty_table()
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # naive lake timestamps are UTC
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")  # else TIMESTAMP(NANOS) is refused
    lo_us, start_us, end_us = _epoch_us(start) - LOOKBACK, _epoch_us(start), _epoch_us(end)

    rows = _events(spark, transaction_files, lo_us, end_us).withColumn("delta", F.lit(0))
    rows = rows.withColumn("is_tx", F.lit(1))
    deltas = _label_deltas(spark, label_files, lo_us, end_us)
    if deltas is not None:
        rows = rows.unionByName(deltas.withColumn("is_tx", F.lit(0)), allowMissingColumns=True)

    # Merchant windows over transactions and chargeback deltas together.
    by_merchant = W.partitionBy("merchant_id").orderBy("ts")
    rows = rows.select(
        "*",
        F.coalesce(F.sum("is_tx").over(by_merchant.rangeBetween(-LOOKBACK, -1)), F.lit(0))
        .alias("merchant_txn_count_30d"),
        F.coalesce(F.sum("delta").over(by_merchant.rangeBetween(W.unboundedPreceding, -1)), F.lit(0))
        .alias("merchant_cb_count_30d"),
    ).where(F.col("is_tx") == 1)

    # User windows: [t - w, t) as RANGE w PRECEDING .. 1 PRECEDING over microseconds.
    by_user = W.partitionBy("user_id").orderBy("ts")
    micro = F.rint(F.col("amount") * MICRO_UNITS).cast("long")
    feats = {}
    for name, width in USER_WINDOWS.items():
        frame = by_user.rangeBetween(-width, -1)
        feats[f"user_txn_count_{name}"] = F.count(F.lit(1)).over(frame)
        feats[f"user_amount_sum_{name}"] = F.coalesce(F.sum(micro).over(frame), F.lit(0)) / MICRO_UNITS
    month = by_user.rangeBetween(-LOOKBACK, -1)
    count30, sum30 = F.count(F.lit(1)).over(month), F.sum(micro).over(month) / MICRO_UNITS
    prev_ts = F.max("ts").over(month)
    # DuckDB's "previous row" is the last of (ts, event_id) order: max_by picks the same one.
    prev_country = F.max_by("country", F.struct("ts", "event_id")).over(month)
    pair = W.partitionBy("user_id", "merchant_id").orderBy("ts").rangeBetween(-LOOKBACK, -1)
    feats |= {
        "seconds_since_prev_txn": (F.col("ts") - prev_ts) / US,
        "amount_to_user_mean_30d": F.when(count30 > 0, F.col("amount") * count30 / sum30),
        "user_distinct_merchants_24h": F.size(F.collect_set("merchant_id").over(by_user.rangeBetween(-DAY, -1))),
        "is_new_merchant": (F.count(F.lit(1)).over(pair) == 0).cast("int"),
        "country_changed": F.coalesce((prev_country != F.col("country")).cast("int"), F.lit(0)),
        "merchant_cb_rate_30d": F.col("merchant_cb_count_30d") / F.greatest(F.col("merchant_txn_count_30d"), F.lit(1)),
        "hour_of_day": F.expr(f"cast(pmod(ts, {DAY}) div {HOUR} as int)"),
        "day_of_week": F.expr(f"cast(pmod(ts div {DAY} + 3, 7) + 1 as int)"),
    }
    out = rows.select("*", *[c.alias(n) for n, c in feats.items()])
    out = out.where(F.col("ts") >= start_us).orderBy("user_id", "ts", "event_id")
    return out.select(*FEATURE_COLUMNS).toArrow().cast(SCHEMA)
