"""The production profile executing inside the built user-code image, as a run pod would.

The container (`--network host`, read-only root file system, `/tmp` a tmpfs) gets
DRIFTLINE_ENV=k8s and talks to the machine's PostgreSQL (Dagster's run storage, MLflow's
registry), Redis (Feast's online store) and an object-store lake and MLflow artifact root on a
local S3 server. It serves the code location over gRPC and answers the health check, then
materializes one partition of the data plane and one training run with Dagster's own command
line; the records are then read back from where they landed. Nothing can land on the
container's disk: its root is read-only and it is removed after each command.

The feature engine is DuckDB on the bucket (DRIFTLINE_FEATURE_ENGINE=duckdb): Spark on an s3://
lake needs the S3A connector jars, which cannot be fetched on these machines (no Maven). Steps
run in the run's process (DRIFTLINE_EXECUTOR=in_process): a pod per step is the cluster tests'
part. The days before the container's partition are materialized in-process by the same
profile, to the same stores, so the training window has history.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from driftline.pipeline import pick, run_data_plane
from resources.profiles import dagster_instance_yaml, k8s_resources
from seldon.runtime import free_port
from testkit.images import docker, require_image
from testkit.postgres import SA_PG, sql
from testkit.s3 import CREDENTIALS, moto_s3
from testkit.worlds import (
    PRODUCTION_RUN_DAY,
    PRODUCTION_RUN_HISTORY,
    PRODUCTION_RUN_LABEL_DAYS,
    PRODUCTION_RUN_TRAINING,
    PRODUCTION_RUN_WORLD,
)

pytestmark = [
    pytest.mark.container,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.filterwarnings(
        "ignore::FutureWarning",
        "ignore:Asset job __ephemeral_asset_job__ materializes assets with varying BackfillPolicies",
    ),
]

HOST_DAYS, CONTAINER_DAY, LABEL_DAYS = PRODUCTION_RUN_HISTORY, PRODUCTION_RUN_DAY, PRODUCTION_RUN_LABEL_DAYS
IMAGE_UID = 10001
WORLD, TRAINING_CONFIG = PRODUCTION_RUN_WORLD, PRODUCTION_RUN_TRAINING
DATA_PLANE = "raw_transactions,raw_labels,transaction_features,user_state,merchant_state,feast_registry,online_features"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Image, bucket, two fresh databases, a Feast project in Redis, a shared data folder (the
    run pods' volume) and the environment the Helm values would give the pods."""
    image = require_image("user-code")
    suffix = uuid.uuid4().hex[:10]
    dagster_db, mlflow_db = f"driftline_ct_dagster_{suffix}", f"driftline_ct_mlflow_{suffix}"
    for db in (dagster_db, mlflow_db):
        sql("postgres", f'CREATE DATABASE "{db}"')
    root = tmp_path_factory.mktemp("user_code_image")
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    data.mkdir()
    (home / "dagster.yaml").write_text(dagster_instance_yaml(f"{SA_PG}/{dagster_db}"))
    project = f"driftline_ct_{suffix}"
    with moto_s3("driftline-ct") as s3, pytest.MonkeyPatch.context() as mp:
        env = {
            "DRIFTLINE_ENV": "k8s",
            "DRIFTLINE_EXECUTOR": "in_process",
            "DRIFTLINE_FEATURE_ENGINE": "duckdb",
            "DRIFTLINE_LAKE_URL": f"s3://{s3.bucket}/lake",
            "DRIFTLINE_S3_ENDPOINT_URL": s3.endpoint,
            "DRIFTLINE_DATA_DIR": "/data",
            "DRIFTLINE_MLFLOW_TRACKING_URI": f"{SA_PG}/{mlflow_db}",
            "DRIFTLINE_MLFLOW_ARTIFACTS": f"s3://{s3.bucket}/mlartifacts",
            "DRIFTLINE_REDIS": "127.0.0.1:6379",
            "DRIFTLINE_FEAST_PROJECT": project,
            "DRIFTLINE_START_DATE": HOST_DAYS[0],
            **WORLD,
            **CREDENTIALS,
        }
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        yield {
            "image": image,
            "s3": s3,
            "env": env,
            "home": home,
            "data": data,
            "dagster_db": dagster_db,
            "mlflow_db": mlflow_db,
            "project": project,
        }
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(match=f"*{project}".encode(), count=1000):
        client.delete(key)
    for db in (dagster_db, mlflow_db):
        sql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _container_args(stack, name: str | None = None) -> list[str]:
    args = ["--network", "host", "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/home/driftline"]
    args += [
        "--tmpfs",
        "/opt/dagster/home",
        "-v",
        f"{stack['home'] / 'dagster.yaml'}:/opt/dagster/home/dagster.yaml:ro",
    ]
    args += ["-v", f"{stack['data']}:/data"]
    for key, value in stack["env"].items():
        args += ["-e", f"{key}={value}"]
    if name:
        args += ["--name", name]
    return args


def _run_in_image(stack, *command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = docker("run", "--rm", *_container_args(stack), stack["image"], *command, timeout=timeout, check=False)
    assert proc.returncode == 0, (
        f"{' '.join(command)} failed in the image:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return proc


def _runs(db: str) -> dict[str, str]:
    return dict(sql(db, "select run_id, status from runs"))


def test_code_location_serves_over_grpc_and_answers_the_health_check(stack):
    port, name = free_port(), f"driftline-ct-grpc-{uuid.uuid4().hex[:6]}"
    command = ["dagster", "api", "grpc", "-h", "127.0.0.1", "-p", str(port), "--module-name", "definitions"]
    docker("run", "-d", "--rm", *_container_args(stack, name), stack["image"], *command)
    try:
        deadline, health = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            health = docker("exec", name, "dagster", "api", "grpc-health-check", "-p", str(port), check=False)
            if health.returncode == 0:
                break
            time.sleep(2)
        assert health is not None and health.returncode == 0, docker("logs", name, check=False).stderr[-3000:]
        # the same check from outside the container, as the webserver and daemon would reach it
        host = subprocess.run(
            [".venv/bin/dagster", "api", "grpc-health-check", "-p", str(port)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert host.returncode == 0, host.stderr
        from dagster._grpc.client import DagsterGrpcClient

        client = DagsterGrpcClient(port=port, host="127.0.0.1")
        assert client.ping("driftline")["echo"] == "driftline"
        assert "__repository__" in str(client.list_repositories())
    finally:
        docker("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def materialized(stack):
    """The week before in-process; then, in the image, one data-plane partition and a training run."""
    import dagster as dg

    import definitions

    assert definitions.defs.assets is not None
    assets = list(definitions.defs.assets)
    host_env = {**stack["env"], "DRIFTLINE_DATA_DIR": str(stack["data"])}
    resources = k8s_resources(host_env)
    with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
        assert run_data_plane(assets, resources, HOST_DAYS, instance=instance).success
        for day in LABEL_DAYS:
            labels = dg.materialize(
                pick(assets, "raw_labels"), partition_key=day, resources=resources, instance=instance
            )
            assert labels.success
    # the pods' shared volume belongs to the image's user, as a pod's fsGroup would make it
    subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(stack["data"])], check=True)
    before = _runs(stack["dagster_db"])

    started = time.monotonic()
    data_plane = _run_in_image(
        stack,
        "dagster",
        "asset",
        "materialize",
        "-m",
        "definitions",
        "--select",
        DATA_PLANE,
        "--partition",
        CONTAINER_DAY,
    )
    data_plane_s = time.monotonic() - started
    after_data_plane = _runs(stack["dagster_db"])
    training = _run_in_image(
        stack,
        "dagster",
        "asset",
        "materialize",
        "-m",
        "definitions",
        "--select",
        "training_set,fraud_model,model_evaluation",
        "--config-json",
        json.dumps(TRAINING_CONFIG),
    )
    after_training = _runs(stack["dagster_db"])
    data_plane_runs = sorted(set(after_data_plane) - set(before))
    training_runs = sorted(set(after_training) - set(after_data_plane))
    print(f"\nin-container data-plane run {data_plane_runs} ({data_plane_s:.1f} s), training run {training_runs}")
    return {
        "data_plane_runs": data_plane_runs,
        "training_runs": training_runs,
        "runs": after_training,
        "logs": data_plane.stderr + training.stderr,
    }


def test_one_partition_and_one_training_run_succeed_in_the_image(stack, materialized):
    runs = materialized["runs"]
    assert len(materialized["data_plane_runs"]) == 1 and len(materialized["training_runs"]) == 1
    for run_id in materialized["data_plane_runs"] + materialized["training_runs"]:
        assert runs[run_id] == "SUCCESS"
    events = sql(
        stack["dagster_db"],
        "select run_id, asset_key, partition from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    (data_plane_run,), (training_run,) = materialized["data_plane_runs"], materialized["training_runs"]
    in_container = {(key, part) for run, key, part in events if run == data_plane_run}
    for asset in ("raw_transactions", "transaction_features", "online_features"):
        assert (f'["{asset}"]', CONTAINER_DAY) in in_container
    trained = {key for run, key, _ in events if run == training_run}
    assert {'["training_set"]', '["fraud_model"]', '["model_evaluation"]'} <= trained


def test_records_land_in_postgres_redis_and_the_bucket(stack, materialized):
    s3 = stack["s3"]
    # the lake: the container's partition on the bucket
    assert any(f"date={CONTAINER_DAY}" in k for k in s3.keys("lake/raw_transactions/"))
    assert any(f"date={CONTAINER_DAY}" in k for k in s3.keys("lake/transaction_features/"))
    # MLflow: the registered version in Postgres, its artifacts in the bucket
    versions = sql(stack["mlflow_db"], "select name, version, storage_location from model_versions")
    assert len(versions) == 1 and versions[0][2].startswith(f"s3://{s3.bucket}/mlartifacts/"), versions
    assert any(k.endswith("feature_schema.json") for k in s3.keys("mlartifacts/"))
    assert sql(stack["mlflow_db"], "select alias from registered_model_aliases") == [("champion",)]
    # Feast's online store: keys of this project in Redis, written by the container's run
    import redis

    keys = list(redis.Redis(host="127.0.0.1", port=6379).scan_iter(match=f"*{stack['project']}".encode(), count=1000))
    assert keys
    # nothing of MLflow or Dagster on the shared volume either: it holds Feast's repository
    # (feature_store.yaml and its file registry) and the analysts' warehouse views
    on_volume = {p.relative_to(stack["data"]).parts[0] for p in stack["data"].rglob("*") if p.is_file()}
    assert on_volume <= {"feast", "warehouse.duckdb", "warehouse.duckdb.wal"}, on_volume


def test_image_runs_as_non_root_without_compilers(stack):
    out = docker("run", "--rm", stack["image"], "sh", "-c", "id -u; command -v gcc cc g++ || echo none").stdout.split()
    assert out[0] == str(IMAGE_UID) and out[-1] == "none"
