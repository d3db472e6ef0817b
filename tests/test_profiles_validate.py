"""Both resource profiles load: `dagster definitions validate` (the CLI, as CI and a deployment
run it) passes with DRIFTLINE_ENV=local and with DRIFTLINE_ENV=k8s, the latter pointed at the
machine's PostgreSQL and Redis and a local lake. Validation loads the code location and checks
that every resource an asset, check or sensor needs is provided; it connects to nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {
    "local": {},
    "k8s": {
        "DRIFTLINE_MLFLOW_TRACKING_URI": "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        "DRIFTLINE_REDIS": "127.0.0.1:6379",
    },
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_validates_with_the_dagster_cli(profile, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env |= {
        "DRIFTLINE_ENV": profile,
        "DRIFTLINE_DATA_DIR": str(tmp_path / "data"),
        "DRIFTLINE_LAKE_URL": (tmp_path / "lake").as_uri(),
        "DAGSTER_HOME": str(tmp_path / "home"),
        **PROFILES[profile],
    }
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    assert "Validation successful" in log
