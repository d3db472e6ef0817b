"""The code location loads, validates, and stays fast to import (no heavy library at module level)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["feast", "lightning", "torch", "evidently", "mlflow", "pyspark", "pandera", "duckdb", "polars"]


def test_definitions_validate_with_the_dagster_cli(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path))
    cli = Path(sys.executable).with_name("dagster")
    out = subprocess.run(
        [str(cli), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Validation successful" in out.stdout + out.stderr


def test_importing_definitions_pulls_in_no_heavy_library():
    code = (
        "import json, sys, time; t = time.perf_counter(); import definitions; "
        "print(json.dumps({'s': time.perf_counter() - t, 'mods': sorted(sys.modules)}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = {m.split(".")[0] for m in report["mods"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_lineage_has_the_architecture_names():
    import definitions

    keys = {k.to_user_string() for k in definitions.defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"raw_transactions", "raw_labels", "transaction_features"} <= keys


def test_one_canary_policy_for_the_sensor_and_the_deployment_asset():
    """definitions.py sets the rollout policy once; the seldon_deployment asset (first step,
    recorded steps) and canary_sensor (next step) both read it from the seldon_target resource."""
    import definitions
    from assets.deployment import DeploymentConfig

    target = definitions.RESOURCES["seldon_target"]
    assert target.canary == definitions.CANARY_POLICY
    assert DeploymentConfig().steps is None  # no second copy of the steps: the target's policy applies


# ----------------------------------------------------------------- Dagster UI conventions


def _specs() -> dict:
    import dagster as dg

    import definitions

    assets = [a for a in definitions.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    return {s.key.to_user_string(): s for a in assets for s in a.specs}


def _columns(spec) -> list[tuple[str, str]]:
    schema = spec.metadata["dagster/column_schema"].schema
    return [(c.name, c.type) for c in schema.columns]


def test_raw_tables_show_the_columns_of_their_contract_and_of_the_lake_files():
    from assets.contracts import LABELS, TRANSACTIONS
    from assets.conventions import _CONTRACT_TYPES
    from assets.ingestion import storage_schema

    specs = _specs()
    for contract in (TRANSACTIONS, LABELS):
        columns = _columns(specs[contract.name])
        assert columns == [(n, _CONTRACT_TYPES[k]) for n, k in contract.columns.items()]
        assert [n for n, _ in columns] == storage_schema(contract).names  # what the Parquet files hold
        schema = specs[contract.name].metadata["dagster/column_schema"].schema
        nullable = {c.name for c in schema.columns if c.constraints.nullable}
        assert nullable == set(contract.optional)
        assert [c.name for c in schema.columns if c.constraints.unique] == ["event_id"]


def test_feature_tables_show_the_columns_of_the_feature_spec():
    from assets.feature_store import MERCHANT_STATE_SCHEMA, USER_STATE_SCHEMA
    from driftline import spec

    specs = _specs()
    assert _columns(specs["transaction_features"]) == list(spec.FEATURE_COLUMNS.items())
    for key, arrow in (("user_state", USER_STATE_SCHEMA), ("merchant_state", MERCHANT_STATE_SCHEMA)):
        assert [n for n, _ in _columns(specs[key])] == arrow.names  # the snapshot's Arrow schema
        types = dict(_columns(specs[key]))
        assert all(types[f] in ("int64", "double", "string") for f in arrow.names if f != spec.SNAPSHOT_TS)


def _all_specs() -> dict:
    """Every asset of the asset modules, the ones written outside Dagster (AssetSpecs) included,
    as conventions.apply annotates them."""
    import dagster as dg

    import definitions
    from assets import conventions

    loaded = conventions.apply(dg.load_assets_from_modules(definitions.ASSET_MODULES, include_specs=True))
    specs = [s for a in loaded for s in (a.specs if isinstance(a, dg.AssetsDefinition) else [a])]
    return {s.key.to_user_string(): s for s in specs}


def test_every_table_asset_has_a_column_schema():
    from assets.conventions import column_schemas

    specs = _all_specs()
    tables = {k for k, s in specs.items() if "parquet" in s.kinds}
    assert {"training_set", "prediction_log", "drift_report", "model_performance"} <= tables
    assert {k for k in tables if "dagster/column_schema" not in specs[k].metadata} == set()
    assert set(column_schemas()) == tables  # no schema for a table that is not an asset
    defs_specs = _specs()  # the code location's own: every table it holds carries its schema
    assert all("dagster/column_schema" in s.metadata for k, s in defs_specs.items() if "parquet" in s.kinds)


def test_training_set_shows_the_columns_of_its_frame():
    from driftline import spec
    from ml.dataset import REQUEST_COLUMNS
    from ml.features import LABEL

    names = [n for n, _ in _columns(_specs()["training_set"])]
    assert names == [*REQUEST_COLUMNS, *spec.SERVED_FEATURES, LABEL]  # service_frame's v1 order


def test_prediction_log_shows_the_columns_its_writer_writes():
    from seldon import predlog_file

    assert [n for n, _ in _columns(_all_specs()["prediction_log"])] == list(predlog_file.COLUMNS)


def test_every_asset_has_owners_and_a_code_reference_to_its_definition():
    from assets.conventions import EXTERNAL_WRITERS

    specs = _all_specs()
    assert specs
    for key, spec in specs.items():
        assert spec.owners and all(o.startswith("team:") for o in spec.owners), key
        refs = spec.metadata["dagster/code_references"].code_references
        assert refs, key
        path, line = Path(refs[0].file_path), refs[0].line_number
        assert path.is_relative_to(ROOT) and path.exists(), (key, path)
        after = path.read_text().splitlines()[line - 1 :]  # the decorator, then the function it decorates
        first_def = next(text.strip() for text in after if text.lstrip().startswith("def "))
        name = EXTERNAL_WRITERS[key].__name__ if key in EXTERNAL_WRITERS else key  # written outside Dagster: its writer
        assert first_def.startswith(f"def {name}("), (key, path, line, first_def)


def test_code_references_link_into_the_repository_when_a_git_url_is_set():
    import dagster as dg

    from assets import conventions, ingestion

    assets = conventions.apply(
        dg.load_assets_from_modules([ingestion]), git_url="https://github.com/org/driftline/", git_branch="dev"
    )
    specs = [s for a in assets if isinstance(a, dg.AssetsDefinition) for s in a.specs]
    refs = [r for s in specs for r in s.metadata["dagster/code_references"].code_references]
    assert refs and all(isinstance(r, dg.UrlCodeReference) for r in refs)
    assert {r.url.split("#")[0] for r in refs} == {"https://github.com/org/driftline/tree/dev/assets/ingestion.py"}


def test_raw_and_feature_assets_have_freshness_checks_and_their_sensor():
    import definitions

    checked = {k.asset_key.to_user_string() for c in definitions.FRESHNESS_CHECKS for k in c.check_keys}
    assert checked == {"raw_transactions", "raw_labels", "transaction_features", "user_state", "merchant_state"}
    graph = definitions.defs.resolve_asset_graph()
    assert all(k in graph.asset_check_keys for c in definitions.FRESHNESS_CHECKS for k in c.check_keys)
    assert definitions.defs.resolve_sensor_def("freshness_checks_sensor")


def test_mlflow_run_links_open_the_configured_mlflow_ui(monkeypatch, tmp_path):
    """`make dev` serves the MLflow UI at DRIFTLINE_MLFLOW_UI; the registry's run links point there."""
    from resources import local_resources

    monkeypatch.setenv("DRIFTLINE_MLFLOW_UI", "http://127.0.0.1:5055/")
    registry = local_resources(str(tmp_path))["mlflow_registry"]
    assert registry.ui_url == "http://127.0.0.1:5055/"
    assert registry.run_url("3", "abc") == "http://127.0.0.1:5055/#/experiments/3/runs/abc"
