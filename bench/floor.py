"""The I/O floor: DuckDB reads every column of the transaction partitions and writes them
back as one Parquet file. No feature engine can beat a plain read-and-write of its input,
so "seconds / floor seconds" says how much of our time is computation."""

from __future__ import annotations

import time

import duckdb


def _files_sql(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def copy_floor(con: duckdb.DuckDBPyConnection, transaction_files: list[str], out_path: str) -> tuple[float, int]:
    """Read all columns of `transaction_files` and COPY them to `out_path` (zstd, like the
    feature outputs). Returns (seconds, rows)."""
    t0 = time.perf_counter()
    row = con.execute(f"""
        COPY (SELECT * FROM read_parquet({_files_sql(transaction_files)}, hive_partitioning = false))
        TO '{out_path}' (FORMAT parquet, COMPRESSION zstd)
    """).fetchone()
    assert row is not None  # COPY answers one row: the count written
    return time.perf_counter() - t0, int(row[0])
