"""The Spark column of `make bench-features`: the production engine, on one machine.

`compute_features_spark` runs `resources.engines.spark_features` in Spark local mode with
`threads` cores, exactly as the `transaction_features` asset does under DRIFTLINE_ENV=k8s
(the same session settings as `resources.profiles.SPARK_DEFAULTS`). The JVM start is part of
the cost a run pays, so it is inside the timed span; `STARTUP_SECONDS` tells it apart.

Hook into bench/run_impl.py (`impl == "spark"`):

    from bench.spark_impl import compute_features_spark
    table = compute_features_spark(tx_files, label_files, start, end, threads)
    t1 = time.perf_counter(); write_parquet(table, out); rows = table.num_rows

Standalone: python -m bench.spark_impl --lake DIR --start ISO --end ISO [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import pyarrow as pa

STARTUP_SECONDS: float | None = None


def spark_session(threads: int = 2, driver_memory: str = "4g"):
    from pyspark.sql import SparkSession

    from resources.profiles import SPARK_DEFAULTS

    builder = SparkSession.builder.master(f"local[{threads}]").appName("driftline-bench")
    for key, value in {
        **SPARK_DEFAULTS,
        "spark.sql.shuffle.partitions": str(4 * threads),
        "spark.driver.memory": driver_memory,
    }.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def compute_features_spark(
    tx_files: list[str], label_files: list[str], start: dt.datetime, end: dt.datetime, threads: int = 2
) -> pa.Table:
    """Start a local session, compute [start, end), collect to Arrow (as the asset does)."""
    global STARTUP_SECONDS  # noqa: PLW0603  # the session's share of the run, beside the table the asset returns
    from resources.engines.spark_features import compute_transaction_features_spark

    t0 = time.perf_counter()
    session = spark_session(threads)
    STARTUP_SECONDS = time.perf_counter() - t0
    return compute_transaction_features_spark(session, tx_files, label_files, start, end)


def main(argv=None) -> int:
    from bench.data import LABEL_TABLE, TX_TABLE, partition_files

    p = argparse.ArgumentParser()
    p.add_argument("--lake", required=True)
    p.add_argument("--start", required=True, type=dt.datetime.fromisoformat)
    p.add_argument("--end", required=True, type=dt.datetime.fromisoformat)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    table = compute_features_spark(
        partition_files(a.lake, TX_TABLE), partition_files(a.lake, LABEL_TABLE), a.start, a.end, a.threads
    )
    total = time.perf_counter() - t0
    print(f"spark local[{a.threads}]: {table.num_rows:,} rows in {total:.2f} s (session start {STARTUP_SECONDS:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
