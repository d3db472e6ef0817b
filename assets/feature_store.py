"""Feature store assets: daily state snapshots, the Feast registry and the online store.

Online, Feast serves per-entity state as of the last materialization. So the offline
sources are daily snapshots stamped at the materialization instant T = end of day D
(D+1 00:00 UTC), and the point-in-time training join returns, for a transaction at t, the
latest snapshot stamped <= t: exactly what the online store held at t. See docs/feast.md.

Snapshots also carry a "tombstone" row (every feature null) for each entity whose last
activity just left the lookback (active in [T-31d, T), not in [T-30d, T), with the lookback
of driftline.spec; windows and names come from there too). Online
writes are upserts, so without it the online store would keep serving the entity's stale
state while the offline join returns nothing: the tombstone makes both say "no history".
"""

import datetime as dt
import warnings

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from assets.partitions import LOOKBACK_DAYS, daily_partitions, day_bounds, days_back, parse_day
from deployment.k8s_config import ASSET_OP_TAGS
from driftline import spec
from driftline.spec import (
    MERCHANT_STATE_FEATURES,
    MERCHANT_STATE_TABLE,
    SNAPSHOT_TS,
    USER_STATE_FEATURES,
    USER_STATE_TABLE,
)
from resources.feast_store import FeastStore
from resources.lake import Lake

TRANSACTION_FEATURES_TABLE = "transaction_features"
RAW_LABELS_TABLE = "raw_labels"
GROUP = "feature_store"

_ARROW = {"Int64": pa.int64(), "Float64": pa.float64(), "String": pa.string()}
USER_STATE_SCHEMA = pa.schema(
    [("user_id", pa.int64()), (SNAPSHOT_TS, pa.timestamp("us", tz="UTC"))]
    + [(n, _ARROW[t]) for n, t in USER_STATE_FEATURES.items()]
)
MERCHANT_STATE_SCHEMA = pa.schema(
    [("merchant_id", pa.int64()), (SNAPSHOT_TS, pa.timestamp("us", tz="UTC"))]
    + [(n, _ARROW[t]) for n, t in MERCHANT_STATE_FEATURES.items()]
)
# Null only in tombstone rows: tells active entities from tombstoned ones.
_FIRST_USER_FEATURE = next(iter(USER_STATE_FEATURES))


def _connect(lake: Lake | None = None):
    """An in-memory DuckDB connection in UTC that reads `lake`'s URLs (object-store lakes too)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if lake is not None:
        lake.prepare_duckdb(con)
    return con


def _files_sql(files: list[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def _ts_sql(ts: dt.datetime) -> str:
    return f"TIMESTAMP '{ts:%Y-%m-%d %H:%M:%S}'"


# Rows a snapshot reads: the lookback plus the day before it, whose entities get tombstones.
_SNAPSHOT_READS = f"{spec.LOOKBACK.sql} - INTERVAL 1 DAY"


def _user_window_aggregates(t: str) -> str:
    """count and ordered sum per user window of the snapshot (ordered sums: a re-run yields
    bit-identical values)."""
    lines = []
    for w in spec.STATE_USER_WINDOWS:
        since = f"FILTER (WHERE ts >= {t} - {w.sql})"
        lines += [
            f"count(*) {since} AS {spec.user_txn_count(w)}",
            f"coalesce(sum(amount ORDER BY ts, event_id) {since}, 0.0) AS {spec.user_amount_sum(w)}",
        ]
    return ",\n               ".join(lines)


def compute_user_state(transaction_files: list[str], as_of: dt.datetime, lake: Lake | None = None) -> pa.Table:
    """One row per user with a transaction in [as_of - lookback - 1d, as_of), stamped `as_of`
    (naive UTC).

    Features use [as_of - lookback, as_of); users active only on the day before that window get a
    tombstone row (all features null). `lake`: the lake the files are in, when it is remote.
    """
    if not transaction_files:
        return USER_STATE_SCHEMA.empty_table()
    t = _ts_sql(as_of)
    sql = f"""
    WITH tx AS (
        SELECT user_id::BIGINT AS user_id, merchant_id::BIGINT AS merchant_id, amount::DOUBLE AS amount,
               country::VARCHAR AS country, event_ts::TIMESTAMP AS ts, event_id::VARCHAR AS event_id
        FROM read_parquet({_files_sql(transaction_files)}, union_by_name = true, hive_partitioning = false)
        WHERE event_ts::TIMESTAMP < {t} AND event_ts::TIMESTAMP >= {t} - {_SNAPSHOT_READS}
    ),
    agg AS (  -- ordered float sums: a re-run yields bit-identical values
        SELECT user_id,
               {_user_window_aggregates(t)},
               avg(amount ORDER BY ts, event_id) FILTER (WHERE ts >= {t} - {spec.USER_MEAN.sql})
                   AS {spec.USER_MEAN_AMOUNT},
               count(DISTINCT merchant_id) FILTER (WHERE ts >= {t} - {spec.STATE_DISTINCT_MERCHANTS.sql})
                   AS {spec.USER_STATE_DISTINCT_MERCHANTS},
               epoch_us(max(ts)) / 1e6 AS {spec.USER_LAST_TXN_EPOCH_S},
               arg_max(country, (ts, event_id)) AS {spec.USER_LAST_COUNTRY}
        FROM tx WHERE ts >= {t} - {spec.LOOKBACK.sql}
        GROUP BY user_id
    )
    SELECT u.user_id, {t} AS {SNAPSHOT_TS}, {", ".join(f"agg.{c}" for c in USER_STATE_FEATURES)}
    FROM (SELECT DISTINCT user_id FROM tx) u LEFT JOIN agg USING (user_id)
    ORDER BY u.user_id
    """
    with _connect(lake) as con:
        table = con.sql(sql).to_arrow_table()
    return table.cast(USER_STATE_SCHEMA)


def compute_merchant_state(
    transaction_files: list[str], label_files: list[str], as_of: dt.datetime, lake: Lake | None = None
) -> pa.Table:
    """One row per merchant with a transaction in [as_of - lookback - 1d, as_of), stamped `as_of`.

    Chargebacks count labels with label_ts < as_of for transactions with event_ts >= as_of - the
    merchant window.
    """
    if not transaction_files:
        return MERCHANT_STATE_SCHEMA.empty_table()
    t = _ts_sql(as_of)
    if label_files:
        labels = f"""
        SELECT merchant_id::BIGINT AS merchant_id, count(DISTINCT event_id) AS cb
        FROM read_parquet({_files_sql(label_files)}, union_by_name = true, hive_partitioning = false)
        WHERE coalesce(is_fraud, true) AND label_ts::TIMESTAMP < {t}
          AND event_ts::TIMESTAMP >= {t} - {spec.MERCHANT.sql} AND event_ts::TIMESTAMP < {t}
        GROUP BY 1"""
    else:
        labels = "SELECT NULL::BIGINT AS merchant_id, 0::BIGINT AS cb WHERE false"
    sql = f"""
    WITH tx AS (
        SELECT merchant_id::BIGINT AS merchant_id, event_ts::TIMESTAMP AS ts
        FROM read_parquet({_files_sql(transaction_files)}, union_by_name = true, hive_partitioning = false)
        WHERE event_ts::TIMESTAMP < {t} AND event_ts::TIMESTAMP >= {t} - {_SNAPSHOT_READS}
    ),
    txn AS (SELECT merchant_id, count(*) AS n FROM tx WHERE ts >= {t} - {spec.MERCHANT.sql} GROUP BY 1),
    cb AS ({labels})
    SELECT m.merchant_id, {t} AS {SNAPSHOT_TS},
           txn.n AS {spec.MERCHANT_TXN_COUNT},
           CASE WHEN txn.n IS NULL THEN NULL ELSE coalesce(cb.cb, 0) END AS {spec.MERCHANT_CB_COUNT},
           CASE WHEN txn.n IS NULL THEN NULL ELSE coalesce(cb.cb, 0)::DOUBLE / greatest(txn.n, 1) END
               AS {spec.MERCHANT_CB_RATE}
    FROM (SELECT DISTINCT merchant_id FROM tx) m
    LEFT JOIN txn USING (merchant_id) LEFT JOIN cb USING (merchant_id)
    ORDER BY m.merchant_id
    """
    with _connect(lake) as con:
        table = con.sql(sql).to_arrow_table()
    return table.cast(MERCHANT_STATE_SCHEMA)


def snapshot_instant(partition_key: str) -> dt.datetime:
    """T for partition D: the end of day D (naive UTC)."""
    return day_bounds(parse_day(partition_key))[1]


def _upstream_files(lake: Lake, table: str, day: dt.date, n_back: int, context: dg.AssetExecutionContext) -> list[str]:
    dates = days_back(day, n_back)
    if not lake.has_partition(table, day.isoformat()):
        raise dg.Failure(f"{table} has no partition {day.isoformat()} (materialize it first)")
    files = lake.existing_partition_files(table, dates)
    if len(files) < len(dates):
        context.log.info(f"{table}: {len(files)} of {len(dates)} partitions exist for {dates[0]}..{dates[-1]}")
    return files


def _snapshot_metadata(table: pa.Table, key: str, path, as_of: dt.datetime, first_feature: str) -> dict:
    tombstones = table.column(first_feature).null_count
    return {
        "path": dg.MetadataValue.path(str(path)),
        "as_of": dg.MetadataValue.text(as_of.isoformat() + "Z"),
        "dagster/row_count": dg.MetadataValue.int(table.num_rows),
        f"active_{key}s": dg.MetadataValue.int(table.num_rows - tombstones),
        f"tombstoned_{key}s": dg.MetadataValue.int(tombstones),
    }


def _lookback(days: int) -> dg.TimeWindowPartitionMapping:
    """Partitions D-days..D; days before the first partition simply do not exist yet."""
    with warnings.catch_warnings():  # allow_nonexistent_upstream_partitions is beta in 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.TimeWindowPartitionMapping(
            start_offset=-days, end_offset=0, allow_nonexistent_upstream_partitions=True
        )


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    deps=[dg.AssetDep(TRANSACTION_FEATURES_TABLE, partition_mapping=_lookback(LOOKBACK_DAYS))],
    kinds={"duckdb", "parquet"},
    description="Per-user state as of the end of each day (Feast offline source of user_state).",
    op_tags=ASSET_OP_TAGS["user_state"],
    automation_condition=dg.AutomationCondition.eager(),
)
def user_state(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
    day = parse_day(context.partition_key)
    as_of = snapshot_instant(context.partition_key)
    files = _upstream_files(lake, TRANSACTION_FEATURES_TABLE, day, LOOKBACK_DAYS, context)
    table = compute_user_state(files, as_of, lake)
    path = lake.write_partition(USER_STATE_TABLE, day.isoformat(), table)
    return dg.MaterializeResult(metadata=_snapshot_metadata(table, "user", path, as_of, _FIRST_USER_FEATURE))


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    deps=[
        dg.AssetDep(TRANSACTION_FEATURES_TABLE, partition_mapping=_lookback(LOOKBACK_DAYS)),
        dg.AssetDep(RAW_LABELS_TABLE, partition_mapping=_lookback(LOOKBACK_DAYS - 1)),
    ],
    kinds={"duckdb", "parquet"},
    description="Per-merchant volume and chargebacks as of the end of each day (Feast source of merchant_state).",
    op_tags=ASSET_OP_TAGS["merchant_state"],
    automation_condition=dg.AutomationCondition.eager(),
)
def merchant_state(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
    day = parse_day(context.partition_key)
    as_of = snapshot_instant(context.partition_key)
    tx_files = _upstream_files(lake, TRANSACTION_FEATURES_TABLE, day, LOOKBACK_DAYS, context)
    # Labels with label_ts in the lookback's days: their transactions are inside the merchant window.
    label_files = lake.existing_partition_files(RAW_LABELS_TABLE, days_back(day, LOOKBACK_DAYS - 1))
    table = compute_merchant_state(tx_files, label_files, as_of, lake)
    path = lake.write_partition(MERCHANT_STATE_TABLE, day.isoformat(), table)
    meta = _snapshot_metadata(table, "merchant", path, as_of, spec.MERCHANT_TXN_COUNT)
    meta[f"chargebacks_{spec.MERCHANT.suffix}"] = dg.MetadataValue.int(
        int(pc.sum(table.column(spec.MERCHANT_CB_COUNT)).as_py() or 0)  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute defines its kernels at import time
    )
    meta["label_partitions"] = dg.MetadataValue.int(len(label_files))
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name=GROUP,
    deps=[user_state, merchant_state],
    kinds={"feast"},
    description="The Feast registry: entities, snapshot views, on-demand view and the fraud_model_v1 service.",
    op_tags=ASSET_OP_TAGS["feast_registry"],
    automation_condition=dg.AutomationCondition.on_missing(),
)
def feast_registry(feast: FeastStore) -> dg.MaterializeResult:
    info = feast.apply()
    return dg.MaterializeResult(
        metadata={
            "repo_dir": dg.MetadataValue.path(str(feast.repo_path)),
            "registry": dg.MetadataValue.path(str(feast.registry_file)),
            "feature_views": dg.MetadataValue.json(info["feature_views"]),
            "on_demand_feature_views": dg.MetadataValue.json(info["on_demand_feature_views"]),
            "entities": dg.MetadataValue.json(info["entities"]),
            "feature_service": dg.MetadataValue.text(info["feature_service"]),
            "features": dg.MetadataValue.json(info["service_features"]),
            "n_features": dg.MetadataValue.int(len(info["service_features"])),
            "removed": dg.MetadataValue.json(info["removed"]),
        }
    )


class OnlineFeaturesConfig(dg.Config):
    # Load this day's snapshot even when a newer one is online (a deliberate rollback).
    force: bool = False


@dg.asset(
    partitions_def=daily_partitions,
    group_name=GROUP,
    deps=[user_state, merchant_state, feast_registry],
    kinds={"feast"},
    pool="feast_online_store",
    description="Loads day D's snapshot (stamped end of D) into the Feast online store.",
    op_tags=ASSET_OP_TAGS["online_features"],
    automation_condition=dg.AutomationCondition.eager(),
)
def online_features(
    context: dg.AssetExecutionContext, config: OnlineFeaturesConfig, lake: Lake, feast: FeastStore
) -> dg.MaterializeResult:
    key = context.partition_key
    as_of = snapshot_instant(key)
    for table in (USER_STATE_TABLE, MERCHANT_STATE_TABLE):
        if not lake.has_partition(table, key):
            raise dg.Failure(f"{table} has no partition {key}; materialize it first")
    if not feast.is_applied():
        context.log.info("Feast registry missing: applying the definitions")
        feast.apply()
    result = feast.materialize_snapshot(as_of, force=config.force)
    if result["skipped"]:
        context.log.warning(
            f"online store already serves a newer snapshot ({result['online_as_of']}); left it unchanged"
        )
    users = lake.read_partition(USER_STATE_TABLE, key)
    merchants = lake.read_partition(MERCHANT_STATE_TABLE, key)
    return dg.MaterializeResult(
        metadata={
            "as_of": dg.MetadataValue.text(as_of.isoformat() + "Z"),
            "skipped": dg.MetadataValue.bool(result["skipped"]),
            "online_as_of": dg.MetadataValue.text(result["online_as_of"]),
            "users": dg.MetadataValue.int(users.num_rows),
            "active_users": dg.MetadataValue.int(users.num_rows - users.column(_FIRST_USER_FEATURE).null_count),
            "merchants": dg.MetadataValue.int(merchants.num_rows),
            "active_merchants": dg.MetadataValue.int(
                merchants.num_rows - merchants.column(spec.MERCHANT_TXN_COUNT).null_count
            ),
            "online_store": dg.MetadataValue.text(feast.online_store_type),
        }
    )


FEATURE_STORE_ASSETS = [user_state, merchant_state, feast_registry, online_features]
