"""Shared fixtures: every test gets its own data directory; nothing touches ./data."""

import pytest

from resources import (DataQuality, FeastStore, FeatureEngine, Lake, MlflowRegistry, SeldonTarget,
                       SyntheticEventSource, Warehouse)

SMALL_WORLD = dict(seed=11, n_users=300, n_merchants=80, events_per_day=600, fraud_rate=0.01)


def make_resources(root, event_source=None, **quality) -> dict:
    return {
        "event_source": event_source or SyntheticEventSource(**SMALL_WORLD),
        "lake": Lake(root=str(root / "lake")),
        "warehouse": Warehouse(path=str(root / "warehouse.duckdb")),
        "feature_engine": FeatureEngine(threads=2),
        "quality": DataQuality(**quality),
        "feast": FeastStore(repo_dir=str(root / "feast"), lake_root=str(root / "lake")),
        "mlflow_registry": MlflowRegistry(tracking_uri=f"sqlite:///{root}/mlflow.db",
                                          artifact_root=str(root / "mlartifacts")),
        "seldon_target": SeldonTarget(serving_dir=str(root / "serving"), lake_root=str(root / "lake"),
                                      feast_repo=str(root / "feast")),
    }


@pytest.fixture
def resources(tmp_path):
    return make_resources(tmp_path)
