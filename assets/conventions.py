"""What the Dagster UI shows about every asset, applied in one place (definitions.py) rather than
in each asset module: column schemas (`dagster/column_schema`), owners, and code references.

Column schemas are derived, never written twice: the raw tables from their pandera contracts
(assets/contracts.py), the feature table and the feature-store snapshots from the feature spec
(driftline/spec.py). Tables whose columns have no declared home yet are named in
`TABLES_WITHOUT_SCHEMA`, with where their columns come from, so the gap is visible.

Code references link each asset to its definition: local file links always, and links into the
repository's web UI when DRIFTLINE_GIT_URL is set (e.g. https://github.com/org/driftline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from assets.contracts import LABELS, TRANSACTIONS, Contract
from driftline import settings, spec

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

# Lake tables whose columns are declared nowhere yet (built from code paths that change):
# no column schema until they get a declared home.
TABLES_WITHOUT_SCHEMA: dict[str, str] = {
    "training_set": "Feast's point-in-time join (resources/feast_store.py) plus the label; per feature service",
    "prediction_log": "the ingress's log writer (seldon/predlog_file.py)",
    "drift_report": "monitoring/data.py report_rows",
    "model_performance": "monitoring/data.py performance_rows",
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


def column_schemas() -> dict[str, dg.TableSchema]:
    """Asset key -> its column schema, for every table with a declared contract."""
    return {
        TRANSACTIONS.name: contract_schema(TRANSACTIONS),
        LABELS.name: contract_schema(LABELS),
        "transaction_features": feature_table_schema(),
        spec.USER_STATE_TABLE: snapshot_schema("user_id", spec.USER_STATE_FEATURES),
        spec.MERCHANT_STATE_TABLE: snapshot_schema("merchant_id", spec.MERCHANT_STATE_FEATURES),
    }


def _annotate(asset_spec: dg.AssetSpec, schemas: dict[str, dg.TableSchema]) -> dg.AssetSpec:
    key = asset_spec.key.to_user_string()
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
