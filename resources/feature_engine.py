"""Which engine computes `transaction_features`. DuckDB on one machine, Spark when it outgrows
one; the asset code does not change when another engine is configured.

Spark gets its session from a nested dagster-pyspark resource (`spark=PySparkResource(...)`):
Dagster starts it with the run, only where this resource is used, and pyspark is never
imported by the code location itself (the local profile does not import it at all).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pyarrow as pa

from .lake import Lake, spark_path

LOOKBACK = dt.timedelta(days=30)


def covering_days(start: dt.datetime, end: dt.datetime, back: dt.timedelta) -> list[str]:
    day, last, out = (start - back).date(), (end - dt.timedelta(microseconds=1)).date(), []
    while day <= last:
        out.append(day.isoformat())
        day += dt.timedelta(days=1)
    return out


class FeatureEngine(dg.ConfigurableResource):
    engine: str = "duckdb"
    threads: int = 0  # 0: all cores
    memory_limit: str = ""  # DuckDB syntax, e.g. "8GB"; empty: DuckDB's default
    # engine "spark": a dagster_pyspark PySparkResource (anything with `.spark_session`)
    spark: dg.ConfigurableResource | None = None

    def compute(self, lake: Lake, start: dt.datetime, end: dt.datetime) -> pa.Table:
        if self.engine == "spark":
            return self._compute_spark(lake, start, end)
        if self.engine != "duckdb":
            raise ValueError(f"unknown feature engine {self.engine!r}; supported: duckdb, spark")
        import duckdb

        from .engines.duckdb_features import compute_transaction_features

        days = covering_days(start, end, LOOKBACK)
        con = duckdb.connect()
        try:
            if self.threads:
                con.execute(f"set threads = {int(self.threads)}")
            if self.memory_limit:
                con.execute("set memory_limit = ?", [self.memory_limit])
            lake.prepare_duckdb(con)  # an object-store lake: DuckDB reads its URLs through fsspec
            return compute_transaction_features(
                con,
                lake.existing_partition_files("raw_transactions", days),
                lake.existing_partition_files("raw_labels", days),
                start,
                end,
            )
        finally:
            con.close()

    def _compute_spark(self, lake: Lake, start: dt.datetime, end: dt.datetime) -> pa.Table:
        if self.spark is None:
            raise ValueError("feature engine 'spark' needs spark=PySparkResource(spark_config={...})")
        from .engines.spark_features import compute_transaction_features_spark

        days = covering_days(start, end, LOOKBACK)
        return compute_transaction_features_spark(
            self.spark.spark_session,
            # s3:// -> s3a:// (hadoop-aws); the session needs spark.hadoop.fs.s3a.* (docs/lake.md)
            [spark_path(f) for f in lake.existing_partition_files("raw_transactions", days)],
            [spark_path(f) for f in lake.existing_partition_files("raw_labels", days)],
            start,
            end,
        )
