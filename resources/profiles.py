"""The production profile (DRIFTLINE_ENV=k8s): the same resources as `local`, other backends.

Everything comes from environment variables that the Helm values set on the user-code
deployment and on every run pod (deployment/helm/values.yaml):

  DRIFTLINE_LAKE_URL              lake root: a path or file:// URL (the object store mounted
                                  into the pods, e.g. a CSI bucket mount at /lake)
  DRIFTLINE_DATA_DIR              shared volume for the warehouse file and the Feast registry
  DRIFTLINE_MLFLOW_TRACKING_URI   MLflow tracking + registry store, e.g. postgresql://...
  DRIFTLINE_MLFLOW_ARTIFACTS      artifact root, e.g. s3://bucket/mlflow
  DRIFTLINE_REDIS                 Feast online store, "host:port[,password=...]"
  DRIFTLINE_FEAST_PROJECT         Feast project (also the Redis key suffix)
  DRIFTLINE_SPARK_MASTER          Spark master for features (default local[*]: the step pod's CPUs)

Dagster's own storage (runs, events, schedules) is instance config, not a resource: the Helm
chart renders it from its `postgresql` values; `dagster_instance_yaml` renders the same thing
for a DAGSTER_HOME outside the chart (and for the tests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from .feast_store import FeastStore
from .feature_engine import FeatureEngine
from .lake import Lake
from .mlflow_registry import MlflowRegistry
from .quality import DataQuality
from .warehouse import Warehouse

SPARK_DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "16",  # AQE coalesces further; 200 is far too many per day
    "spark.ui.enabled": "false",
}


def lake_root(url: str) -> str:
    """Local path for the lake URL. The Lake resource does file I/O (atomic rename), so an
    object store is reached through a mount; s3:// etc. are refused with that hint."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme else url
    raise ValueError(f"DRIFTLINE_LAKE_URL {url!r}: mount the bucket into the pods (e.g. mountpoint-s3 / "
                     "gcsfuse CSI volume) and give the mount path or a file:// URL")


def spark_resource(master: str, extra: Mapping[str, str] | None = None):
    """dagster-pyspark's PySparkResource (imported here: only the k8s profile loads pyspark)."""
    from dagster_pyspark import PySparkResource

    return PySparkResource(spark_config={"spark.master": master, **SPARK_DEFAULTS, **(extra or {})})


def k8s_resources(env: Mapping[str, str] | None = None, event_source=None) -> dict:
    env = os.environ if env is None else env
    data_dir = env.get("DRIFTLINE_DATA_DIR", "/data")
    lake = lake_root(env.get("DRIFTLINE_LAKE_URL", "file:///lake"))
    if event_source is None:
        from . import _event_source

        event_source = _event_source()
    return {
        "event_source": event_source,
        "lake": Lake(root=lake),
        "warehouse": Warehouse(path=f"{data_dir}/warehouse.duckdb"),
        "feature_engine": FeatureEngine(engine="spark",
                                        spark=spark_resource(env.get("DRIFTLINE_SPARK_MASTER", "local[*]"))),
        "quality": DataQuality(),
        "feast": FeastStore(
            repo_dir=f"{data_dir}/feast", lake_root=lake,
            project=env.get("DRIFTLINE_FEAST_PROJECT", "driftline"),
            online_store_type="redis",
            online_store_connection_string=env.get("DRIFTLINE_REDIS", "redis-master:6379"),
        ),
        "mlflow_registry": MlflowRegistry(
            tracking_uri=env.get("DRIFTLINE_MLFLOW_TRACKING_URI",
                                 "postgresql+psycopg2://mlflow@postgresql:5432/mlflow"),
            artifact_root=env.get("DRIFTLINE_MLFLOW_ARTIFACTS", f"{data_dir}/mlartifacts"),
            ui_url=env.get("DRIFTLINE_MLFLOW_UI", "http://mlflow:5000"),
        ),
    }


def dagster_instance_yaml(postgres_url: str | None = None) -> str:
    """dagster.yaml with run, event-log and schedule storage on Postgres. Without a URL, the
    URL is read at load time from DAGSTER_PG_URL (keeps the password out of the file).
    Use postgresql+psycopg2://...: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3,
    which is not installed (dagster-postgres depends on psycopg2)."""
    url = f'"{postgres_url}"' if postgres_url else "\n      env: DAGSTER_PG_URL"
    return (
        "storage:\n"
        "  postgres:\n"
        f"    postgres_url: {url}\n"
        "run_coordinator:\n"
        "  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n"
        "telemetry:\n"
        "  enabled: false\n"
    )
