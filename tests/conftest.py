"""Shared fixtures: every test gets its own data directory; nothing touches ./data.

Tests use these fixtures (`resources`, `make_resources`); none imports this module."""

from __future__ import annotations

import pytest

from resources import (
    DataQuality,
    FeastStore,
    FeatureEngine,
    Lake,
    MlflowRegistry,
    SeldonTarget,
    SyntheticEventSource,
    Warehouse,
)
from testkit.worlds import SMALL_WORLD


def make_resources(root, event_source=None, **quality) -> dict:
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
        "seldon_target": SeldonTarget(serving_dir=str(root / "serving"), lake=lake, feast_repo=str(root / "feast")),
    }


@pytest.fixture(scope="session", name="make_resources")
def make_resources_fixture():
    """The factory itself, for tests that build resources under their own root or event source
    (module fixtures included): `make_resources(root, event_source=..., **quality)`."""
    return make_resources


@pytest.fixture
def resources(tmp_path):
    return make_resources(tmp_path)
