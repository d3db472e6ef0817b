"""`transaction_features` on Spark: the same semantics as `duckdb_features`, as window functions.

Every `[t - w, t)` window is a RANGE frame over integer microseconds, `w PRECEDING .. 1
PRECEDING`: rows at the same instant fall out exactly as in the DuckDB engine's left binary
search. Widths, column names, order and types come from driftline.spec and the micro-unit
summation from `duckdb_features`, so the two engines cannot drift apart silently
(tests/test_spark_parity.py compares them row by row).

Known chargebacks: the label stream (+1 at `label_ts`, -1 when the transaction leaves the
merchant window) is unioned with the merchant's transactions; a running sum of the deltas
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

from driftline import spec

from .duckdb_features import DAY, FEATURE_COLUMNS, HOUR, LOOKBACK, MICRO_UNITS, US, _epoch_us

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

REQUEST_COLUMNS = spec.REQUEST_COLUMNS
_ARROW_TYPES = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "double": pa.float64(),
}

# The lake schema of `transaction_features` (what the DuckDB engine returns too).
SCHEMA = pa.schema([(name, _ARROW_TYPES[t]) for name, t in spec.FEATURE_COLUMNS.items()])


def _micros(df: DataFrame, name: str):
    """Microseconds since the epoch; nanosecond Parquet timestamps arrive as longs
    (spark.sql.legacy.parquet.nanosAsLong) and are truncated like DuckDB's epoch_us."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    if isinstance(df.schema[name].dataType, LongType):
        return F.expr(f"`{name}` div 1000")  # integer division: a double loses ns precision
    return F.unix_micros(F.col(name).cast("timestamp"))


def _events(spark: SparkSession, files: list[str], lo_us: int, end_us: int) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    df = spark.read.option("mergeSchema", "true").parquet(*files)
    df = df.select(*REQUEST_COLUMNS, _micros(df, "event_ts").alias("ts"))
    if isinstance(df.schema["event_ts"].dataType, LongType):  # nanoseconds: back to a timestamp
        df = df.withColumn("event_ts", F.expr("cast(timestamp_micros(ts) as timestamp_ntz)"))
    return df.where((F.col("ts") >= lo_us) & (F.col("ts") < end_us))


def _label_deltas(spark: SparkSession, files: list[str], lo_us: int, end_us: int) -> DataFrame | None:
    """+1 at label_ts, -1 at event_ts + the merchant window, for the chargebacks DuckDB's engine counts."""
    from pyspark.sql import functions as F

    if not files:
        return None
    df = spark.read.option("mergeSchema", "true").parquet(*files)
    plus, minus = _micros(df, "label_ts"), _micros(df, "event_ts") + spec.MERCHANT.micros
    cb = df.where(F.col("is_fraud") & (plus < end_us) & (plus < minus) & (minus >= lo_us))
    return cb.select("merchant_id", plus.alias("ts"), F.lit(1).alias("delta")).unionByName(
        cb.select("merchant_id", minus.alias("ts"), F.lit(-1).alias("delta"))
    )


def compute_transaction_features_spark(
    spark: SparkSession, transaction_files: list[str], label_files: list[str], start: dt.datetime, end: dt.datetime
) -> pa.Table:
    """Features for transactions with start <= event_ts < end (files must cover [start - spec.LOOKBACK, end))."""
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
        F.coalesce(F.sum("is_tx").over(by_merchant.rangeBetween(-spec.MERCHANT.micros, -1)), F.lit(0)).alias(
            spec.MERCHANT_TXN_COUNT
        ),
        F.coalesce(F.sum("delta").over(by_merchant.rangeBetween(W.unboundedPreceding, -1)), F.lit(0)).alias(
            spec.MERCHANT_CB_COUNT
        ),
    ).where(F.col("is_tx") == 1)

    # User windows: [t - w, t) as RANGE w PRECEDING .. 1 PRECEDING over microseconds.
    by_user = W.partitionBy("user_id").orderBy("ts")
    micro = F.rint(F.col("amount") * MICRO_UNITS).cast("long")
    feats = {}
    for window in spec.USER_WINDOWS:
        frame = by_user.rangeBetween(-window.micros, -1)
        feats[spec.user_txn_count(window)] = F.count(F.lit(1)).over(frame)
        feats[spec.user_amount_sum(window)] = F.coalesce(F.sum(micro).over(frame), F.lit(0)) / MICRO_UNITS
    history = by_user.rangeBetween(-LOOKBACK, -1)
    mean_frame = by_user.rangeBetween(-spec.USER_MEAN.micros, -1)
    count_m, sum_m = F.count(F.lit(1)).over(mean_frame), F.sum(micro).over(mean_frame) / MICRO_UNITS
    prev_ts = F.max("ts").over(history)
    # DuckDB's "previous row" is the last of (ts, event_id) order: max_by picks the same one.
    prev_country = F.max_by("country", F.struct("ts", "event_id")).over(history)
    pair = W.partitionBy("user_id", "merchant_id").orderBy("ts").rangeBetween(-spec.NEW_MERCHANT.micros, -1)
    distinct_frame = by_user.rangeBetween(-spec.DISTINCT_MERCHANTS.micros, -1)
    feats |= {
        spec.SECONDS_SINCE_PREV_TXN: (F.col("ts") - prev_ts) / US,
        spec.AMOUNT_TO_USER_MEAN: F.when(count_m > 0, F.col("amount") * count_m / sum_m),
        spec.USER_DISTINCT_MERCHANTS: F.size(F.collect_set("merchant_id").over(distinct_frame)),
        spec.IS_NEW_MERCHANT: (F.count(F.lit(1)).over(pair) == 0).cast("int"),
        spec.COUNTRY_CHANGED: F.coalesce((prev_country != F.col("country")).cast("int"), F.lit(0)),
        spec.MERCHANT_CB_RATE: F.col(spec.MERCHANT_CB_COUNT) / F.greatest(F.col(spec.MERCHANT_TXN_COUNT), F.lit(1)),
        spec.HOUR_OF_DAY: F.expr(f"cast(pmod(ts, {DAY}) div {HOUR} as int)"),
        spec.DAY_OF_WEEK: F.expr(f"cast(pmod(ts div {DAY} + 3, 7) + 1 as int)"),
    }
    out = rows.select("*", *[c.alias(n) for n, c in feats.items()])
    out = out.where(F.col("ts") >= start_us).orderBy("user_id", "ts", "event_id")
    return out.select(*FEATURE_COLUMNS).toArrow().cast(SCHEMA)
