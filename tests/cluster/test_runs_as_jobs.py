"""Dagster runs as Kubernetes Jobs: `data_plane_job` for one partition and `training_job`, launched
by `K8sRunLauncher` configured from the Helm values, each run a Job whose pod runs the steps with
`k8s_job_executor` (a Job and pod per step), reporting to PostgreSQL.

What runs where, as under the Helm chart except for the webserver and daemon (no registry here for
their images; no daemon is needed: the instance launches runs when they are submitted):
- the code location: `dagster api grpc --module-name definitions` from the user-code image, in a
  pod (hostNetwork, the `driftline` account), reached by the host at 127.0.0.1;
- the instance: deployment/helm/values.yaml's run launcher section rendered by
  deployment/instance_config.py into a dagster.yaml, in the ConfigMap `dagster-instance` (in-cluster
  config: hostNetwork pods reach the API server, PostgreSQL, Redis and the S3 server on loopback);
- `dagster job launch` in a pod as the `dagster` account (where the chart's daemon would launch);
  the run and step pods as `driftline`, env from the ConfigMap `driftline-env` and the Secret
  `driftline-secrets` as in production;
- the test's own machine reads run status from PostgreSQL and calls run monitoring's health check
  with the same launcher config and a kubeconfig of the `dagster` account.

The small-node override (one 2-core node, no provisioner, no GPU), beside what production renders:
- run pods: requests 100m/256Mi instead of 500m/1Gi; the `data` PVC becomes a hostPath folder
  (the shared volume), the `lake` PVC an emptyDir (the lake is the S3 bucket); hostNetwork;
- step pods: DRIFTLINE_K8S_NODE_PROFILE=small (deployment/k8s_config.py SMALL_NODE_STEP): 100m/256Mi,
  no `nvidia.com/gpu`, no GPU node selector or tolerations; production asks for up to 4 CPUs,
  24Gi and one GPU on the `driftline.io/pool=gpu` nodes.
The history the training window needs (a week of partitions, the labels after it) is written
on the host by the same profile, to the same stores, as in tests/test_user_code_image.py.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from deployment import instance_config as ic
from deployment import k8s_config
from driftline.pipeline import pick, run_data_plane
from resources.profiles import k8s_resources
from seldon.runtime import free_port
from testkit import cluster as kc
from testkit.images import require_image
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
    pytest.mark.cluster,
    pytest.mark.container,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.filterwarnings(
        "ignore::FutureWarning",
        "ignore:Asset job __ephemeral_asset_job__ materializes assets with varying BackfillPolicies",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
HOST_DAYS, CLUSTER_DAY, LABEL_DAYS = PRODUCTION_RUN_HISTORY, PRODUCTION_RUN_DAY, PRODUCTION_RUN_LABEL_DAYS
IMAGE_UID = 10001
WORLD, TRAINING_CONFIG = PRODUCTION_RUN_WORLD, PRODUCTION_RUN_TRAINING
SMALL_RUN_POD = {"requests": {"cpu": "100m", "memory": "256Mi"}}
SECRET_KEYS = ("DRIFTLINE_MLFLOW_TRACKING_URI", "DRIFTLINE_REDIS", *CREDENTIALS)


def small_node_launcher(production: dict, *, image: str, namespace: str, data_dir: Path) -> dict:
    """The production launcher config with the small-node override (module docstring)."""
    volumes = [
        {"name": "data", "hostPath": {"path": str(data_dir), "type": "Directory"}}
        if v["name"] == "data"
        else {"name": v["name"], "emptyDir": {}}
        for v in production["volumes"]
    ]
    run_k8s = {
        "container_config": {"resources": SMALL_RUN_POD},
        "pod_spec_config": {"host_network": True},
    }
    return {
        **production,
        "job_image": image,
        "image_pull_policy": "Never",
        "job_namespace": namespace,
        "volumes": volumes,
        "run_k8s_config": run_k8s,
    }


def _step_job(launcher: dict, op_tags: dict, executor: dict, op: str) -> dict:
    """The step Job k8s_job_executor builds for `op` (its merge order: launcher, executor, op
    tags, per-step override), as a dict, without launching anything."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    base = K8sContainerContext(  # K8sContainerContext.create_for_run's launcher part
        image_pull_policy=launcher.get("image_pull_policy"),
        service_account_name=launcher.get("service_account_name"),
        env_config_maps=launcher.get("env_config_maps"),
        env_secrets=launcher.get("env_secrets"),
        volume_mounts=launcher.get("volume_mounts"),
        volumes=launcher.get("volumes"),
        namespace=launcher.get("job_namespace"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher.get("run_k8s_config") or {}),
    )
    context = base.merge(
        K8sContainerContext(
            service_account_name=executor.get("service_account_name"),
            env_config_maps=executor.get("env_config_maps"),
            env_secrets=executor.get("env_secrets"),
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor.get("step_k8s_config", {})),
        )
    )
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags))).merge(
        K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor.get("per_step_k8s_config", {}).get(op, {}))
        )
    )
    chart = SimpleNamespace(
        job_image=None,
        dagster_home=launcher["dagster_home"],
        instance_config_map=launcher["instance_config_map"],
        postgres_password_secret=None,
    )
    job_config = context.get_k8s_job_config(launcher.get("job_image") or "user-code:0.1.0", chart)
    job = construct_dagster_k8s_job(
        job_config, ["dagster", "api", "execute_step"], f"dagster-step-{op}", context.run_k8s_config
    )
    return job.to_dict()


def _pod_summary(pod_spec: dict) -> dict:
    container = pod_spec["containers"][0]
    return {
        "resources": {k: v for k, v in (container.get("resources") or {}).items() if v},
        "node_selector": pod_spec.get("node_selector"),
        "tolerations": [t.get("key") for t in pod_spec.get("tolerations") or []],
        "volumes": sorted(
            f"{v['name']}:{next(k for k, x in v.items() if k != 'name' and x)}" for v in pod_spec.get("volumes") or []
        ),
        "host_network": pod_spec.get("host_network"),
    }


def test_small_node_override_beside_the_production_pod_specs(tmp_path):
    """The training step's pod as the production values render it, and as the override does."""
    production = ic.run_launcher_config(ic.load_values(), job_image="registry.example.com/driftline/user-code:0.1.0")
    small = small_node_launcher(production, image="localhost/driftline/user-code:dev", namespace="t", data_dir=tmp_path)
    tags = {k: json.dumps(v) for k, v in k8s_config.ASSET_OP_TAGS["fraud_model"].items()}  # as op tags hold them
    prod = _pod_summary(
        _step_job(production, tags, k8s_config.executor_config("production"), "fraud_model")["spec"]["template"]["spec"]
    )
    node = _pod_summary(
        _step_job(small, tags, k8s_config.executor_config("small"), "fraud_model")["spec"]["template"]["spec"]
    )
    print(f"\nfraud_model step pod, production values: {json.dumps(prod)}")
    print(f"fraud_model step pod, small-node override: {json.dumps(node)}")
    assert prod["resources"]["requests"]["nvidia.com/gpu"] == "1" and prod["node_selector"] == {
        "driftline.io/pool": "gpu"
    }
    assert "data:persistent_volume_claim" in prod["volumes"] and not prod["host_network"]
    assert node["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}}
    assert not node["node_selector"] and not node["tolerations"] and node["host_network"]
    assert "data:host_path" in node["volumes"] and "lake:empty_dir" in node["volumes"]


@pytest.fixture(scope="module")
def stack(namespace, tmp_path_factory, request):
    """The image on the node, a bucket, fresh databases, the pods' ConfigMaps and Secret, the code
    location pod, and the host instance (launching as the `dagster` account)."""
    cluster, ns = namespace.cluster, namespace.name
    why = kc.node_is_this_machine(cluster)
    if why:
        pytest.skip(why)
    image = require_image("user-code")
    kc.load_image(image)
    suffix = uuid.uuid4().hex[:10]
    dagster_db, mlflow_db = f"driftline_k8s_dagster_{suffix}", f"driftline_k8s_mlflow_{suffix}"
    for db in (dagster_db, mlflow_db):
        sql("postgres", f'CREATE DATABASE "{db}"')
    project = f"driftline_k8s_{suffix}"

    def cleanup():  # also when the setup below fails
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        for key in client.scan_iter(match=f"*{project}".encode(), count=1000):
            client.delete(key)
        for db in (dagster_db, mlflow_db):
            sql("postgres", f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    request.addfinalizer(cleanup)
    root = tmp_path_factory.mktemp("runs_as_jobs")
    home, data = root / "dagster_home", root / "data"
    home.mkdir()
    data.mkdir()
    grpc_port = free_port()
    with moto_s3("driftline-k8s") as s3, pytest.MonkeyPatch.context() as mp:
        s3.client().create_bucket(Bucket="driftline-dagster-logs")
        env = {
            "DRIFTLINE_ENV": "k8s",
            "DRIFTLINE_EXECUTOR": "k8s",
            "DRIFTLINE_K8S_NODE_PROFILE": "small",
            "DRIFTLINE_FEATURE_ENGINE": "duckdb",
            "DRIFTLINE_LAKE_URL": f"s3://{s3.bucket}/lake",
            "DRIFTLINE_S3_ENDPOINT_URL": s3.endpoint,
            "DRIFTLINE_DATA_DIR": "/data",
            "DRIFTLINE_MLFLOW_TRACKING_URI": f"{SA_PG}/{mlflow_db}",
            "DRIFTLINE_MLFLOW_ARTIFACTS": f"s3://{s3.bucket}/mlartifacts",
            "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
            "DRIFTLINE_REDIS": "127.0.0.1:6379",
            "DRIFTLINE_FEAST_PROJECT": project,
            "DRIFTLINE_START_DATE": HOST_DAYS[0],
            "DRIFTLINE_SELDON_NAMESPACE": ns,
            **WORLD,
            **CREDENTIALS,
        }
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        kc.config_map(cluster, ns, "driftline-env", {k: v for k, v in env.items() if k not in SECRET_KEYS})
        kc.secret(cluster, ns, "driftline-secrets", {k: env[k] for k in SECRET_KEYS})

        production = ic.run_launcher_config(ic.load_values())
        launcher = small_node_launcher(production, image=image, namespace=ns, data_dir=data)
        compute_logs = {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": {
                "bucket": "driftline-dagster-logs",
                "prefix": "compute-logs",
                "region": "us-east-1",
                "endpoint_url": s3.endpoint,
                "skip_empty_files": True,
            },
        }
        in_pods = ic.instance(f"{SA_PG}/{dagster_db}", {**launcher, "load_incluster_config": True}, compute_logs)
        kc.config_map(cluster, ns, "dagster-instance", {"dagster.yaml": ic.dump(in_pods)})
        host_launcher = {
            **launcher,
            "load_incluster_config": False,
            "kubeconfig_file": str(namespace.kubeconfigs[k8s_config.LAUNCHER_SERVICE_ACCOUNT]),
        }
        (home / "dagster.yaml").write_text(ic.dump(ic.instance(f"{SA_PG}/{dagster_db}", host_launcher)))
        print(f"\nhost dagster.yaml:\n{(home / 'dagster.yaml').read_text()}")

        code_location = _start_code_location(cluster, ns, image, grpc_port, data)
        yield {
            "cluster": cluster,
            "namespace": ns,
            "image": image,
            "s3": s3,
            "env": env,
            "home": home,
            "data": data,
            "dagster_db": dagster_db,
            "mlflow_db": mlflow_db,
            "project": project,
            "grpc_port": grpc_port,
            "code_location": code_location,
            "launcher": launcher,
            "production": production,
        }


def _start_code_location(cluster: kc.Cluster, ns: str, image: str, port: int, data: Path) -> str:
    """The user-code deployment's server as a pod (the chart's Deployment, reduced to a pod):
    hostNetwork so that the host's launcher reaches it on loopback; its container image is
    recorded in every run's origin (DAGSTER_CURRENT_IMAGE, as the chart sets it)."""

    name = "driftline-code-location"
    pod = {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "driftline"}},
        "spec": {
            "serviceAccountName": k8s_config.RUN_SERVICE_ACCOUNT,
            "hostNetwork": True,
            "containers": [
                {
                    "name": "user-code",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "args": [
                        "dagster",
                        "api",
                        "grpc",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "--module-name",
                        "definitions",
                    ],
                    "env": [{"name": "DAGSTER_CURRENT_IMAGE", "value": image}],
                    "envFrom": [
                        {"configMapRef": {"name": "driftline-env"}},
                        {"secretRef": {"name": "driftline-secrets"}},
                    ],
                    "resources": {"requests": SMALL_RUN_POD["requests"]},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "hostPath": {"path": str(data), "type": "Directory"}}],
        },
    }
    cluster.api("CoreV1Api").create_namespaced_pod(ns, pod)
    deadline = time.monotonic() + 600  # importing definitions on a busy 2-core node: 40 s to minutes
    health = None
    while time.monotonic() < deadline:
        health = subprocess.run(
            [str(ROOT / ".venv/bin/dagster"), "api", "grpc-health-check", "-p", str(port)],
            capture_output=True,
            text=True,
            check=False,
        )
        if health.returncode == 0:
            return name
        time.sleep(3)
    core = cluster.api("CoreV1Api")
    status = core.read_namespaced_pod(name, ns).status
    logs = core.read_namespaced_pod_log(name, ns, tail_lines=50) if status.phase != "Pending" else ""
    raise AssertionError(
        f"code location pod not serving on :{port} ({status.phase}, {status.container_statuses}): "
        f"{health and health.stderr}\n{logs}"
    )


def _launch(stack, job: str, *, tags: dict | None = None, config: dict | None = None) -> str:
    """`dagster job launch` against the code location, run where the chart's webserver and daemon
    run: in a pod, as the `dagster` account, with the ConfigMap's instance. (From the test's own
    machine it would not work: K8sRunLauncher hands the run pod the launching instance itself,
    and a launcher configured with a kubeconfig file fails in a pod that has no such file.)
    Returns the run id."""
    run_id = str(uuid.uuid4())
    args = ["dagster", "job", "launch", "--grpc-host", "127.0.0.1", "--grpc-port", str(stack["grpc_port"])]
    args += ["-j", job, "--run-id", run_id]
    if tags:
        args += ["--tags", json.dumps(tags)]
    if config:
        args += ["--config-json", json.dumps(config)]
    name = f"launch-{job.replace('_', '-')}-{run_id[:8]}"
    pod = {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "driftline"}},
        "spec": {
            "serviceAccountName": k8s_config.LAUNCHER_SERVICE_ACCOUNT,
            "hostNetwork": True,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "launch",
                    "image": stack["image"],
                    "imagePullPolicy": "Never",
                    "args": args,
                    "envFrom": [{"secretRef": {"name": "driftline-secrets"}}],  # the compute-log bucket's keys
                    "resources": {"requests": SMALL_RUN_POD["requests"]},
                    "volumeMounts": [
                        {"name": "instance", "mountPath": f"{ic.DAGSTER_HOME}/dagster.yaml", "subPath": "dagster.yaml"}
                    ],
                }
            ],
            "volumes": [{"name": "instance", "configMap": {"name": "dagster-instance"}}],
        },
    }
    core = stack["cluster"].api("CoreV1Api")
    core.create_namespaced_pod(stack["namespace"], pod)
    deadline, phase = time.monotonic() + 300, None
    while time.monotonic() < deadline:
        phase = core.read_namespaced_pod(name, stack["namespace"]).status.phase
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(2)
    log = core.read_namespaced_pod_log(name, stack["namespace"], tail_lines=40) if phase else ""
    assert phase == "Succeeded", f"dagster job launch {job} in pod {name}: {phase}\n{log}"
    return run_id


def _wait(stack, run_id: str, timeout_s: float = 1500) -> str:
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run.status.value
            time.sleep(5)
    return "TIMEOUT"


def _failures(stack, run_id: str) -> str:
    """The run's failure events with their errors, from the instance (what the UI would show)."""
    import dagster as dg

    lines = []
    with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is not None and (
                event.is_failure or event.event_type_value in ("PIPELINE_FAILURE", "ASSET_CHECK_EVALUATION")
            ):
                error = getattr(event.event_specific_data, "error", None)
                lines.append(f"{event.event_type_value} {event.step_key or ''}: {record.user_message}")
                check = getattr(event.event_specific_data, "description", None)
                if check:
                    lines.append(f"  check: {check}")
                if error is not None:
                    lines.append(error.to_string()[-3000:])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def history(stack):
    """The week before the cluster's partition and the labels after it, written on the host."""
    import dagster as dg

    import definitions

    assert definitions.defs.assets is not None
    assets = list(definitions.defs.assets)
    host_env = {**stack["env"], "DRIFTLINE_DATA_DIR": str(stack["data"]), "DRIFTLINE_EXECUTOR": "in_process"}
    resources = k8s_resources(host_env)
    started = time.monotonic()
    with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
        assert run_data_plane(assets, resources, HOST_DAYS, instance=instance).success
        for day in LABEL_DAYS:
            labels = dg.materialize(
                pick(assets, "raw_labels"), partition_key=day, resources=resources, instance=instance
            )
            assert labels.success
    subprocess.run(["chown", "-R", f"{IMAGE_UID}:{IMAGE_UID}", str(stack["data"])], check=True)
    print(f"\nhost history: {len(HOST_DAYS)} days + {len(LABEL_DAYS)} label days in {time.monotonic() - started:.0f} s")


@pytest.fixture(scope="module")
def runs(stack, history):
    """data_plane_job for one partition, then training_job: each launched, waited for."""
    out = {}
    for job, kwargs in (
        ("data_plane_job", {"tags": {"dagster/partition": CLUSTER_DAY}}),
        ("training_job", {"config": TRAINING_CONFIG}),
    ):
        started = time.monotonic()
        run_id = _launch(stack, job, **kwargs)
        status = _wait(stack, run_id)
        jobs = kc.finished_jobs(stack["cluster"], stack["namespace"], run_id)
        out[job] = {"run_id": run_id, "status": status, "seconds": round(time.monotonic() - started), "jobs": jobs}
        names = sorted(j.metadata.name for j in jobs)
        print(f"\n{job}: run {run_id} {status} in {out[job]['seconds']} s; Jobs {names}")
        if status != "SUCCESS":
            print(_failures(stack, run_id))
            print(kc.pod_logs(stack["cluster"], stack["namespace"], run_id))
    return out


def test_runs_succeed(runs):
    """Both runs end in SUCCESS (the training run also needs the model to pass the evaluation gate:
    the failure events, with the gate's reason, are printed above when it does not)."""
    for job, run in runs.items():
        assert run["status"] == "SUCCESS", f"{job} {run['run_id']}: {run['status']} (events and pod logs above)"


def test_each_run_is_a_job_with_a_job_per_step(stack, runs):
    for job, run in runs.items():
        names = sorted(j.metadata.name for j in run["jobs"])
        components = {j.metadata.labels.get("app.kubernetes.io/component") for j in run["jobs"]}
        assert {"run_worker", "step_worker"} <= components, names
        ops = {j.metadata.labels.get("dagster/op") for j in run["jobs"]} - {None}
        steps = [j for j in run["jobs"] if j.metadata.labels.get("app.kubernetes.io/component") == "step_worker"]
        assert steps and all(j.status.succeeded or j.status.failed for j in steps), names  # each step ran
        if job == "training_job":
            assert {"training_set", "fraud_model", "model_evaluation"} <= ops
        else:
            assert {"raw_transactions", "transaction_features", "online_features"} <= ops
    # the pods ran as the run account, on the host network, with the small-node requests
    pods = kc.pods(stack["cluster"], stack["namespace"], runs["training_job"]["run_id"])
    for pod in pods:
        assert pod.spec.service_account_name == k8s_config.RUN_SERVICE_ACCOUNT and pod.spec.host_network
        requests = pod.spec.containers[0].resources.requests or {}
        assert "nvidia.com/gpu" not in requests and requests.get("cpu") in ("100m", None), requests
    step = next(p for p in pods if (p.metadata.labels or {}).get("dagster/op") == "fraud_model")
    requests = step.spec.containers[0].resources.requests
    print(f"\nfraud_model step pod in the cluster: {step.metadata.name} requests {requests}")


def test_materializations_reach_the_instance_postgres(stack, runs):
    events = sql(
        stack["dagster_db"],
        "select run_id, asset_key, partition from event_logs where dagster_event_type = 'ASSET_MATERIALIZATION'",
    )
    data_plane, training = runs["data_plane_job"]["run_id"], runs["training_job"]["run_id"]
    in_cluster = {(key, part) for run, key, part in events if run == data_plane}
    for asset in ("raw_transactions", "transaction_features", "online_features"):
        assert (f'["{asset}"]', CLUSTER_DAY) in in_cluster
    trained = {key for run, key, _ in events if run == training}
    assert {'["training_set"]', '["fraud_model"]', '["model_evaluation"]'} <= trained
    s3 = stack["s3"]
    assert any(f"date={CLUSTER_DAY}" in k for k in s3.keys("lake/transaction_features/"))
    versions = sql(stack["mlflow_db"], "select name, version, storage_location from model_versions")
    assert len(versions) == 1 and versions[0][2].startswith(f"s3://{s3.bucket}/mlartifacts/")
    # step logs went to the object store (the values' S3ComputeLogManager, on the test's bucket)
    assert s3.client().list_objects_v2(Bucket="driftline-dagster-logs", Prefix="compute-logs/").get("KeyCount", 0) > 0


def test_launcher_account_reads_run_health_and_may_not_touch_secrets(stack, runs, namespace):
    """Run monitoring's call (the daemon's) as the `dagster` account; a verb outside its Role is
    refused by the API server with 403."""
    import dagster as dg
    from kubernetes.client.exceptions import ApiException

    with dg.DagsterInstance.from_config(str(stack["home"])) as instance:
        run = instance.get_run_by_id(runs["training_job"]["run_id"])
        assert run is not None
        health = instance.run_launcher.check_run_worker_health(run)
        print(f"\ncheck_run_worker_health as `dagster`: {health.status} {health.msg or ''}")
        assert health.status.value == "SUCCESS"
    core = namespace.cluster.api("CoreV1Api", str(namespace.kubeconfigs[k8s_config.LAUNCHER_SERVICE_ACCOUNT]))
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_secret(stack["namespace"])
    assert refused.value.status == 403
    print(f"list secrets as `dagster`: {refused.value.status} {json.loads(str(refused.value.body))['message']}")


def test_yaml_is_what_the_values_render(stack):
    """The launcher config the pods got is the values' section plus only the documented override."""

    stored = stack["cluster"].api("CoreV1Api").read_namespaced_config_map("dagster-instance", stack["namespace"])
    launcher = yaml.safe_load(stored.data["dagster.yaml"])["run_launcher"]["config"]
    production = stack["production"]
    changed = {k for k in set(launcher) | set(production) if launcher.get(k) != production.get(k)}
    assert changed == {"job_image", "image_pull_policy", "job_namespace", "volumes", "run_k8s_config"}
    assert launcher["env_config_maps"] == ["driftline-env"] and launcher["env_secrets"] == ["driftline-secrets"]
