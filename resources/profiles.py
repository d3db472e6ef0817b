"""The production profile (DRIFTLINE_ENV=k8s): the same resources as `local`, other backends.

Everything comes from environment variables that the Helm values set on the user-code
deployment and on every run pod (deployment/helm/values.yaml, deployment/k8s/storage.yaml);
each is declared, with its default, in driftline/settings.py and listed in the README:
the lake (DRIFTLINE_LAKE_URL, DRIFTLINE_S3_ENDPOINT_URL, DRIFTLINE_S3_REGION), the shared data
volume (DRIFTLINE_DATA_DIR), MLflow (DRIFTLINE_MLFLOW_TRACKING_URI, _ARTIFACTS, _UI), Feast (DRIFTLINE_REDIS,
DRIFTLINE_FEAST_PROJECT, DRIFTLINE_FEAST_SERVER_URL), Spark (DRIFTLINE_SPARK_MASTER) and the
SeldonDeployment (DRIFTLINE_SELDON_NAMESPACE / _DEPLOYMENT / _IMAGE, DRIFTLINE_INGRESS_URL).
S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or IRSA / an
instance profile) are read by botocore and Spark's S3A connector, never by driftline.

Connection strings that may hold a password (DRIFTLINE_MLFLOW_TRACKING_URI, DRIFTLINE_REDIS) and
the ingress credentials reach the resources as `dg.EnvVar`: the UI shows their names only.

Dagster's own storage (runs, events, schedules) is instance config, not a resource: the Helm
chart renders it from its `postgresql` values; `dagster_instance_yaml` renders the same thing
for a DAGSTER_HOME outside the chart (and for the tests).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from driftline import settings

from .canary_policy import CanaryPolicy
from .feast_store import FeastStore
from .feature_engine import FeatureEngine
from .lake import Lake
from .mlflow_registry import MlflowRegistry
from .quality import DataQuality
from .seldon_target import SeldonTarget
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
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
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


def k8s_resources(env: Mapping[str, str] | None = None, event_source=None, canary: CanaryPolicy | None = None) -> dict:
    """The k8s resource set from `env` (default: os.environ, secrets then as dg.EnvVar; an
    explicit mapping, as tests pass, gives plain values)."""
    s = settings.load({**(os.environ if env is None else env), "DRIFTLINE_ENV": "k8s"})
    lake = Lake(root=lake_root(s.lake_url), s3_endpoint_url=s.s3_endpoint_url, s3_region=s.s3_region)
    spark_extra = {}
    if lake.root.startswith(("s3://", "s3a://")):
        spark_extra = s3a_spark_conf(s.s3_endpoint_url, s.s3_region or s.aws_region)
    if event_source is None:
        from . import configured_event_source

        event_source = configured_event_source(env)
    tracking_uri = settings.secret("DRIFTLINE_MLFLOW_TRACKING_URI", env)
    assert tracking_uri is not None  # the setting has a default
    return {
        "event_source": event_source,
        "lake": lake,
        "warehouse": Warehouse(path=f"{s.data_dir}/warehouse.duckdb"),
        "feature_engine": (
            FeatureEngine(engine="spark", spark=spark_resource(s.spark_master, spark_extra))
            if s.feature_engine == "spark"
            else FeatureEngine(engine="duckdb")
        ),
        "quality": DataQuality(),
        "feast": FeastStore(
            lake=lake,
            repo_dir=f"{s.data_dir}/feast",
            project=s.feast_project,
            online_store_type="redis",
            online_store_connection_string=settings.secret("DRIFTLINE_REDIS", env),
        ),
        "mlflow_registry": MlflowRegistry(
            tracking_uri=tracking_uri,
            artifact_root=s.mlflow_artifacts,
            ui_url=s.mlflow_ui,
            s3_endpoint_url=s.s3_endpoint_url,
        ),
        "seldon_target": SeldonTarget(
            kind="kubernetes",
            in_cluster=True,
            namespace=s.seldon_namespace,
            deployment_name=s.seldon_deployment,
            image=s.seldon_image,
            serving_dir=f"{s.data_dir}/serving",
            lake=lake,
            feast_repo=f"{s.data_dir}/feast",
            online_features="server",
            feast_server_url=s.feast_server_url,
            ingress_url=s.ingress_url,
            ingress_jwt_secret=settings.secret("DRIFTLINE_INGRESS_JWT_SECRET", env),
            ingress_admin_token=settings.secret("DRIFTLINE_INGRESS_ADMIN_TOKEN", env),
            canary=canary or CanaryPolicy(),
            metrics_source="prometheus",  # no ingress /metrics in a cluster: the executors' series
            prometheus_url=s.prometheus_url,
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
