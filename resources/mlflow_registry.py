"""MLflow tracking and model registry. Aliases, not stages: a new version becomes
`challenger`; only promotion moves `champion`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

CHAMPION, CHALLENGER, REJECTED = "champion", "challenger", "rejected"


class MlflowRegistry(dg.ConfigurableResource):
    tracking_uri: str = "sqlite:///data/mlflow.db"
    artifact_root: str = "data/mlartifacts"
    experiment: str = "driftline-fraud"
    model_name: str = "driftline-fraud"
    ui_url: str = "http://127.0.0.1:5000"

    def _uri(self) -> str:
        if self.tracking_uri.startswith("sqlite:///") and not self.tracking_uri.startswith("sqlite:////"):
            path = Path(self.tracking_uri.removeprefix("sqlite:///")).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        return self.tracking_uri

    def setup(self):
        """Point the mlflow client here; returns (mlflow module, experiment id)."""
        import logging

        import mlflow

        logging.getLogger("alembic").setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
        mlflow.set_tracking_uri(self._uri())
        client = mlflow.MlflowClient()
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            root = self.artifact_root
            location = root if "://" in root else Path(root).resolve().as_uri()
            exp_id = client.create_experiment(self.experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        return mlflow, exp_id

    def client(self):
        mlflow, _ = self.setup()
        return mlflow.MlflowClient()

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def version_for_alias(self, alias: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client().get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def set_alias(self, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(self.model_name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client().delete_registered_model_alias(self.model_name, alias)
        except MlflowException:
            pass

    def aliases(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            model = self.client().get_registered_model(self.model_name)
        except MlflowException:
            return {}
        return {alias: str(v) for alias, v in (model.aliases or {}).items()}

    def serving_artifact(self, version: str, dest: str | Path) -> Path:
        """Download a version's serving artifact (model.pt + feature_schema.json) into `dest`."""
        mlflow, _ = self.setup()
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{self.model_name}/{version}",
                                                    dst_path=str(dest))
        found = list(Path(local).rglob("feature_schema.json"))
        if not found:
            raise FileNotFoundError(f"model {self.model_name} v{version} has no serving artifact")
        return found[0].parent

    def version_tags(self, version: str) -> dict[str, Any]:
        return dict(self.client().get_model_version(self.model_name, str(version)).tags)
