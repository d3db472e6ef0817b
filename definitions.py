"""The Dagster code location: assets, checks, jobs, sensors and the resources of the
environment (DRIFTLINE_ENV). Heavy libraries are imported inside asset bodies only; settings
(driftline/settings.py) are read once, here, when the code location loads."""

from __future__ import annotations

import dagster as dg

from assets import conventions, deployment, evaluation, feature_store, features, ingestion, monitoring, training
from assets.freshness import freshness_checks, freshness_sensor
from driftline import settings
from resources import CanaryPolicy, LandingFolderEventSource, resources_for_env
from sensors.canary import build_canary_sensor, canary_rollout_job
from sensors.drift import RetrainPolicy, build_drift_sensor, retrain_job
from sensors.landing import build_landing_sensor

SETTINGS = settings.load()
# The canary rollout: its steps and checks (resources/canary_policy.py holds the defaults; change
# them here, e.g. CanaryPolicy(steps=[5, 20, 50, 100], max_error_rate=0.02)). The
# seldon_deployment asset and canary_sensor both read it from the seldon_target resource.
CANARY_POLICY = CanaryPolicy()
RESOURCES = resources_for_env(SETTINGS.env, canary=CANARY_POLICY)

ASSET_MODULES = [ingestion, features, feature_store, training, evaluation, deployment, monitoring]
# Every asset with its column schema, owners and code references (assets/conventions.py).
ASSETS = conventions.apply(dg.load_assets_from_modules(ASSET_MODULES, include_specs=True))
FRESHNESS_CHECKS = freshness_checks()

data_plane_job = dg.define_asset_job(
    "data_plane_job",
    selection=dg.AssetSelection.groups("ingestion", "features", "feature_store"),
    description="Raw events of a day, validated, their point-in-time features and the feature store.",
)

training_job = dg.define_asset_job(
    "training_job",
    selection=dg.AssetSelection.groups("training"),
    description="Point-in-time training set, Lightning model, evaluation gate.",
)

landing_sensor = build_landing_sensor(
    dg.DefaultSensorStatus.RUNNING
    if isinstance(RESOURCES["event_source"], LandingFolderEventSource)
    else dg.DefaultSensorStatus.STOPPED
)


def _executor():
    """DRIFTLINE_EXECUTOR: each step in its own pod (the production profile's default), one
    process per step (Dagster's default), or all steps in the run's process."""
    if SETTINGS.executor == "in_process":
        return dg.in_process_executor
    if SETTINGS.executor != "k8s":
        return None
    from dagster_k8s import k8s_job_executor

    from deployment.k8s_config import K8S_EXECUTOR_CONFIG

    return k8s_job_executor.configured(K8S_EXECUTOR_CONFIG)


# Automation is on by default; `make demo` shortens the intervals (seconds) and the drift episode.
SENSOR_INTERVAL_S = SETTINGS.sensor_interval_s
drift_sensor = build_drift_sensor(
    RetrainPolicy(min_drifted_windows=SETTINGS.drift_min_windows),
    interval_s=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
canary_sensor = build_canary_sensor(interval_s=SENSOR_INTERVAL_S, default_status=dg.DefaultSensorStatus.RUNNING)
# The assets' AutomationConditions (features follow new raw partitions, drift_report after each
# day, model_performance when labels land) need this sensor; Dagster's default one starts
# stopped. DRIFTLINE_AUTOMATION=off leaves it stopped (then switch it on in the UI).
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING if SETTINGS.automation else dg.DefaultSensorStatus.STOPPED,
)

freshness_checks_sensor = freshness_sensor(
    FRESHNESS_CHECKS,
    dg.DefaultSensorStatus.RUNNING if SETTINGS.automation else dg.DefaultSensorStatus.STOPPED,
)

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[*dg.load_asset_checks_from_modules(ASSET_MODULES), *FRESHNESS_CHECKS],
    jobs=[data_plane_job, training_job, retrain_job, canary_rollout_job],
    sensors=[landing_sensor, drift_sensor, canary_sensor, automation_sensor, freshness_checks_sensor],
    resources=RESOURCES,
    executor=_executor(),
)
