"""The production profile (DRIFTLINE_ENV=k8s): the same resources as `local`, other backends.

Everything comes from environment variables that the Helm values set on the user-code
deployment and on every run pod (deployment/helm/values.yaml):

  DRIFTLINE_LAKE_URL              lake root: an object-store URL (s3://bucket/prefix), or a
                                  path / file:// URL (e.g. a volume or CSI bucket mount at /lake)
  DRIFTLINE_S3_ENDPOINT_URL       S3-compatible store's endpoint (MinIO, Ceph, R2: http://minio:9000);
                                  unset: AWS S3
  DRIFTLINE_S3_REGION             bucket region (optional; else AWS_REGION / AWS_DEFAULT_REGION)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                                  S3 credentials, read by botocore (the lake, Feast) and by Spark's
                                  S3A connector; or IRSA / an instance profile, with no variables
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
    """The Lake root for DRIFTLINE_LAKE_URL: a local path for a path or file:// URL, the URL
    itself (trailing slash dropped) for an object store (s3://bucket/prefix; the Lake reaches it
    through fsspec/s3fs). A bucket URL needs a bucket: `s3://` alone is refused."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return parsed.path if parsed.scheme else url
    if not parsed.netloc:
        raise ValueError(f"DRIFTLINE_LAKE_URL {url!r}: an object-store URL needs a bucket, e.g. s3://bucket/lake")
    return url.rstrip("/")


def s3a_spark_conf(endpoint_url: str | None = None, region: str | None = None) -> dict[str, str]:
    """Spark settings for reading an s3:// lake through Hadoop's S3A connector (paths are
    rewritten to s3a://, see `resources.lake.spark_path`). The image must carry the connector:
    hadoop-aws-<hadoop version of pyspark's jars, 3.5.0 for pyspark 4.3>.jar and the AWS SDK v2
    `bundle-2.x.jar` in $SPARK_HOME/jars (or listed in `spark.jars`); they are not in the pyspark
    wheel. Credentials: the AWS SDK's default chain (env AWS_*, IRSA web identity, instance profile)."""
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider",
    }
    if endpoint_url:
        conf |= {
            "spark.hadoop.fs.s3a.endpoint": endpoint_url,
            # MinIO & co. serve buckets under the path, not as virtual hosts
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": str(endpoint_url.startswith("https://")).lower(),
        }
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf


def spark_resource(master: str, extra: Mapping[str, str] | None = None):
    """dagster-pyspark's PySparkResource (imported here: only the k8s profile loads pyspark)."""
    from dagster_pyspark import PySparkResource

    return PySparkResource(spark_config={"spark.master": master, **SPARK_DEFAULTS, **(extra or {})})


def k8s_resources(env: Mapping[str, str] | None = None, event_source=None) -> dict:
    env = os.environ if env is None else env
    data_dir = env.get("DRIFTLINE_DATA_DIR", "/data")
    lake = lake_root(env.get("DRIFTLINE_LAKE_URL", "file:///lake"))
    endpoint = env.get("DRIFTLINE_S3_ENDPOINT_URL") or None
    region = env.get("DRIFTLINE_S3_REGION") or None
    spark_extra = {}
    if lake.startswith(("s3://", "s3a://")):
        spark_extra = s3a_spark_conf(endpoint, region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))
    if event_source is None:
        from . import _event_source

        event_source = _event_source()
    return {
        "event_source": event_source,
        "lake": Lake(root=lake, s3_endpoint_url=endpoint, s3_region=region),
        "warehouse": Warehouse(path=f"{data_dir}/warehouse.duckdb"),
        "feature_engine": FeatureEngine(engine="spark",
                                        spark=spark_resource(env.get("DRIFTLINE_SPARK_MASTER", "local[*]"),
                                                             spark_extra)),
        "quality": DataQuality(),
        "feast": FeastStore(
            repo_dir=f"{data_dir}/feast", lake_root=lake, lake_s3_endpoint_url=endpoint, lake_s3_region=region,
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
