"""The Dagster instance (`dagster.yaml`) that the Helm chart renders from deployment/helm/values.yaml,
for an instance outside the chart: a webserver, daemon or test process on a machine that launches
runs into a cluster with `K8sRunLauncher`, and the run pods' own copy (the ConfigMap named by
`instance_config_map`).

The run launcher section is the chart's rendering of `runLauncher.config.k8sRunLauncher`
(templates/helpers/instance/_run-launcher.tpl, chart 1.13): camelCase keys to the launcher's
snake_case config, `{name: ...}` lists to names, `runK8sConfig` to `run_k8s_config`, plus what the
chart adds itself (DAGSTER_HOME, the instance ConfigMap, the service account). The run pods'
account is `deployment.k8s_config.RUN_SERVICE_ACCOUNT`: under the chart the code location's
container context sets it; here the launcher states it. Plain dicts, no dagster import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployment.k8s_config import RUN_SERVICE_ACCOUNT

VALUES = Path(__file__).resolve().parent / "helm" / "values.yaml"
DAGSTER_HOME = "/opt/dagster/home"  # the user-code image's DAGSTER_HOME (writable by its user)

# runK8sConfig (values) -> run_k8s_config (dagster.yaml), as the chart's template maps them
_RUN_K8S_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}
# launcher values the chart copies as they are, under their snake_case name
_PLAIN_KEYS = {
    "jobNamespace": "job_namespace",
    "imagePullPolicy": "image_pull_policy",
    "loadInclusterConfig": "load_incluster_config",
    "kubeconfigFile": "kubeconfig_file",
    "volumeMounts": "volume_mounts",
    "volumes": "volumes",
    "labels": "labels",
    "resources": "resources",
    "schedulerName": "scheduler_name",
    "securityContext": "security_context",
    "failPodOnRunFailure": "fail_pod_on_run_failure",
}


def load_values(path: str | Path = VALUES) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _names(items: list | None) -> list[str]:
    return [item["name"] if isinstance(item, dict) else item for item in items or []]


def run_launcher_config(
    values: dict,
    *,
    job_image: str | None = None,
    instance_config_map: str = "dagster-instance",
    service_account_name: str = RUN_SERVICE_ACCOUNT,
    dagster_home: str = DAGSTER_HOME,
) -> dict:
    """`run_launcher.config` of K8sRunLauncher from the values' `runLauncher` section."""
    section = values["runLauncher"]
    if section.get("type") != "K8sRunLauncher":
        raise ValueError(f"runLauncher.type is {section.get('type')!r}: only K8sRunLauncher is rendered here")
    launcher = section["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        snake: launcher[camel] for camel, snake in _PLAIN_KEYS.items() if launcher.get(camel) not in (None, [], {})
    }
    config |= {
        "dagster_home": dagster_home,
        "instance_config_map": instance_config_map,
        "service_account_name": service_account_name,
        "env_config_maps": _names(launcher.get("envConfigMaps")),
        "env_secrets": _names(launcher.get("envSecrets")),
    }
    if job_image:
        config["job_image"] = job_image
    run_k8s = launcher.get("runK8sConfig") or {}
    unknown = set(run_k8s) - set(_RUN_K8S_KEYS)
    if unknown:
        raise ValueError(f"runK8sConfig keys not rendered here: {sorted(unknown)}")
    if run_k8s:
        config["run_k8s_config"] = {_RUN_K8S_KEYS[k]: v for k, v in run_k8s.items()}
    return config


def instance(postgres_url: str, run_launcher: dict, compute_logs: dict | None = None) -> dict:
    """dagster.yaml as a dict: storage on Postgres (a `postgresql+psycopg2://` URL), the launcher,
    and runs launched when submitted: Dagster's default coordinator is the queue, which only a
    daemon drains (the chart's daemon does; an instance outside it may have none)."""
    out: dict[str, Any] = {
        "storage": {"postgres": {"postgres_url": postgres_url}},
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": run_launcher},
        "telemetry": {"enabled": False},
    }
    if compute_logs:
        out["compute_logs"] = compute_logs
    return out


def dump(config: dict) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False)
