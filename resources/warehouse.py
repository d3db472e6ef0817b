"""The analysts' DuckDB file: views over the lake, nothing else.

DuckDB lets one process write a file at a time, so the orchestrator never holds a write
connection: it opens the file read-only to see whether the views are current, and takes the
write lock for milliseconds only when a view is missing or points elsewhere. If an analyst
holds the file, the refresh is skipped (the views' globs already pick up new partitions).

On an object-store lake (`Lake(root="s3://...")`) the views read `s3://...` globs: the
orchestrator registers the lake's fsspec filesystem on its connections (`Lake.prepare_duckdb`;
pass `lake=` to `query`). An analyst's own DuckDB needs the httpfs extension and an S3 secret
for the bucket instead (docs/lake.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg

from .lake import Lake

log = logging.getLogger(__name__)

QUARANTINE_PREFIX = "quarantine_"


def view_sql(name: str, glob: str) -> str:
    glob = glob.replace("'", "''")
    return (
        f"create or replace view {name} as select * from read_parquet('{glob}', "
        f"hive_partitioning = true, union_by_name = true)"
    )


class Warehouse(dg.ConfigurableResource):
    path: str = "data/warehouse.duckdb"
    # Written in an older storage format so the `duckdb` CLI (duckdb-cli 1.5) and other
    # analyst tools can open it; the file holds only views, so nothing is lost by that.
    storage_compatibility: str = "v1.5.0"

    def wanted_views(self, lake: Lake) -> dict[str, str]:
        views = {table: view_sql(table, lake.glob(table)) for table in lake.tables()}
        quarantines = [t for t in views if t.startswith(QUARANTINE_PREFIX)]
        if quarantines:
            union = " union all by name ".join(
                f"select '{t.removeprefix(QUARANTINE_PREFIX)}' as source, * from {t}" for t in quarantines
            )
            views["quarantine"] = f"create or replace view quarantine as {union}"
        return views

    def refresh_views(self, lake: Lake) -> list[str]:
        """Create missing or outdated views; returns the names written ([] if none or locked)."""
        import duckdb

        wanted = self.wanted_views(lake)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        current = self._current_views()
        stale = {n: sql for n, sql in wanted.items() if current.get(n) != _normalise(sql)}
        if not stale:
            return []
        try:
            con = duckdb.connect(self.path, config={"storage_compatibility_version": self.storage_compatibility})
        except (duckdb.IOException, duckdb.ConnectionException) as err:
            log.warning("warehouse %s is held by another session; views not refreshed (%s)", self.path, err)
            return []
        try:
            lake.prepare_duckdb(con)  # DuckDB binds a view when it is created: the files must be readable
            for sql in stale.values():
                con.execute(sql)
            con.execute("create table if not exists _driftline_views(name varchar primary key, sql varchar)")
            for name, sql in stale.items():
                con.execute("insert or replace into _driftline_views values (?, ?)", [name, _normalise(sql)])
        finally:
            con.close()
        return sorted(stale)

    def _current_views(self) -> dict[str, str]:
        import duckdb

        if not Path(self.path).exists():
            return {}
        try:
            con = duckdb.connect(self.path, read_only=True)
        except duckdb.Error:
            return {}
        try:
            return dict(con.execute("select name, sql from _driftline_views").fetchall())
        except duckdb.Error:
            return {}
        finally:
            con.close()

    def query(self, sql: str, lake: Lake | None = None):
        """Read-only query, the way an analyst would run it (`lake`: needed when it is remote)."""
        import duckdb

        con = duckdb.connect(self.path, read_only=True)
        try:
            if lake is not None:
                lake.prepare_duckdb(con)
            return con.sql(sql).df()
        finally:
            con.close()


def _normalise(sql: str) -> str:
    return " ".join(sql.split())
