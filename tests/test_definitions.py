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
