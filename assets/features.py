"""`transaction_features`: point-in-time features per valid transaction, for analysts and as
the source of the per-entity state that Feast serves.

A backfill of many days runs as one pass (single-run backfill policy): the 30-day history is
read once for the whole range instead of once per day.
"""

import datetime as dt

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deployment.k8s_config import ASSET_OP_TAGS
from driftline import spec
from resources.feature_engine import FeatureEngine
from resources.lake import Lake
from resources.warehouse import Warehouse

from .partitions import LOOKBACK_DAYS, daily_partitions

_TICKS_PER_S = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
_lookback = dg.TimeWindowPartitionMapping(
    start_offset=-LOOKBACK_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
)


def split_by_day(table: pa.Table, start: dt.datetime, end: dt.datetime) -> dict[str, pa.Table]:
    """One table per day of [start, end); days without rows get an empty table with the schema.
    Rows in time order (the engines' usual output) are sliced without copying."""
    ts = table.column("event_ts")
    per_day = 86_400 * _TICKS_PER_S[ts.type.unit]
    day_index = pc.cast(ts, pa.int64()).to_numpy() // per_day if table.num_rows else np.zeros(0, dtype=np.int64)
    in_order = bool(np.all(day_index[1:] >= day_index[:-1]))
    if not in_order:
        order = np.argsort(day_index, kind="stable")
        table, day_index = table.take(pa.array(order)), day_index[order]
    out, day = {}, start
    while day < end:
        ordinal = int((day - dt.datetime(1970, 1, 1)).days)
        lo, hi = np.searchsorted(day_index, [ordinal, ordinal + 1])
        out[day.date().isoformat()] = table.slice(int(lo), int(hi - lo))
        day += dt.timedelta(days=1)
    return out


@dg.asset(
    partitions_def=daily_partitions,
    group_name="features",
    deps=[
        dg.AssetDep("raw_transactions", partition_mapping=_lookback),
        dg.AssetDep("raw_labels", partition_mapping=_lookback),
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"duckdb", "parquet"},
    automation_condition=dg.AutomationCondition.eager(),
    op_tags=ASSET_OP_TAGS["transaction_features"],
)
def transaction_features(
    context: dg.AssetExecutionContext, lake: Lake, feature_engine: FeatureEngine, warehouse: Warehouse
) -> dg.MaterializeResult:
    """Per-transaction windows over the user's and merchant's past (docs/features.md)."""
    window = context.partition_time_window
    start, end = window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)
    table = feature_engine.compute(lake, start, end)
    parts = split_by_day(table, start, end)
    lake.write_partitions("transaction_features", parts)
    rows_per_day = {day: part.num_rows for day, part in parts.items()}
    warehouse.refresh_views(lake)
    context.log.info(f"transaction_features {start:%Y-%m-%d}..{end:%Y-%m-%d}: {table.num_rows} rows")
    new_merchant = table.column(spec.IS_NEW_MERCHANT).to_numpy()
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(table.num_rows),
            "rows_per_day": dg.MetadataValue.json(rows_per_day),
            "engine": feature_engine.engine,
            "new_merchant_share": float(np.mean(new_merchant)) if len(new_merchant) else 0.0,
            "dagster/row_count": dg.MetadataValue.int(table.num_rows),
        }
    )
