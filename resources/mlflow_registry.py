"""MLflow tracking and model registry. Aliases, not stages: a new version becomes
`challenger`; only promotion moves `champion`.

The registry's contract with the rest of driftline (which alias means what, which version tags
record the evaluation and the rollout) lives in the methods below: the assets call them and
never set an alias or a status tag themselves."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

import dagster as dg

from driftline import settings

CHAMPION, CHALLENGER, REJECTED = "champion", "challenger", "rejected"
STATUS_TAG = "driftline.evaluation"  # passed | rejected (model_evaluation; a rolled-back canary)
REASON_TAG = f"{STATUS_TAG}.reason"  # why
ROLLOUT_TAG = "driftline.rollout"  # promoted | rolled back (seldon_deployment)
INTERFACE_TAG = "driftline.serving_interface"  # optional: the component class a version is served with
PASSED = "passed"


class MlflowRegistry(dg.ConfigurableResource):
    tracking_uri: str = "sqlite:///data/mlflow.db"
    artifact_root: str = "data/mlartifacts"
    experiment: str = "driftline-fraud"
    model_name: str = "driftline-fraud"
    ui_url: str = "http://127.0.0.1:5000"
    # An S3-compatible artifact store's endpoint (the profile passes DRIFTLINE_S3_ENDPOINT_URL);
    # MLflow's own MLFLOW_S3_ENDPOINT_URL, when set, wins. Unset: AWS S3.
    s3_endpoint_url: str | None = None

    def _uri(self) -> str:
        uri = settings.resolved(self.tracking_uri)  # dg.EnvVar under k8s: it may hold a password
        if uri is None:
            raise ValueError(f"MlflowRegistry.tracking_uri: the environment variable {self.tracking_uri} is not set")
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            path = Path(uri.removeprefix("sqlite:///")).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{path}"
        return uri

    def setup(self):
        """Point the mlflow client here; returns (mlflow module, experiment id)."""
        import logging

        # Process settings for mlflow, before it loads: synchronous logging (a run's metrics are
        # in the store when the asset returns), no warning when git is not installed.
        os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
        os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
        if self.s3_endpoint_url:
            os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", self.s3_endpoint_url)
        import mlflow

        logging.getLogger("alembic").setLevel(logging.WARNING)
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
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

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

        with contextlib.suppress(MlflowException):
            self.client().delete_registered_model_alias(self.model_name, alias)

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
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{self.model_name}/{version}", dst_path=str(dest)
        )
        found = list(Path(local).rglob("feature_schema.json"))
        if not found:
            raise FileNotFoundError(f"model {self.model_name} v{version} has no serving artifact")
        return found[0].parent

    def serving_uri(self, version: str) -> str:
        """Where a version's serving artifact lies in the artifact store: the URI of the folder
        holding feature_schema.json + model.pt, below the version's storage location (MLflow 3:
        `<experiment's artifact location>/models/<model id>/artifacts/artifacts/serving`). A
        predictor in a cluster downloads it from there; the registry is resolved here, on the
        orchestration side, because the serving environment has no MLflow."""
        self.setup()
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        root = self.client().get_model_version_download_uri(self.model_name, str(version)).rstrip("/")
        repo = get_artifact_repository(root)
        folders, listed = [""], 0
        while folders and listed < 50:  # breadth first: the shallowest schema; the pyfunc's code/ is skipped
            folder = folders.pop(0)
            listed += 1
            for item in repo.list_artifacts(folder or None):
                name = PurePosixPath(item.path).name
                if item.is_dir and name != "code":
                    folders.append(item.path)
                elif name == "feature_schema.json":
                    return f"{root}/{folder}" if folder else root
        raise FileNotFoundError(f"model {self.model_name} v{version} has no feature_schema.json under {root}")

    def version_tags(self, version: str) -> dict[str, Any]:
        return dict(self.client().get_model_version(self.model_name, str(version)).tags)

    # ------------------------------------------------------------ evaluation and rollout
    def mark_evaluated(self, version: str, passed: bool, reason: str) -> None:
        """Record the gate's verdict on a version (a rolled-back canary is marked rejected too)."""
        client, name = self.client(), self.model_name
        client.set_model_version_tag(name, str(version), STATUS_TAG, PASSED if passed else REJECTED)
        client.set_model_version_tag(name, str(version), REASON_TAG, reason)

    def evaluation_status(self, version) -> str | None:
        """passed | rejected | None (not evaluated); `version`: a number or an MLflow ModelVersion."""
        tags = version.tags if hasattr(version, "tags") else self.version_tags(version)
        return tags.get(STATUS_TAG)

    def passed_challenger(self, champion: str | None):
        """The `challenger` version if it passed evaluation and is not the champion, else None."""
        version = self.version_for_alias(CHALLENGER)
        if version is None or str(version.version) == champion:
            return None
        return version if self.evaluation_status(version) == PASSED else None

    def make_champion(self, version: str) -> None:
        """`champion` moves to `version`; no version is `challenger` any more."""
        self.set_alias(CHAMPION, version)
        self.delete_alias(CHALLENGER)

    def drop_challenger(self) -> None:
        self.delete_alias(CHALLENGER)

    def mark_rollout(self, version: str, outcome: str) -> None:
        """Record how a canary ended: "promoted" or "rolled back"."""
        self.client().set_model_version_tag(self.model_name, str(version), ROLLOUT_TAG, outcome)

    def serving_interface(self, version: str, default: str) -> str:
        """The component class a version is served with (INTERFACE_TAG), else `default`."""
        return self.version_tags(version).get(INTERFACE_TAG, default)
