"""The one place that picks resources per environment (DRIFTLINE_ENV=local|k8s), from the
settings of `driftline.settings` read when the definitions load."""

from __future__ import annotations

from collections.abc import Mapping

from driftline import settings

from .canary_policy import CanaryPolicy
from .event_source import EventSource, LandingFolderEventSource, SyntheticEventSource
from .feast_store import FeastStore
from .feature_engine import FeatureEngine
from .lake import Lake
from .mlflow_registry import MlflowRegistry
from .quality import DataQuality
from .seldon_target import SeldonTarget
from .warehouse import Warehouse

__all__ = [
    "CanaryPolicy",
    "DataQuality",
    "EventSource",
    "FeastStore",
    "FeatureEngine",
    "Lake",
    "LandingFolderEventSource",
    "MlflowRegistry",
    "SeldonTarget",
    "SyntheticEventSource",
    "Warehouse",
    "configured_event_source",
    "local_resources",
    "resources_for_env",
]


def configured_event_source(env: Mapping[str, str] | None = None) -> EventSource:
    """DRIFTLINE_EVENT_SOURCE=synthetic (default; DRIFTLINE_SYNTH_* / DRIFTLINE_DRIFT_* override
    the world's defaults) | landing (DRIFTLINE_LANDING_DIR)."""
    s = settings.load(env)
    if s.event_source == "landing":
        return LandingFolderEventSource(path=s.landing_dir)
    if s.event_source != "synthetic":
        raise ValueError(f"DRIFTLINE_EVENT_SOURCE must be 'synthetic' or 'landing', got {s.event_source!r}")
    return SyntheticEventSource(**s.synthetic_world)


def _feature_engine(s: settings.Settings) -> FeatureEngine:
    if s.feature_engine != "spark":
        return FeatureEngine()
    from .profiles import spark_resource

    return FeatureEngine(engine="spark", spark=spark_resource(s.spark_master))


def local_resources(data_dir: str | None = None, canary: CanaryPolicy | None = None) -> dict:
    """Embedded defaults: everything file-based under `data_dir` (default DRIFTLINE_DATA_DIR)."""
    s = settings.load()
    data_dir = data_dir or s.data_dir
    lake = Lake(root=f"{data_dir}/lake")
    return {
        "event_source": configured_event_source(),
        "lake": lake,
        "warehouse": Warehouse(path=f"{data_dir}/warehouse.duckdb"),
        "feature_engine": _feature_engine(s),
        "quality": DataQuality(),
        "feast": FeastStore(lake=lake, repo_dir=f"{data_dir}/feast"),
        "mlflow_registry": MlflowRegistry(
            tracking_uri=f"sqlite:///{data_dir}/mlflow.db", artifact_root=f"{data_dir}/mlartifacts", ui_url=s.mlflow_ui
        ),
        "seldon_target": SeldonTarget(
            serving_dir=f"{data_dir}/serving",
            lake=lake,
            feast_repo=f"{data_dir}/feast",
            ingress_url=s.ingress_url,
            ingress_jwt_secret=settings.secret("DRIFTLINE_INGRESS_JWT_SECRET"),
            ingress_admin_token=settings.secret("DRIFTLINE_INGRESS_ADMIN_TOKEN"),
            canary=canary or CanaryPolicy(),
        ),
    }


def resources_for_env(env: str | None = None, canary: CanaryPolicy | None = None) -> dict:
    """The resource set of `env` (default DRIFTLINE_ENV); `canary`: the rollout policy."""
    env = env or settings.load().env
    if env == "local":
        return local_resources(canary=canary)
    if env == "k8s":  # Postgres, Redis, Spark, mounted object store: see resources/profiles.py
        from .profiles import k8s_resources

        return k8s_resources(canary=canary)
    raise ValueError(f"DRIFTLINE_ENV must be 'local' or 'k8s', got {env!r}")
