"""Raw event assets: fetch a day from the event source, validate it, keep valid rows in the
lake and every rejected row in a quarantine table with its reason."""

import dagster as dg
import pyarrow as pa

from deployment.k8s_config import ASSET_OP_TAGS
from resources.event_source import EventSource
from resources.lake import Lake
from resources.quality import DataQuality
from resources.warehouse import Warehouse

from .contracts import LABELS, TRANSACTIONS, Contract, split_valid
from .partitions import daily_partitions, parse_day

QUARANTINE_SCHEMA = pa.schema([("row_number", pa.int64()), ("reason", pa.string()), ("record", pa.string())])
_ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "timestamp": pa.timestamp("us"),
    "bool": pa.bool_(),
}


def storage_schema(contract: Contract) -> pa.Schema:
    return pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in contract.columns.items()])


def _quarantine_check(contract: Contract) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "quarantine_share",
        asset=contract.name,
        blocking=True,
        description="Fails when the share of quarantined rows exceeds DataQuality.max_quarantine_share.",
    )


def ingest(
    context,
    contract: Contract,
    stream: str,
    event_source: EventSource,
    lake: Lake,
    warehouse: Warehouse,
    quality: DataQuality,
) -> dg.MaterializeResult:
    day = parse_day(context.partition_key)
    raw = event_source.read(stream, day)
    split = split_valid(raw, contract, day)
    valid = pa.Table.from_pandas(split.valid, schema=storage_schema(contract), preserve_index=False)
    quarantine = pa.Table.from_pandas(split.quarantine, schema=QUARANTINE_SCHEMA, preserve_index=False)
    path = lake.write_partition(contract.name, day.isoformat(), valid)
    lake.write_partition(f"quarantine_{contract.name}", day.isoformat(), quarantine)
    refreshed = warehouse.refresh_views(lake)
    counts = split.counts
    share = counts["quarantined_rows"] / counts["input_rows"] if counts["input_rows"] else 0.0
    reasons = split.reason_counts()
    context.log.info(f"{contract.name} {day}: {counts} from {event_source.describe()}")
    passed = share <= quality.max_quarantine_share
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "quarantined_share": dg.MetadataValue.float(round(share, 6)),
            "quarantine_reasons": dg.MetadataValue.json(reasons),
            "source": event_source.describe(),
            "path": dg.MetadataValue.path(str(path)),
            "views_refreshed": dg.MetadataValue.json(refreshed),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="quarantine_share",
                passed=passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "quarantined_share": share,
                    "max_quarantine_share": quality.max_quarantine_share,
                    "quarantined_rows": counts["quarantined_rows"],
                    "reasons": dg.MetadataValue.json(reasons),
                },
                description=None
                if passed
                else (f"{share:.2%} of rows quarantined (limit {quality.max_quarantine_share:.2%}): {reasons}"),
            )
        ],
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name="ingestion",
    check_specs=[_quarantine_check(TRANSACTIONS)],
    kinds={"parquet", "pandera"},
    op_tags=ASSET_OP_TAGS["raw_transactions"],
)
def raw_transactions(
    context: dg.AssetExecutionContext, event_source: EventSource, lake: Lake, warehouse: Warehouse, quality: DataQuality
) -> dg.MaterializeResult:
    """Card transactions of one day, validated; rejected rows go to `quarantine_raw_transactions`."""
    return ingest(context, TRANSACTIONS, "transactions", event_source, lake, warehouse, quality)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="ingestion",
    check_specs=[_quarantine_check(LABELS)],
    kinds={"parquet", "pandera"},
    op_tags=ASSET_OP_TAGS["raw_labels"],
)
def raw_labels(
    context: dg.AssetExecutionContext, event_source: EventSource, lake: Lake, warehouse: Warehouse, quality: DataQuality
) -> dg.MaterializeResult:
    """Chargebacks that arrived on one day (partitioned by `label_ts`), for earlier transactions."""
    return ingest(context, LABELS, "labels", event_source, lake, warehouse, quality)
