"""A whole local resource set under one folder, small and fast: what tests and benchmarks
materialize against (the embedded defaults, with a small synthetic world)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resources import (
    DataQuality,
    EventSource,
    FeastStore,
    FeatureEngine,
    Lake,
    MlflowRegistry,
    SeldonTarget,
    SyntheticEventSource,
    Warehouse,
)
from testkit.worlds import SMALL_WORLD


def make_resources(
    root: Path, event_source: EventSource | None = None, start_runtime: bool = True, **quality: Any
) -> dict[str, Any]:
    """Every resource the definitions need, file-based under `root`; `quality` sets DataQuality."""
    lake = Lake(root=str(root / "lake"))
    return {
        "event_source": event_source or SyntheticEventSource(**SMALL_WORLD),
        "lake": lake,
        "warehouse": Warehouse(path=str(root / "warehouse.duckdb")),
        "feature_engine": FeatureEngine(threads=2),
        "quality": DataQuality(**quality),
        "feast": FeastStore(lake=lake, repo_dir=str(root / "feast")),
        "mlflow_registry": MlflowRegistry(
            tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "mlartifacts")
        ),
        "seldon_target": SeldonTarget(
            serving_dir=str(root / "serving"), lake=lake, feast_repo=str(root / "feast"), start_runtime=start_runtime
        ),
    }
