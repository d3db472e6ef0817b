"""The k8s profile against the REAL servers: PostgreSQL 127.0.0.1:5432 (user postgres, trust)
and Redis 127.0.0.1:6379, which the project's machines and CI run. Nothing here skips: a
missing server is a failure, because CI must exercise the production storage path.

Each piece creates and drops its own database (Dagster storage, MLflow) or Feast project
(the suffix of every Redis key it writes). Features run on the profile's Spark engine.
"""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import pandas as pd
import pytest

from assets import feature_store, ingestion
from assets.features import transaction_features
from resources import SyntheticEventSource
from resources.profiles import dagster_instance_yaml, k8s_resources, lake_root
from testkit.worlds import SMALL_WORLD

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.spark,
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings(
        "ignore::DeprecationWarning",
        "ignore::FutureWarning",
        "ignore:Asset job __ephemeral_asset_job__ materializes assets with varying BackfillPolicies",
    ),
]

PG = "postgresql://postgres@127.0.0.1:5432"
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the pinned driver is psycopg2.
SA_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
DAYS = ["2026-10-01", "2026-10-02"]


def _admin(sql: str) -> None:
    import psycopg2

    con = psycopg2.connect(f"{PG}/postgres")
    con.autocommit = True
    try:
        con.cursor().execute(sql)
    finally:
        con.close()


@pytest.fixture(scope="module")
def new_database():
    """Factory: a fresh database per call, dropped (connections and all) at module end."""
    created = []

    def make(prefix: str) -> str:
        name = f"driftline_{prefix}_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{name}"')
        created.append(name)
        return name

    yield make
    for name in created:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _query(db: str, sql: str) -> list[tuple]:
    import psycopg2

    con = psycopg2.connect(f"{PG}/{db}")
    try:
        cur = con.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def profile(tmp_path_factory, new_database):
    """The k8s profile's resources, env as the Helm values set it (lake: a file:// URL here)."""
    root = tmp_path_factory.mktemp("k8s_profile")
    project = f"driftline_t_{uuid.uuid4().hex[:10]}"
    env = {
        "DRIFTLINE_LAKE_URL": (root / "lake").as_uri(),
        "DRIFTLINE_DATA_DIR": str(root / "data"),
        "DRIFTLINE_MLFLOW_TRACKING_URI": f"{SA_PG}/{new_database('mlflow')}",
        "DRIFTLINE_MLFLOW_ARTIFACTS": str(root / "mlartifacts"),
        "DRIFTLINE_REDIS": f"{REDIS_HOST}:{REDIS_PORT}",
        "DRIFTLINE_FEAST_PROJECT": project,
        "DRIFTLINE_SPARK_MASTER": "local[2]",
    }
    resources = k8s_resources(env, event_source=SyntheticEventSource(**SMALL_WORLD))
    yield {"root": root, "env": env, "resources": resources, "project": project}
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    for key in client.scan_iter(match=f"*{project}".encode(), count=1000):
        client.delete(key)


@pytest.fixture(scope="module")
def materialized(profile, new_database):
    """Two days of raw events and features, run and event storage in a fresh Postgres database."""
    db = new_database("dagster")
    home = profile["root"] / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_instance_yaml(f"{SA_PG}/{db}"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        results = [
            dg.materialize(
                [ingestion.raw_transactions, ingestion.raw_labels, transaction_features],
                partition_key=day,
                resources=profile["resources"],
                instance=instance,
            )
            for day in DAYS
        ]
        assert all(r.success for r in results)
        latest = instance.get_latest_materialization_event(dg.AssetKey("transaction_features"))
        yield {"db": db, "results": results, "latest": latest, "storage": type(instance.run_storage).__name__}


def test_partition_materialized_with_postgres_run_and_event_storage(materialized):
    db = materialized["db"]
    assert materialized["storage"] == "PostgresRunStorage"
    run_ids = {r.run_id for r in materialized["results"]}
    stored = {row[0]: row[1] for row in _query(db, "select run_id, status from runs")}
    assert run_ids <= set(stored) and {stored[r] for r in run_ids} == {"SUCCESS"}
    rows = _query(
        db, "select asset_key, partition from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION' order by id"
    )
    assert ('["transaction_features"]', DAYS[-1]) in rows and len(rows) == 3 * len(DAYS)
    latest = materialized["latest"]
    assert latest.dagster_event.partition == DAYS[-1]
    assert latest.asset_materialization.metadata["engine"].value == "spark"


def test_model_registered_and_aliased_in_mlflow_on_postgres(profile, tmp_path):
    registry = profile["resources"]["mlflow_registry"]
    mlflow, experiment_id = registry.setup()
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("auc", 0.91)
        mlflow.log_dict({"features": ["amount"]}, "model/feature_schema.json")
    client = registry.client()
    client.create_registered_model(registry.model_name)
    version = client.create_model_version(
        registry.model_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    ).version
    registry.set_alias("challenger", version)

    assert registry.aliases() == {"challenger": str(version)}
    assert registry.version_for_alias("challenger").run_id == run.info.run_id
    assert (registry.serving_artifact(version, tmp_path) / "feature_schema.json").exists()
    db = profile["env"]["DRIFTLINE_MLFLOW_TRACKING_URI"].rsplit("/", 1)[1]
    assert _query(db, "select name, alias, version from registered_model_aliases") == [
        (registry.model_name, "challenger", int(version))
    ]
    assert _query(db, "select count(*) from metrics where key = 'auc'") == [(1,)]


def test_features_materialized_to_redis_and_read_back_online(profile, materialized):
    import redis

    resources, project, day = profile["resources"], profile["project"], DAYS[-1]
    assert dg.materialize(
        [feature_store.user_state, feature_store.merchant_state], partition_key=day, resources=resources
    ).success
    assert dg.materialize([feature_store.feast_registry], resources=resources).success
    result = dg.materialize([feature_store.online_features], partition_key=day, resources=resources)
    meta = result.asset_materializations_for_node("online_features")[0].metadata
    assert meta["online_store"].value == "redis" and meta["skipped"].value is False

    keys = list(redis.Redis(host=REDIS_HOST, port=REDIS_PORT).scan_iter(match=f"*{project}".encode(), count=1000))
    users = resources["lake"].read_partition("user_state", day).to_pandas()
    active = users[users["user_txn_count_24h"].notna()].head(20)
    assert len(keys) >= len(users) and len(active) == 20

    after = dt.datetime.fromisoformat(day) + dt.timedelta(days=1, minutes=5)
    rows = pd.DataFrame(
        {"user_id": active["user_id"], "merchant_id": 1, "amount": 10.0, "country": "FR", "event_ts": after}
    )
    online = resources["feast"].online_features(rows)
    for name in ("user_txn_count_24h", "user_amount_sum_7d", "user_last_country"):
        assert list(online[name]) == list(active[name]), name


def test_lake_url_on_an_object_store_is_the_lake_root():
    """DRIFTLINE_LAKE_URL=s3://... is used as is (no mount needed): the Lake, the Feast sources and
    Spark's S3A settings all get the bucket and the S3-compatible endpoint. The object-store lake
    itself runs against a local S3 server in tests/test_lake_object_store.py."""
    assert lake_root("file:///lake") == "/lake" and lake_root("/mnt/lake") == "/mnt/lake"
    assert lake_root("s3://bucket/lake/") == "s3://bucket/lake"
    with pytest.raises(ValueError, match="needs a bucket"):
        lake_root("s3://")
    env = {
        "DRIFTLINE_LAKE_URL": "s3://driftline/lake",
        "DRIFTLINE_S3_ENDPOINT_URL": "http://minio:9000",
        "DRIFTLINE_S3_REGION": "eu-west-3",
        "DRIFTLINE_DATA_DIR": "/data",
    }
    resources = k8s_resources(env, event_source=SyntheticEventSource(**SMALL_WORLD))
    lake = resources["lake"]
    assert (lake.root, lake.s3_endpoint_url, lake.s3_region, lake.is_remote) == (
        "s3://driftline/lake",
        "http://minio:9000",
        "eu-west-3",
        True,
    )
    assert (
        lake.partition_url("raw_labels", "2026-10-01") == "s3://driftline/lake/raw_labels/date=2026-10-01/data.parquet"
    )
    feast = resources["feast"]
    assert (feast.lake.root, feast.lake.s3_endpoint_url, feast.lake.s3_region) == (
        "s3://driftline/lake",
        "http://minio:9000",
        "eu-west-3",
    )
    assert resources["seldon_target"].lake.root == "s3://driftline/lake"
    conf = resources["feature_engine"].spark.spark_config
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    assert conf["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-3"
    assert conf["spark.hadoop.fs.s3a.impl"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"
    # a file:// lake keeps Spark free of S3A settings
    local = k8s_resources({"DRIFTLINE_LAKE_URL": "file:///lake"}, event_source=SyntheticEventSource(**SMALL_WORLD))
    assert local["lake"].root == "/lake" and not local["lake"].is_remote
    assert not any(k.startswith("spark.hadoop.fs.s3a") for k in local["feature_engine"].spark.spark_config)


def test_profile_deploys_to_kubernetes_with_secrets_as_env_vars(monkeypatch):
    """The k8s profile's SeldonTarget comes from the settings, and from os.environ the
    connection strings reach the resources as dg.EnvVar (the UI shows names, not passwords)."""
    env = {
        "DRIFTLINE_SELDON_NAMESPACE": "ml",
        "DRIFTLINE_SELDON_DEPLOYMENT": "fraud-eu",
        "DRIFTLINE_SELDON_IMAGE": "registry.example.com/driftline/serving:9.9",
        "DRIFTLINE_INGRESS_URL": "https://gateway.example.com",
        "DRIFTLINE_MLFLOW_TRACKING_URI": "postgresql+psycopg2://mlflow:pw@postgresql:5432/mlflow",
        "DRIFTLINE_REDIS": "redis-master:6379,password=pw",
        "DRIFTLINE_INGRESS_JWT_SECRET": "s3cret",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resources = k8s_resources(event_source=SyntheticEventSource(**SMALL_WORLD))
    target = resources["seldon_target"]
    assert (target.kind, target.namespace, target.deployment_name, target.image, target.ingress_url) == (
        "kubernetes",
        "ml",
        "fraud-eu",
        "registry.example.com/driftline/serving:9.9",
        "https://gateway.example.com",
    )
    assert target.in_cluster and target.online_features == "server"
    for value in (
        resources["mlflow_registry"].tracking_uri,
        resources["feast"].online_store_connection_string,
        target.ingress_jwt_secret,
    ):
        assert isinstance(value, dg.EnvVar) and "pw" not in value and "s3cret" not in value
    assert resources["mlflow_registry"]._uri() == env["DRIFTLINE_MLFLOW_TRACKING_URI"]  # resolved when used
