"""Every `DRIFTLINE_*` environment variable, declared once: its name, default and meaning.

This is the only module that reads them (tests/test_settings.py checks it, and that the
README's configuration table lists the same variables). Values are read when `load()` (or
`get()`) is called, not when this module is imported, so a test or a driver can set the
environment first; the only import-time callers are the modules that build the definitions
(definitions.py, and the partitions and partition mappings in assets/), which Dagster loads
once per code-location process. Standard library only: `seldon/` (the serving environment)
may import it too.

Secrets and connection strings that a resource holds (the MLflow tracking URI, the Redis
connection string, the ingress JWT secret / admin token) are passed into the resources as
`dg.EnvVar(name)`, so the Dagster UI shows the variable's name, never its value; `secret=True`
marks them here, and `secret(...)` hands them out.

Usage:
    from driftline import settings
    s = settings.load()            # or settings.load({"DRIFTLINE_ENV": "k8s", ...})
    s.start_date, s.data_dir, s.sensor_interval_s
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One environment variable: `default` None means unset (the consumer's own default applies,
    described in `doc`)."""

    name: str
    default: str | None
    doc: str
    secret: bool = False


_SETTINGS = (
    # ---------------------------------------------------------------- profile and data
    Setting("DRIFTLINE_ENV", "local", "resource set: `local` (embedded, file-based) or `k8s` (resources/profiles.py)"),
    Setting(
        "DRIFTLINE_DATA_DIR",
        None,
        "where generated state lives: warehouse, Feast repo, MLflow, serving (unset: `data`, or `/data` under k8s)",
    ),
    Setting("DRIFTLINE_START_DATE", "2026-10-01", "first daily partition (YYYY-MM-DD)"),
    # ---------------------------------------------------------------- events
    Setting(
        "DRIFTLINE_EVENT_SOURCE",
        "synthetic",
        "`synthetic` (the generated world) or `landing` (files under DRIFTLINE_LANDING_DIR)",
    ),
    Setting("DRIFTLINE_LANDING_DIR", "data/landing", "landing folder of the `landing` event source"),
    # The streaming path (streaming/, docs/streaming.md).
    Setting(
        "DRIFTLINE_BROKER_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2F",
        "event broker: `amqp://` / `amqps://` (RabbitMQ stream queues)",
        secret=True,
    ),
    Setting(
        "DRIFTLINE_STREAM_PARTITIONS",
        "4",
        "partitions per topic (events go to crc32(user_id) mod N); producers and consumers must agree",
    ),
    Setting(
        "DRIFTLINE_STREAM_OFFSETS_DIR",
        None,
        "the stream worker's per-partition offsets, shared by every worker (unset: <data dir>/stream/offsets)",
    ),
    Setting("DRIFTLINE_STREAM_FLUSH_MS", "200", "the stream worker's micro-batch: longest it waits before a push (ms)"),
    # The synthetic world: unset keeps WorldConfig's default (resources/synthetic/config.py).
    Setting("DRIFTLINE_SYNTH_SEED", None, "synthetic world: random seed"),
    Setting("DRIFTLINE_SYNTH_EVENTS_PER_DAY", None, "synthetic world: transactions a day"),
    Setting("DRIFTLINE_SYNTH_USERS", None, "synthetic world: card holders"),
    Setting("DRIFTLINE_SYNTH_MERCHANTS", None, "synthetic world: merchants"),
    Setting("DRIFTLINE_SYNTH_FRAUD_RATE", None, "synthetic world: share of fraudulent transactions"),
    Setting("DRIFTLINE_DRIFT_SCENARIO", None, "synthetic world: `none`, `covariate` or `concept`"),
    Setting("DRIFTLINE_DRIFT_START", None, "synthetic world: first drifted day (YYYY-MM-DD; needed with a scenario)"),
    Setting("DRIFTLINE_DRIFT_RAMP_DAYS", None, "synthetic world: days the drift takes to reach full strength"),
    # ---------------------------------------------------------------- automation and monitoring
    Setting("DRIFTLINE_SENSOR_INTERVAL_S", "30", "interval of the drift, canary and automation sensors (seconds)"),
    Setting("DRIFTLINE_DRIFT_MIN_WINDOWS", "2", "drifted drift reports in a row before drift_sensor retrains"),
    Setting("DRIFTLINE_AUTOMATION", "on", "`off` starts the automation-condition sensor stopped"),
    Setting("DRIFTLINE_LABEL_MATURITY_DAYS", "14", "model_performance judges predictions made this many days ago"),
    Setting("DRIFTLINE_PERFORMANCE_WINDOW_DAYS", "7", "days of predictions model_performance judges together"),
    # ---------------------------------------------------------------- serving
    Setting(
        "DRIFTLINE_INGRESS_URL",
        None,
        "the ingress the canary controller reads (unset: http://127.0.0.1:8080, or the Istio gateway under k8s)",
    ),
    Setting(
        "DRIFTLINE_INGRESS_JWT_SECRET",
        None,
        "HS256 secret: the ingress verifies tokens with it, the canary controller mints admin tokens",
        secret=True,
    ),
    Setting(
        "DRIFTLINE_INGRESS_JWT_PUBLIC_KEY", None, "RS256 public key (PEM) the ingress verifies tokens with", secret=True
    ),
    Setting(
        "DRIFTLINE_INGRESS_ADMIN_TOKEN",
        None,
        "pre-issued admin token for the canary controller (RS256 setups)",
        secret=True,
    ),
    Setting(
        "DRIFTLINE_SERVING_PYTHON",
        None,
        "python of the serving venv that runs the local runtime (unset: .venv-serving/bin/python)",
    ),
    Setting("DRIFTLINE_FEAST_BIN", None, "`feast` the local runtime serves features with (unset: .venv/bin/feast)"),
    Setting("DRIFTLINE_SELDON_NAMESPACE", "driftline", "k8s: namespace of the SeldonDeployment"),
    Setting("DRIFTLINE_SELDON_DEPLOYMENT", "fraud", "k8s: name of the SeldonDeployment"),
    Setting("DRIFTLINE_SELDON_IMAGE", "registry.example.com/driftline/serving:0.1.0", "k8s: the predictors' image"),
    Setting(
        "DRIFTLINE_FEAST_SERVER_URL",
        "http://feast-feature-server.driftline:6566",
        "k8s: the Feast feature server the predictors call",
    ),
    Setting(
        "DRIFTLINE_PROMETHEUS_URL",
        "http://prometheus-operated.monitoring.svc:9090",
        "k8s: the Prometheus the canary controller queries (it scrapes the predictor pods:"
        " deployment/k8s/prometheus-scrape.yaml)",
    ),
    # ---------------------------------------------------------------- k8s backends
    Setting("DRIFTLINE_LAKE_URL", "file:///lake", "k8s: lake root, s3://bucket/prefix or a path / file:// URL"),
    Setting("DRIFTLINE_S3_ENDPOINT_URL", None, "k8s: S3-compatible store's endpoint (unset: AWS S3)"),
    Setting("DRIFTLINE_S3_REGION", None, "k8s: bucket region (unset: AWS_REGION / AWS_DEFAULT_REGION)"),
    Setting(
        "DRIFTLINE_MLFLOW_TRACKING_URI",
        "postgresql+psycopg2://mlflow@postgresql:5432/mlflow",
        "k8s: MLflow tracking and registry store",
        secret=True,
    ),
    Setting("DRIFTLINE_MLFLOW_ARTIFACTS", None, "k8s: MLflow artifact root (unset: <data dir>/mlartifacts)"),
    Setting(
        "DRIFTLINE_MLFLOW_UI",
        None,
        "MLflow UI, for links in metadata (unset: http://127.0.0.1:5000, where `make dev` serves it, or"
        " http://mlflow:5000 under k8s)",
    ),
    Setting("DRIFTLINE_REDIS", "redis-master:6379", "k8s: Feast online store, `host:port[,password=...]`", secret=True),
    Setting("DRIFTLINE_FEAST_PROJECT", "driftline", "k8s: Feast project (also the Redis key suffix)"),
    Setting("DRIFTLINE_SPARK_MASTER", "local[*]", "k8s: Spark master for features"),
    Setting(
        "DRIFTLINE_FEATURE_ENGINE",
        None,
        "transaction_features' engine: `duckdb` or `spark` (unset: duckdb, or spark under k8s)",
    ),
    Setting(
        "DRIFTLINE_EXECUTOR",
        None,
        "how a run executes its steps: `k8s` (a pod per step), `multiprocess` or `in_process`"
        " (unset: multiprocess, or k8s under k8s)",
    ),
    Setting(
        "DRIFTLINE_K8S_NODE_PROFILE",
        "production",
        "step pods' requests under the k8s executor: `production` (the op tags: big requests, the GPU"
        " pool) or `small` (one small node: kind, minikube, the cluster tests; deployment/k8s_config.py)",
    ),
    # ---------------------------------------------------------------- demo, dev and tests
    Setting(
        "DRIFTLINE_GIT_URL",
        None,
        "the repository's web URL (e.g. https://github.com/org/driftline): the UI links each asset to its code"
        " there (unset: local file links only)",
    ),
    Setting("DRIFTLINE_GIT_BRANCH", "main", "the branch of DRIFTLINE_GIT_URL the code links point at"),
    Setting(
        "DRIFTLINE_REPORTS_URL",
        "http://127.0.0.1:3030",
        "where `make dev` serves the drift reports (the data dir's `reports/`) over http; drift_report links there",
    ),
    Setting("DRIFTLINE_DEMO_PROFILE", "full", "`make demo`'s size profile"),
    Setting("DRIFTLINE_SHARED_DIR", None, "tests and CI: the shared folder with schemas/ and k8s/ (unset: ../shared)"),
)

SETTINGS: dict[str, Setting] = {s.name: s for s in _SETTINGS}

# Variable -> (SyntheticEventSource / WorldConfig field, parser).
WORLD_FIELDS = {
    "DRIFTLINE_SYNTH_SEED": ("seed", int),
    "DRIFTLINE_SYNTH_EVENTS_PER_DAY": ("events_per_day", int),
    "DRIFTLINE_SYNTH_USERS": ("n_users", int),
    "DRIFTLINE_SYNTH_MERCHANTS": ("n_merchants", int),
    "DRIFTLINE_SYNTH_FRAUD_RATE": ("fraud_rate", float),
    "DRIFTLINE_DRIFT_SCENARIO": ("drift_scenario", str),
    "DRIFTLINE_DRIFT_START": ("drift_start", str),
    "DRIFTLINE_DRIFT_RAMP_DAYS": ("drift_ramp_days", int),
}

LOCAL_INGRESS_URL = "http://127.0.0.1:8080"  # seldon.ingress of the local runtime
K8S_INGRESS_URL = "http://istio-ingressgateway.istio-system.svc.cluster.local"  # deployment/k8s/istio-auth.yaml
LOCAL_MLFLOW_UI = "http://127.0.0.1:5000"  # `make dev` serves the MLflow UI here
K8S_MLFLOW_UI = "http://mlflow:5000"


def get(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The raw value of a declared variable (empty counts as unset), else its default."""
    setting = SETTINGS[name]  # KeyError: undeclared, add it above (and to the README)
    value = (os.environ if env is None else env).get(name)
    return value if value else setting.default


def secret(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """A secret or connection string for a resource field: `dg.EnvVar(name)` when read from
    os.environ and set (resolved at run time; the UI shows the name only), the plain value
    from an explicit `env` mapping (tests, which do not set os.environ), else the default
    (None or a password-free URL). Dagster is imported here, not at module level."""
    setting = SETTINGS[name]
    if not setting.secret:
        raise ValueError(f"{name} is not declared secret=True; read it with get()")
    if env is not None:
        return env.get(name) or setting.default
    if not os.environ.get(name):
        return setting.default
    import dagster as dg

    return dg.EnvVar(name)


def resolved(value: str | None) -> str | None:
    """A resource field that may hold `dg.EnvVar`: a resource used directly (outside a Dagster
    run, e.g. by the demo driver) keeps the EnvVar, a str holding the variable's *name*."""
    get_value = getattr(value, "get_value", None)  # dg.EnvVar's; Dagster is not imported here
    return get_value() if get_value is not None else value


def _int(name: str, env: Mapping[str, str] | None) -> int | None:
    value = get(name, env)
    return None if value is None else int(value)


def _choice(name: str, env: Mapping[str, str] | None, allowed: tuple[str, ...], default: str) -> str:
    value = get(name, env) or default
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _float(name: str, env: Mapping[str, str] | None) -> float | None:
    value = get(name, env)
    return None if value is None else float(value)


@dataclass(frozen=True)
class Settings:
    """The typed values of one environment (`load()`). Secrets are left out on purpose: they
    reach the resources through `secret()`."""

    env: str
    data_dir: str
    start_date: str
    event_source: str
    landing_dir: str
    synthetic_world: dict[str, Any]  # SyntheticEventSource fields, each parsed to its type
    sensor_interval_s: int
    drift_min_windows: int
    automation: bool
    label_maturity_days: int
    performance_window_days: int
    ingress_url: str
    serving_python: str | None
    seldon_namespace: str
    seldon_deployment: str
    seldon_image: str
    feast_server_url: str
    prometheus_url: str
    lake_url: str
    s3_endpoint_url: str | None
    s3_region: str | None
    mlflow_artifacts: str
    mlflow_ui: str
    feast_project: str
    spark_master: str
    feature_engine: str
    executor: str
    demo_profile: str
    aws_region: str | None  # AWS_REGION / AWS_DEFAULT_REGION (not ours; Spark's S3A region fallback)


def synthetic_world(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The synthetic-world overrides that are set, as SyntheticEventSource fields; unset ones
    keep the world's own defaults (resources/synthetic/config.py)."""
    world = {}
    for name, (field_name, parse) in WORLD_FIELDS.items():
        value = get(name, env)
        if value is not None:
            world[field_name] = parse(value)
    return world


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting now, from `env` (default: os.environ)."""
    source = os.environ if env is None else env
    profile = get("DRIFTLINE_ENV", env)
    if profile not in ("local", "k8s"):
        raise ValueError(f"DRIFTLINE_ENV must be 'local' or 'k8s', got {profile!r}")
    k8s = profile == "k8s"
    data_dir = get("DRIFTLINE_DATA_DIR", env) or ("/data" if k8s else "data")
    values = {
        "env": profile,
        "data_dir": data_dir,
        "start_date": get("DRIFTLINE_START_DATE", env),
        "event_source": get("DRIFTLINE_EVENT_SOURCE", env),
        "landing_dir": get("DRIFTLINE_LANDING_DIR", env),
        "synthetic_world": synthetic_world(env),
        "sensor_interval_s": _int("DRIFTLINE_SENSOR_INTERVAL_S", env),
        "drift_min_windows": _int("DRIFTLINE_DRIFT_MIN_WINDOWS", env),
        "automation": get("DRIFTLINE_AUTOMATION", env) != "off",
        "label_maturity_days": _int("DRIFTLINE_LABEL_MATURITY_DAYS", env),
        "performance_window_days": _int("DRIFTLINE_PERFORMANCE_WINDOW_DAYS", env),
        "ingress_url": get("DRIFTLINE_INGRESS_URL", env) or (K8S_INGRESS_URL if k8s else LOCAL_INGRESS_URL),
        "serving_python": get("DRIFTLINE_SERVING_PYTHON", env),
        "seldon_namespace": get("DRIFTLINE_SELDON_NAMESPACE", env),
        "seldon_deployment": get("DRIFTLINE_SELDON_DEPLOYMENT", env),
        "seldon_image": get("DRIFTLINE_SELDON_IMAGE", env),
        "feast_server_url": get("DRIFTLINE_FEAST_SERVER_URL", env),
        "prometheus_url": get("DRIFTLINE_PROMETHEUS_URL", env),
        "lake_url": get("DRIFTLINE_LAKE_URL", env),
        "s3_endpoint_url": get("DRIFTLINE_S3_ENDPOINT_URL", env),
        "s3_region": get("DRIFTLINE_S3_REGION", env),
        "mlflow_artifacts": get("DRIFTLINE_MLFLOW_ARTIFACTS", env) or f"{data_dir}/mlartifacts",
        "mlflow_ui": get("DRIFTLINE_MLFLOW_UI", env) or (K8S_MLFLOW_UI if k8s else LOCAL_MLFLOW_UI),
        "feast_project": get("DRIFTLINE_FEAST_PROJECT", env),
        "spark_master": get("DRIFTLINE_SPARK_MASTER", env),
        "feature_engine": _choice("DRIFTLINE_FEATURE_ENGINE", env, ("duckdb", "spark"), "spark" if k8s else "duckdb"),
        "executor": _choice(
            "DRIFTLINE_EXECUTOR", env, ("k8s", "multiprocess", "in_process"), "k8s" if k8s else "multiprocess"
        ),
        "demo_profile": get("DRIFTLINE_DEMO_PROFILE", env),
        "aws_region": source.get("AWS_REGION") or source.get("AWS_DEFAULT_REGION") or None,
    }
    assert set(values) == {f.name for f in fields(Settings)}
    return Settings(**values)
