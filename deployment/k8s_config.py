"""Per-asset Kubernetes settings (`dagster-k8s/config` op tags) and the k8s executor config.

Plain dicts, no dagster_k8s import: assets import this at code-location load. With the
`k8s_job_executor` every step runs in its own pod, and that pod takes the `dagster-k8s/config`
tag of the step's op (for an asset: `@dg.asset(op_tags=...)`); under the default executor the
tags are inert, so the local profile is unaffected. tests/test_deployment_k8s_config.py checks
every dict against the schemas dagster-k8s validates at run time and builds the real Job.
"""

from __future__ import annotations

from driftline import settings

K8S_CONFIG_TAG = "dagster-k8s/config"

# The Kubernetes service accounts (deployment/k8s/rbac.yaml): the webserver and daemon launch run
# Jobs as LAUNCHER_SERVICE_ACCOUNT; the code location server, run pods and step pods run as
# RUN_SERVICE_ACCOUNT (step Jobs, the SeldonDeployment).
LAUNCHER_SERVICE_ACCOUNT = "dagster"
RUN_SERVICE_ACCOUNT = "driftline"

# The Dagster concurrency pool of the GPU training step (`@dg.asset(pool=GPU_POOL)` on fraud_model);
# its limit is the instance's `concurrency.pools` (deployment/helm/values.yaml).
GPU_POOL = "gpu"

GPU_NODE_SELECTOR = {"driftline.io/pool": "gpu"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def _tag(container: dict, pod_spec: dict | None = None) -> dict:
    config = {"container_config": container}
    if pod_spec:
        config["pod_spec_config"] = pod_spec
    return {K8S_CONFIG_TAG: config}


# transaction_features (Spark local[*] in the step pod: CPUs here are Spark's cores).
FEATURES = _tag(
    {
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}},
        "env": [{"name": "DRIFTLINE_SPARK_MASTER", "value": "local[4]"}],
    }
)

# raw_transactions, raw_labels, user_state, merchant_state, training_set: DuckDB/Arrow steps.
DATA_STEP = _tag({"resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}})

# fraud_model: Lightning on one GPU, on the GPU node pool only.
TRAINING_GPU = _tag(
    {
        "resources": {
            "requests": {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "24Gi", "nvidia.com/gpu": "1"},
        }
    },
    {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
)

# feast_registry, online_features, model_evaluation, seldon_deployment, drift_report: light steps.
LIGHT_STEP = _tag({"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}})

# Which asset gets which tag (the lead wires these as op_tags; tests check the names exist).
ASSET_OP_TAGS = {
    "raw_transactions": DATA_STEP,
    "raw_labels": DATA_STEP,
    "transaction_features": FEATURES,
    "user_state": DATA_STEP,
    "merchant_state": DATA_STEP,
    "feast_registry": LIGHT_STEP,
    "online_features": LIGHT_STEP,
    "training_set": DATA_STEP,
    "fraud_model": TRAINING_GPU,
    "model_evaluation": LIGHT_STEP,
}

# One small node (kind, minikube, the cluster tests' 2-core node; DRIFTLINE_K8S_NODE_PROFILE=small):
# every step asks for little, has no limits, no GPU and no GPU node pool. Op tags are merged after
# the executor's step_k8s_config, so only `per_step_k8s_config` (merged last) can lower them, and
# SHALLOW replaces `resources`, `node_selector` and `tolerations` instead of deep-merging into them.
# The run pods' side (requests, volumes without a provisioner) is the run launcher's config.
SMALL_NODE_STEP = {
    "container_config": {"resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}},
    "pod_spec_config": {"node_selector": {}, "tolerations": []},
    "merge_behavior": "SHALLOW",
}
NODE_PROFILES = ("production", "small")


def executor_config(node_profile: str = "production") -> dict:
    """`k8s_job_executor.configured(...)` config for the k8s profile's jobs. The image, env and
    instance settings are inherited from the run launcher / user-code deployment."""
    if node_profile not in NODE_PROFILES:
        raise ValueError(f"DRIFTLINE_K8S_NODE_PROFILE must be one of {NODE_PROFILES}, got {node_profile!r}")
    config: dict = {
        "max_concurrent": 4,
        "service_account_name": RUN_SERVICE_ACCOUNT,  # stated, not inherited: step pods need rbac.yaml's Role
        "step_k8s_config": {"job_spec_config": {"ttl_seconds_after_finished": 3600, "backoff_limit": 0}},
        "env_config_maps": ["driftline-env"],
        "env_secrets": ["driftline-secrets"],
    }
    if node_profile == "small":
        config["per_step_k8s_config"] = dict.fromkeys(ASSET_OP_TAGS, SMALL_NODE_STEP)
    return config


# Read when the code location loads (definitions.py imports it through the assets), like the
# op tags above; the run pod's env (ConfigMap driftline-env) decides for its step pods.
K8S_EXECUTOR_CONFIG = executor_config(settings.get("DRIFTLINE_K8S_NODE_PROFILE") or "production")

# The run launcher section that the Helm chart renders into dagster.yaml from
# deployment/helm/values.yaml (runLauncher.config.k8sRunLauncher), in dagster.yaml form, with
# the run pods' effective account: the chart renders the webserver's (`dagster`) and the code
# location's container context replaces it with RUN_SERVICE_ACCOUNT; a dagster.yaml written
# outside the chart must state it, as here.
K8S_RUN_LAUNCHER_CONFIG = {
    "load_incluster_config": True,
    "job_namespace": "driftline",
    "image_pull_policy": "IfNotPresent",
    "service_account_name": RUN_SERVICE_ACCOUNT,
    "dagster_home": {"env": "DAGSTER_HOME"},
    "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
    "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
    "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}, "driftline-env"],
    "env_secrets": ["driftline-secrets"],
    "volume_mounts": [{"name": "lake", "mountPath": "/lake"}, {"name": "data", "mountPath": "/data"}],
    "volumes": [
        {"name": "lake", "persistentVolumeClaim": {"claimName": "driftline-lake"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "driftline-data"}},
    ],
    "run_k8s_config": {
        "container_config": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
    },
}
