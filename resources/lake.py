"""The lake: Hive-partitioned Parquet, one file per partition, replaced atomically.

A partition is written to a staging file outside the asset's folder and renamed into
place, so readers (DuckDB views, analysts) never see a half-written file and a crash
leaves the previous version intact.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

PARTITION_FILE = "data.parquet"


class Lake(dg.ConfigurableResource):
    """Where the lake lives. `root` is a local path (an object-store URL in production)."""

    root: str = "data/lake"

    @property
    def path(self) -> Path:
        return Path(self.root).resolve()

    def table_dir(self, table: str) -> Path:
        return self.path / table

    def partition_file(self, table: str, date: str) -> Path:
        return self.table_dir(table) / f"date={date}" / PARTITION_FILE

    def glob(self, table: str) -> str:
        """Glob that matches every partition of `table` (for DuckDB `read_parquet`)."""
        return str(self.table_dir(table) / "*" / "*.parquet")

    def write_partition(self, table: str, date: str, data: pa.Table) -> Path:
        return self.write_partition_file(self.partition_file(table, date), data)

    def write_partition_file(self, target: Path, data: pa.Table) -> Path:
        """Write `data` to `target` atomically: staged outside the table, then renamed."""
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{target.parent.name}-{uuid.uuid4().hex}.parquet"
        try:
            pq.write_table(data, tmp, compression="zstd")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def has_partition(self, table: str, date: str) -> bool:
        return self.partition_file(table, date).exists()

    def read_partition(self, table: str, date: str) -> pa.Table:
        return pq.read_table(self.partition_file(table, date))

    def existing_partition_files(self, table: str, dates: list[str]) -> list[str]:
        return [str(self.partition_file(table, d)) for d in dates if self.has_partition(table, d)]
