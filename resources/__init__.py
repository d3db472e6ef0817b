"""The one place that picks resources per environment (DRIFTLINE_ENV=local|k8s)."""

from __future__ import annotations

import os

from .event_source import EventSource, LandingFolderEventSource, SyntheticEventSource
from .feast_store import FeastStore
from .feature_engine import FeatureEngine
from .lake import Lake
from .mlflow_registry import MlflowRegistry
from .quality import DataQuality
from .seldon_target import SeldonTarget
from .warehouse import Warehouse

__all__ = ["EventSource", "LandingFolderEventSource", "SyntheticEventSource", "FeastStore", "FeatureEngine", "Lake",
           "MlflowRegistry", "DataQuality", "SeldonTarget", "Warehouse", "resources_for_env"]


def _event_source() -> EventSource:
    """DRIFTLINE_EVENT_SOURCE=synthetic (default) | landing; synthetic knobs via DRIFTLINE_SYNTH_*."""
    kind = os.environ.get("DRIFTLINE_EVENT_SOURCE", "synthetic")
    if kind == "landing":
        return LandingFolderEventSource(path=os.environ.get("DRIFTLINE_LANDING_DIR", "data/landing"))
    if kind != "synthetic":
        raise ValueError(f"DRIFTLINE_EVENT_SOURCE must be 'synthetic' or 'landing', got {kind!r}")
    env = os.environ
    return SyntheticEventSource(
        seed=int(env.get("DRIFTLINE_SYNTH_SEED", 7)),
        events_per_day=int(env.get("DRIFTLINE_SYNTH_EVENTS_PER_DAY", 4_000)),
        n_users=int(env.get("DRIFTLINE_SYNTH_USERS", 5_000)),
        n_merchants=int(env.get("DRIFTLINE_SYNTH_MERCHANTS", 800)),
        fraud_rate=float(env.get("DRIFTLINE_SYNTH_FRAUD_RATE", 0.004)),
        drift_scenario=env.get("DRIFTLINE_DRIFT_SCENARIO", "none"),
        drift_start=env.get("DRIFTLINE_DRIFT_START") or None,
        drift_ramp_days=int(env.get("DRIFTLINE_DRIFT_RAMP_DAYS", 3)),
    )


def local_resources(data_dir: str = "data") -> dict:
    """Embedded defaults: everything file-based under `data_dir`."""
    return {
        "event_source": _event_source(),
        "lake": Lake(root=f"{data_dir}/lake"),
        "warehouse": Warehouse(path=f"{data_dir}/warehouse.duckdb"),
        "feature_engine": FeatureEngine(),
        "quality": DataQuality(),
        "feast": FeastStore(repo_dir=f"{data_dir}/feast", lake_root=f"{data_dir}/lake"),
        "mlflow_registry": MlflowRegistry(tracking_uri=f"sqlite:///{data_dir}/mlflow.db",
                                          artifact_root=f"{data_dir}/mlartifacts"),
        "seldon_target": SeldonTarget(serving_dir=f"{data_dir}/serving", lake_root=f"{data_dir}/lake",
                                      feast_repo=f"{data_dir}/feast",
                                      ingress_url=os.environ.get("DRIFTLINE_INGRESS_URL", "http://127.0.0.1:8080")),
    }


def resources_for_env(env: str | None = None) -> dict:
    env = env or os.environ.get("DRIFTLINE_ENV", "local")
    if env == "local":
        return local_resources(os.environ.get("DRIFTLINE_DATA_DIR", "data"))
    if env == "k8s":  # Postgres, Redis, Spark, mounted object store: see resources/profiles.py
        from .profiles import k8s_resources

        return k8s_resources()
    raise ValueError(f"DRIFTLINE_ENV must be 'local' or 'k8s', got {env!r}")
