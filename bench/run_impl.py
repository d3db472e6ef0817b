"""Run one implementation once, in its own process, and report JSON on stdout.

Each run gets a fresh interpreter so its peak RSS (ru_maxrss of this process) is its own
and no implementation warms caches for another. The timed span is end to end: read the
lake's Parquet, compute the features, write them to Parquet (zstd); imports, and loading our
compiled kernels, come before it. Ours writes what `transaction_features` writes: the lake's
layout, one file per day (written concurrently, one per thread); the peers write one file
(Polars' writer is multi-threaded; pandas and Spark use the lake's own writer settings).

    python -m bench.run_impl {duckdb,polars,pandas,floor} --lake DIR --start ISO --end ISO --out FILE
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sys
import time

from bench.data import LABEL_TABLE, TX_TABLE, partition_files


def run(impl: str, lake: str, start: dt.datetime, end: dt.datetime, out: str, threads: int) -> dict:
    tx_files, label_files = partition_files(lake, TX_TABLE), partition_files(lake, LABEL_TABLE)
    if impl == "floor":
        import duckdb

        from bench.floor import copy_floor

        con = duckdb.connect()
        con.execute(f"SET threads TO {threads}")
        seconds, rows = copy_floor(con, tx_files, out)
        return {"seconds": seconds, "compute_seconds": None, "rows": rows}

    import pyarrow as pa

    from resources.lake import write_parquet

    pa.set_cpu_count(threads)
    # Libraries and modules load before the clock starts: the span is read, compute, write.
    if impl == "duckdb":
        import duckdb

        from assets.features import split_by_day
        from resources.engines.duckdb_features import compute_transaction_features
        from resources.lake import Lake
    elif impl == "polars":
        from bench.features_polars import compute_features_polars_from_files
    elif impl == "pandas":
        from bench.features_pandas import compute_features_pandas_from_files
    elif impl == "spark":
        from bench.spark_impl import compute_features_spark
    else:
        raise SystemExit(f"unknown implementation {impl!r}")

    t0 = time.perf_counter()
    if impl == "duckdb":
        # What `transaction_features` does: compute the range, write one lake partition per day.
        con = duckdb.connect()
        con.execute(f"SET threads TO {threads}")
        table = compute_transaction_features(con, tx_files, label_files, start, end)
        t1 = time.perf_counter()
        if os.path.isdir(out):
            shutil.rmtree(out)
        elif os.path.exists(out):
            os.unlink(out)
        Lake(root=str(out)).write_partitions("transaction_features", split_by_day(table, start, end), threads=threads)
        rows = table.num_rows
    elif impl == "polars":
        df = compute_features_polars_from_files(tx_files, label_files, start, end)
        t1 = time.perf_counter()
        df.write_parquet(out, compression="zstd")
        rows = df.height
    elif impl == "pandas":
        df = compute_features_pandas_from_files(tx_files, label_files, start, end)
        t1 = time.perf_counter()
        write_parquet(pa.Table.from_pandas(df, preserve_index=False), out)
        rows = len(df)
    else:
        table = compute_features_spark(tx_files, label_files, start, end, threads)
        t1 = time.perf_counter()
        write_parquet(table, out)
        rows = table.num_rows
    return {"seconds": time.perf_counter() - t0, "compute_seconds": t1 - t0, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("impl")
    p.add_argument("--lake", required=True)
    p.add_argument("--start", required=True, type=dt.datetime.fromisoformat)
    p.add_argument("--end", required=True, type=dt.datetime.fromisoformat)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=int(os.environ.get("POLARS_MAX_THREADS", "2")))
    a = p.parse_args(argv)
    result = run(a.impl, a.lake, a.start, a.end, a.out, a.threads)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
