"""FeastStore: the Feast feature store of driftline as a Dagster resource.

The repo config is generated at runtime into `repo_dir/feature_store.yaml` with absolute
paths, so the Feast CLI (and `feast serve`) can run against that folder later:

    feast -c data/feast feature-views list
    feast -c data/feast serve --port 6566

Definitions (entities, sources, views, on-demand view, service) live in Python in
`resources/feast_repo`; `apply()` registers them. feast is imported inside the methods only:
it takes seconds to import and the Dagster code location must load fast.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from driftline import settings, spec
from resources.feast_repo.schema import (
    ENTITY_KEYS,
    FEATURE_SERVICE,
    PROJECT,
    REQUEST_FIELDS,
    SERVED_FEATURES,
    SNAPSHOT_TTL,
    epoch_seconds,
)
from resources.lake import Lake

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from feast import FeatureStore

CONFIG_FILE = "feature_store.yaml"
SHIM_FILE = "driftline_repo.py"
# The snapshot feature views that `materialize_snapshot` loads into the online store.
SNAPSHOT_VIEWS = (spec.USER_STATE_VIEW, spec.MERCHANT_STATE_VIEW)


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _single_partition_sources():
    """Within the block, feast's dask offline store reads each source as one partition.

    Feast 0.67 reads a FileSource directory with one dask partition per file (one per
    snapshot day), then left-joins the entity rows into that many hash partitions. A partition
    that holds only unmatched rows (new users, masked rows) has an all-null timestamp column,
    and the later sort fails ("Divisions calculation failed for non-numeric column"). One
    partition per source avoids that (and is faster: the snapshots are small).
    """
    from feast.infra.offline_stores import dask as feast_dask

    original = getattr(feast_dask, "_read_datasource", None)
    if original is None:  # a feast without this helper: nothing to adjust
        yield
        return

    def read_one_partition(data_source, repo_path):
        return original(data_source, repo_path).repartition(npartitions=1)

    with _PATCH_LOCK:
        feast_dask._read_datasource = read_one_partition
        try:
            yield
        finally:
            feast_dask._read_datasource = original


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


class FeastStore(dg.ConfigurableResource):
    """Where the Feast repo, registry and online store live.

    `online_store_type` "sqlite" (default, `online_store_path`) or "redis"
    (`online_store_connection_string`, e.g. "redis:6379"): production swaps the online store
    by config only.

    `lake` is the Lake resource itself (nested): the offline FileSources read its root (a path
    or an object-store URL) and get its S3-compatible endpoint as `s3_endpoint_override`.
    """

    lake: Lake
    repo_dir: str = "data/feast"
    project: str = PROJECT
    registry_path: str | None = None  # default <repo_dir>/registry.db
    registry_cache_ttl_seconds: int = 60
    online_store_type: str = "sqlite"
    online_store_path: str | None = None  # sqlite; default <repo_dir>/online_store.db
    online_store_connection_string: str | None = None  # redis

    # ---------------------------------------------------------------- configuration
    @property
    def repo_path(self) -> Path:
        return Path(self.repo_dir).resolve()

    @property
    def registry_file(self) -> Path:
        return Path(self.registry_path).resolve() if self.registry_path else self.repo_path / "registry.db"

    def online_store_config(self) -> dict[str, Any]:
        kind = self.online_store_type.lower()
        if kind == "sqlite":
            path = (
                Path(self.online_store_path).resolve() if self.online_store_path else self.repo_path / "online_store.db"
            )
            return {"type": "sqlite", "path": str(path)}
        if kind == "redis":
            if not self.online_store_connection_string:
                raise ValueError("online_store_type 'redis' needs online_store_connection_string (host:port[,opts])")
            # dg.EnvVar under k8s (may hold a password): resolved for a store used outside a run
            return {"type": "redis", "connection_string": settings.resolved(self.online_store_connection_string)}
        raise ValueError(f"unsupported online_store_type {self.online_store_type!r}; use 'sqlite' or 'redis'")

    def config_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "provider": "local",
            "registry": {
                "registry_type": "file",
                "path": str(self.registry_file),
                "cache_ttl_seconds": self.registry_cache_ttl_seconds,
            },
            # File offline store (dask): reads a FileSource directory whole, Hive dirs included.
            # The "duckdb" offline store needs ibis, which is not in the environment.
            "offline_store": {"type": "file"},
            "online_store": self.online_store_config(),
            "entity_key_serialization_version": 3,
        }

    def write_config(self) -> Path:
        """Write `feature_store.yaml` (and the CLI shim) into repo_dir; idempotent."""
        import yaml

        self.repo_path.mkdir(parents=True, exist_ok=True)
        self.registry_file.parent.mkdir(parents=True, exist_ok=True)
        target = self.repo_path / CONFIG_FILE
        text = "# Generated by resources/feast_store.py (FeastStore.write_config); do not edit.\n"
        text += yaml.safe_dump(self.config_dict(), sort_keys=False)
        if not target.exists() or target.read_text() != text:
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, target)
        self._write_shim()
        return target

    def _write_shim(self) -> None:
        # Lets `feast -c <repo_dir> plan|apply` find the definitions (feast imports every
        # .py file of the repo dir). The project root goes on sys.path for the import.
        project_root = Path(__file__).resolve().parents[1]
        lake = self.lake.url  # absolute path, or the object-store URL
        endpoint = f", {self.lake.s3_endpoint_url!r}" if self.lake.s3_endpoint_url else ""
        text = (
            '"""Generated by resources/feast_store.py: exposes resources/feast_repo to the feast CLI."""\n'
            "import sys\n\n"
            f"sys.path.insert(0, {str(project_root)!r})\n"
            "from resources.feast_repo.definitions import build_objects  # noqa: E402\n\n"
            f"for _i, _obj in enumerate(build_objects({lake!r}{endpoint})):\n"
            '    globals()[f"_feast_object_{_i}"] = _obj\n'
        )
        target = self.repo_path / SHIM_FILE
        if not target.exists() or target.read_text() != text:
            target.write_text(text)

    def store(self) -> FeatureStore:
        """A FeatureStore over the generated repo dir (writes the config first)."""
        from feast import FeatureStore

        self.write_config()
        return FeatureStore(repo_path=str(self.repo_path))

    # ---------------------------------------------------------------- registry
    def apply(self) -> dict[str, Any]:
        """Register the definitions; remove objects of this project that are no longer defined."""
        from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView

        from resources.feast_repo import build_objects

        store = self.store()
        objects = build_objects(self.lake.root, self.lake.s3_endpoint_url)
        wanted = {(type(o).__name__, o.name) for o in objects}
        stale = []
        if self.registry_file.exists():
            for existing in (
                *store.list_feature_services(),
                *store.list_on_demand_feature_views(),
                *store.list_feature_views(),
                *store.list_entities(),
            ):
                if (type(existing).__name__, existing.name) not in wanted and isinstance(
                    existing, (FeatureService, OnDemandFeatureView, FeatureView, Entity)
                ):
                    stale.append(existing)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")
            store.apply(objects, objects_to_delete=stale, partial=False)
        return self.describe(store) | {"removed": sorted(o.name for o in stale)}

    def describe(self, store: FeatureStore | None = None) -> dict[str, Any]:
        store = store or self.store()
        store.refresh_registry()
        views = {fv.name: [f.name for f in fv.features] for fv in store.list_feature_views()}
        odfvs = {v.name: [f.name for f in v.features] for v in store.list_on_demand_feature_views()}
        service = store.get_feature_service(FEATURE_SERVICE)
        return {
            "feature_views": views,
            "on_demand_feature_views": odfvs,
            "entities": sorted(e.name for e in store.list_entities() if e.name != "__dummy"),
            "feature_service": service.name,
            "service_features": [f"{p.name}:{f.name}" for p in service.feature_view_projections for f in p.features],
        }

    def is_applied(self) -> bool:
        if not self.registry_file.exists():
            return False
        try:
            self.store().get_feature_service(FEATURE_SERVICE, allow_cache=False)
            return True
        except Exception:  # noqa: BLE001 - feast raises various "not found" errors
            return False

    # ---------------------------------------------------------------- online store
    def materialize(self, start: dt.datetime, end: dt.datetime, views: list[str] | None = None) -> None:
        """Load the latest row per entity with event_timestamp in [start, end] (both inclusive)."""
        self.store().materialize(
            start_date=_utc(start), end_date=_utc(end), feature_views=list(views) if views else None
        )

    def materialize_incremental(self, end: dt.datetime, views: list[str] | None = None) -> None:
        self.store().materialize_incremental(end_date=_utc(end), feature_views=list(views) if views else None)

    def online_snapshot_as_of(self) -> dt.datetime | None:
        """The newest snapshot instant loaded into the online store (from the registry), or None."""
        store = self.store()
        ends = []
        for name in SNAPSHOT_VIEWS:
            fv = store.get_feature_view(name, allow_registry_cache=False)
            ends += [_utc(end) for _, end in fv.materialization_intervals]
        return max(ends) if ends else None

    def materialize_snapshot(self, as_of: dt.datetime, force: bool = False) -> dict[str, Any]:
        """Make the online store serve the snapshot stamped `as_of` (the end of its day).

        Loads the latest row per entity in [as_of - ttl, as_of]: exactly what the offline
        point-in-time join returns for a transaction just after `as_of`. A snapshot older than
        the one already online is skipped (online writes are unconditional upserts, so loading
        it would roll the store back), unless `force`.
        """
        as_of = _utc(as_of)
        current = self.online_snapshot_as_of()
        if current is not None and current > as_of and not force:
            return {"skipped": True, "online_as_of": current.isoformat()}
        self.materialize(as_of - SNAPSHOT_TTL, as_of, list(SNAPSHOT_VIEWS))
        return {"skipped": False, "online_as_of": as_of.isoformat()}

    @staticmethod
    def request_rows(rows: list[dict[str, Any]] | pd.DataFrame) -> dict[str, list]:
        """Entity keys + request fields as columns; derives event_epoch_s from event_ts when absent."""
        import pandas as pd

        df = pd.DataFrame(list(rows)) if not isinstance(rows, pd.DataFrame) else rows.copy()
        if "event_epoch_s" not in df.columns:
            if "event_ts" not in df.columns:
                raise ValueError("each row needs event_epoch_s or event_ts")
            df["event_epoch_s"] = epoch_seconds(df["event_ts"])
        missing = [c for c in (*ENTITY_KEYS, *REQUEST_FIELDS) if c not in df.columns]
        if missing:
            raise ValueError(f"rows lack {missing}")
        out: dict[str, list] = {k: [int(v) for v in df[k]] for k in ENTITY_KEYS}
        out["amount"] = [float(v) for v in df["amount"]]
        out["event_epoch_s"] = [float(v) for v in df["event_epoch_s"]]
        out["country"] = [None if pd.isna(v) else str(v) for v in df["country"]]
        return out

    def online_features(self, rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
        """Features of the service for incoming transactions, from the online store.

        Each row: user_id, merchant_id, amount, country and event_epoch_s (or event_ts).
        Returns one row per input row: entity keys, request fields and SERVED_FEATURES.
        """
        store = self.store()
        service = store.get_feature_service(FEATURE_SERVICE)
        request = self.request_rows(rows)
        out = store.get_online_features(features=service, entity_rows=request).to_df()
        for field in REQUEST_FIELDS:
            out[field] = request[field]
        return out[[*ENTITY_KEYS, *REQUEST_FIELDS, *SERVED_FEATURES]]

    # ---------------------------------------------------------------- training
    def training_frame(self, entity_df: pd.DataFrame) -> pd.DataFrame:
        """Point-in-time features for historical transactions, as the online path served them.

        entity_df: event_id, user_id, merchant_id, event_ts, amount, country, ... (other
        columns pass through; naive timestamps are UTC). Each row gets the latest snapshot
        stamped <= event_ts (within the ttl; none: nulls) and the on-demand features computed
        from its request fields. Rows come back in the input order, one per input row, with
        the input columns followed by SERVED_FEATURES.
        """
        import pandas as pd

        missing = [c for c in ("event_ts", *ENTITY_KEYS, "amount", "country") if c not in entity_df.columns]
        if missing:
            raise ValueError(f"entity_df lacks {missing}")
        clash = [c for c in (*SERVED_FEATURES, "event_timestamp") if c in entity_df.columns]
        if clash:
            raise ValueError(f"entity_df already has columns {clash}; drop them first")
        row_col, ts_col = "__driftline_row", "event_timestamp"
        # Only what the join needs goes through Feast (dask tokenizes every column it carries,
        # string columns dearly); the caller's columns are put back afterwards.
        df = pd.DataFrame({row_col: range(len(entity_df))})
        df[ts_col] = pd.to_datetime(entity_df["event_ts"].to_numpy(), utc=True).astype("datetime64[ns, UTC]")
        for key in ENTITY_KEYS:
            df[key] = entity_df[key].to_numpy().astype("int64")
        df["amount"] = entity_df["amount"].to_numpy().astype("float64")
        epoch = (
            entity_df["event_epoch_s"] if "event_epoch_s" in entity_df.columns else epoch_seconds(entity_df["event_ts"])
        )
        df["event_epoch_s"] = pd.Series(epoch).to_numpy().astype("float64")
        df["country"] = pd.array(
            [None if pd.isna(v) else str(v) for v in entity_df["country"]], dtype="string[pyarrow]"
        )
        # feast's dask join deduplicates on (join keys, timestamp), one view at a time: rows
        # sharing an instant must differ in their timestamp. Ties get 0..999 ns added (snapshots
        # are stamped on whole seconds, so the snapshot a row sees does not change); more than
        # 1000 rows at one instant go through in several rounds.
        tie = df.groupby(ts_col, sort=False).cumcount().to_numpy()
        df[ts_col] = df[ts_col] + pd.to_timedelta(tie % 1000, unit="ns")
        self._mask_rows_without_snapshot(df, row_col, ts_col)

        store = self.store()
        service = store.get_feature_service(FEATURE_SERVICE)
        parts = []
        with _single_partition_sources(), warnings.catch_warnings():
            # the tie-break nanoseconds are truncated in feast's source range pre-filter: harmless
            warnings.filterwarnings("ignore", message="Discarding nonzero nanoseconds")
            for round_no in sorted(set(tie // 1000)):
                part = df[tie // 1000 == round_no]
                parts.append(store.get_historical_features(entity_df=part, features=service).to_df())
        out = pd.concat(parts, ignore_index=True)
        if len(out) != len(df) or not out[row_col].is_unique:
            raise RuntimeError(f"point-in-time join returned {len(out)} rows for {len(df)} entity rows")
        out = out.sort_values(row_col, kind="stable").reset_index(drop=True)
        return pd.concat([entity_df.reset_index(drop=True), out[SERVED_FEATURES]], axis=1)

    def _mask_rows_without_snapshot(self, df: pd.DataFrame, row_col: str, ts_col: str) -> None:
        """Give rows without a snapshot in [t - ttl, t] a join key that matches nothing (in place).

        feast 0.67's dask join drops (instead of null-filling) a row whose entity has snapshot
        rows but none in its window, e.g. only later ones. A unique negative key yields the
        nulls; training_frame returns the caller's keys from entity_df.
        """
        import pandas as pd

        from resources.feast_repo.schema import MERCHANT_STATE_TABLE, USER_STATE_TABLE

        lake = self.lake
        for table, key in ((USER_STATE_TABLE, "user_id"), (MERCHANT_STATE_TABLE, "merchant_id")):
            files = lake.table_files(table)
            if files:
                snaps = lake.read_files(files, columns=[key, "event_timestamp"]).to_pandas()
                snaps = snaps.rename(columns={"event_timestamp": "__snap"})
                snaps["__snap"] = pd.to_datetime(snaps["__snap"], utc=True).astype("datetime64[ns, UTC]")
                snaps = snaps.sort_values("__snap")
                probe = df[[row_col, key, ts_col]].sort_values(ts_col)
                latest = pd.merge_asof(probe, snaps, left_on=ts_col, right_on="__snap", by=key, direction="backward")
                has = latest["__snap"].notna() & (latest["__snap"] >= latest[ts_col] - SNAPSHOT_TTL)
                keep_rows = set(latest[row_col][has])
            else:
                keep_rows = set()
            lost = ~df[row_col].isin(keep_rows)
            df.loc[lost, key] = -(df.loc[lost, row_col].astype("int64") + 1)
