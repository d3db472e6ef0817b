"""Model versions for tests: a small serving artifact logged the way `fraud_model` logs its
model (an MLflow pyfunc whose artifact is the serving folder) and registered with the status
tags the evaluation gate sets."""

from __future__ import annotations

from pathlib import Path

from resources.mlflow_registry import INTERFACE_TAG, STATUS_TAG, MlflowRegistry
from testkit.artifacts import build_artifact

ROOT = Path(__file__).resolve().parent.parent


def register_version(
    registry: MlflowRegistry, tmp: Path, seed: int, passed: bool = True, interface: str | None = None
) -> str:
    """A registered version of the artifact built from `seed` (same seed: same weights, same
    score distribution); `interface` tags the component class it is served with."""
    mlflow, exp = registry.setup()
    art = build_artifact(tmp / f"artifact-{seed}-{interface}", "unregistered", seed=seed)
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ROOT / "ml" / "pyfunc_model.py"),
            artifacts={"serving": str(art)},
            code_paths=[str(ROOT / "seldon")],
            pip_requirements=["torch==2.13.0", "numpy"],
        )
    version = str(mlflow.register_model(info.model_uri, registry.model_name).version)
    client = registry.client()
    client.set_model_version_tag(registry.model_name, version, STATUS_TAG, "passed" if passed else "rejected")
    if interface:
        client.set_model_version_tag(registry.model_name, version, INTERFACE_TAG, interface)
    return version
