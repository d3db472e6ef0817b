"""What the Dagster UI shows about every asset, applied in one place (definitions.py) rather than
in each asset module: column schemas (`dagster/column_schema`), owners, and code references.

Column schemas are derived, never written twice: the raw tables from their pandera contracts
(assets/contracts.py), the feature table, the feature-store snapshots and the training frame from
the feature spec (driftline/spec.py), the prediction log from its writer's schema
(seldon/predlog_file.py), and the monitoring tables from the Arrow schemas they are written with
(assets/monitoring.py). Every table asset has one (tests/test_definitions.py).

`prediction_log` is written outside Dagster: its code reference points at its writer.

Code references link each asset to its definition: local file links always, and links into the
repository's web UI when DRIFTLINE_GIT_URL is set (e.g. https://github.com/org/driftline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from assets.contracts import LABELS, TRANSACTIONS, Contract
from assets.monitoring import DRIFT_REPORT_SCHEMA, DRIFT_TABLE, PERFORMANCE_SCHEMA, PERFORMANCE_TABLE
from assets.training import TRAINING_TABLE
from driftline import settings, spec
from ml.features import LABEL
from monitoring.data import LOG_TABLE
from seldon import predlog_file

COLUMN_SCHEMA = "dagster/column_schema"
# contract kind -> the type the UI shows (what the lake's Parquet holds: contracts._to_storage)
_CONTRACT_TYPES = {"string": "string", "int": "int64", "float": "double", "timestamp": "timestamp", "bool": "boolean"}
# Feast type name (driftline.spec) -> the lake's type
_FEAST_TYPES = {"Int64": "int64", "Float64": "double", "String": "string"}

# Owners per asset group: the platform team owns the data plane, the ML team the model's life.
DATA_TEAM, ML_TEAM = "team:data-platform", "team:ml"
GROUP_OWNERS: dict[str, list[str]] = {
    "ingestion": [DATA_TEAM],
    "features": [DATA_TEAM],
    "feature_store": [DATA_TEAM],
    "training": [ML_TEAM],
    "deployment": [ML_TEAM],
    "monitoring": [ML_TEAM],
}

# Assets written outside Dagster (declared as AssetSpecs): the function that writes them.
EXTERNAL_WRITERS = {LOG_TABLE: predlog_file.write_file}
_LOG_COLUMNS = {
    "request_id": "the request (one per HTTP call); with `row`, the scored row",
    "row": "the row's position in the request",
    "ts": "when the request was answered (UTC)",
    "subject": "the caller (the token's subject)",
    "deployment": "the Seldon deployment that answered",
    "predictor": "the predictor that answered (main or canary)",
    "model_version": "the registered model version that scored the row",
    "features": "the request's row as sent (JSON object)",
    "score": "the fraud score",
    "latency_ms": "the request's time in the predictor",
    "model_features": "the feature row the model scored, before normalisation (JSON object), where the "
    "request is not it (raw transactions: the row the online lookup completed); else null",
}


def contract_schema(contract: Contract) -> dg.TableSchema:
    """A raw table's columns as its pandera contract declares them (nullable only if optional)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name,
                _CONTRACT_TYPES[kind],
                description=f"{contract.name}.{name} ({kind})",
                constraints=dg.TableColumnConstraints(nullable=name in contract.optional, unique=name == "event_id"),
            )
            for name, kind in contract.columns.items()
        ]
    )


def feature_table_schema() -> dg.TableSchema:
    """`transaction_features`: the spec's feature table, its types and meanings."""
    return dg.TableSchema(columns=[dg.TableColumn(c.name, c.type, description=c.meaning) for c in spec.FEATURE_TABLE])


def snapshot_schema(key: str, features: Mapping[str, str]) -> dg.TableSchema:
    """A daily state snapshot: the entity key, the snapshot instant, the features Feast serves."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(key, "int64", description="entity key"),
            dg.TableColumn(spec.SNAPSHOT_TS, "timestamp", description="the snapshot instant T (end of the day, UTC)"),
            *(
                dg.TableColumn(name, _FEAST_TYPES[t], description="null in a tombstone row")
                for name, t in features.items()
            ),
        ]
    )


def arrow_type_name(arrow_type) -> str:
    """The type the UI shows for an Arrow type (the names the contracts' columns use)."""
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return str(arrow_type)  # int64, int32, double, float, string


def arrow_schema(schema, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """A table written with an Arrow schema: its columns, in order."""
    descriptions = descriptions or {}
    return dg.TableSchema(
        columns=[dg.TableColumn(f.name, arrow_type_name(f.type), description=descriptions.get(f.name)) for f in schema]
    )


def training_set_schema() -> dg.TableSchema:
    """`training_set` (fraud_model_v1's frame): the request columns, the features Feast joined
    point-in-time in service order, the label. An integer feature a row got no snapshot for
    (null) makes its column double in the file."""
    views = (
        (spec.USER_STATE_FEATURES, "user_state snapshot"),
        (spec.MERCHANT_STATE_FEATURES, "merchant_state snapshot"),
        (spec.ON_DEMAND_FEATURES, "computed per request (on-demand view)"),
    )
    served = {name: (t, origin) for features, origin in views for name, t in features.items()}
    return dg.TableSchema(
        columns=[
            *(dg.TableColumn(n, spec.FEATURE_COLUMNS[n], description="request field") for n in spec.REQUEST_COLUMNS),
            *(
                dg.TableColumn(
                    n,
                    _FEAST_TYPES[served[n][0]],
                    description=f"{served[n][1]}, as Feast served it at the event's time; null when none"
                    + (" (the file's column is then double)" if served[n][0] == "Int64" else ""),
                )
                for n in spec.SERVED_FEATURES
            ),
            dg.TableColumn(LABEL, "int8", description="1 when a chargeback was known before the cutoff"),
        ]
    )


def prediction_log_schema() -> dg.TableSchema:
    """The prediction log, as its writer (seldon/predlog_file.py) types it."""
    import pyarrow as pa

    return arrow_schema(pa.schema(list(predlog_file.arrow_types().items())), _LOG_COLUMNS)


def column_schemas() -> dict[str, dg.TableSchema]:
    """Asset key -> its column schema, for every table asset."""
    return {
        TRANSACTIONS.name: contract_schema(TRANSACTIONS),
        LABELS.name: contract_schema(LABELS),
        "transaction_features": feature_table_schema(),
        spec.USER_STATE_TABLE: snapshot_schema("user_id", spec.USER_STATE_FEATURES),
        spec.MERCHANT_STATE_TABLE: snapshot_schema("merchant_id", spec.MERCHANT_STATE_FEATURES),
        TRAINING_TABLE: training_set_schema(),
        LOG_TABLE: prediction_log_schema(),
        DRIFT_TABLE: arrow_schema(DRIFT_REPORT_SCHEMA),
        PERFORMANCE_TABLE: arrow_schema(PERFORMANCE_SCHEMA),
    }


def _writer_reference(asset_spec: dg.AssetSpec) -> dg.AssetSpec:
    """An asset written outside Dagster: a code reference to the function that writes it."""
    writer = EXTERNAL_WRITERS.get(asset_spec.key.to_user_string())
    if writer is None or "dagster/code_references" in asset_spec.metadata:
        return asset_spec
    ref = dg.LocalFileCodeReference(file_path=writer.__code__.co_filename, line_number=writer.__code__.co_firstlineno)
    return asset_spec.merge_attributes(
        metadata={"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=[ref])}
    )


def _annotate(asset_spec: dg.AssetSpec, schemas: dict[str, dg.TableSchema]) -> dg.AssetSpec:
    key = asset_spec.key.to_user_string()
    asset_spec = _writer_reference(asset_spec)
    if key in schemas:
        asset_spec = asset_spec.merge_attributes(metadata={COLUMN_SCHEMA: dg.MetadataValue.table_schema(schemas[key])})
    owners = GROUP_OWNERS.get(asset_spec.group_name or "", [])
    new = [o for o in owners if o not in asset_spec.owners]
    return asset_spec.merge_attributes(owners=new) if new else asset_spec


def apply(assets: Sequence, git_url: str | None = None, git_branch: str | None = None) -> list:
    """`assets` with column schemas, owners and code references (into the repository's web UI
    too when `git_url`, default DRIFTLINE_GIT_URL, is set)."""
    schemas = column_schemas()
    annotated = dg.with_source_code_references(list(dg.map_asset_specs(lambda s: _annotate(s, schemas), assets)))
    git_url = git_url or settings.get("DRIFTLINE_GIT_URL")
    if git_url:
        annotated = dg.link_code_references_to_git(
            annotated,
            git_url=git_url.rstrip("/"),
            git_branch=git_branch or settings.get("DRIFTLINE_GIT_BRANCH") or "main",
            file_path_mapping=dg.AnchorBasedFilePathMapping(
                local_file_anchor=Path(__file__).resolve().parents[1], file_anchor_path_in_repository=""
            ),
        )
    return list(annotated)
