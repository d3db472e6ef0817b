"""What the training test modules (test_training.py, test_training_v2.py) share: the small
generated range they train on, the data plane run over it, the run config of a short training,
and the materialization metadata they read. One definition, so both train on the same world."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

WORLD: dict[str, Any] = dict(seed=5, n_users=800, n_merchants=150, events_per_day=1_500, fraud_rate=0.02)
DAYS = [(dt.date(2026, 10, 1) + dt.timedelta(days=k)).isoformat() for k in range(26)]
SET = {"window_days": 14, "maturity_days": 10}  # training_set's config


def run_config(fast: dict, training: dict | None = None, evaluation: dict | None = None) -> dict:
    """training_set on SET, fraud_model with `fast` (epochs, patience) and `training` over it."""
    ops: dict[str, Any] = {"training_set": {"config": SET}, "fraud_model": {"config": {**fast, **(training or {})}}}
    if evaluation:
        ops["model_evaluation"] = {"config": evaluation}
    return {"ops": ops}


def materialized_meta(result, key: str) -> dict:
    """The metadata values of asset `key`'s materialization in `result`."""
    for e in result.get_asset_materialization_events():
        if e.asset_key.to_user_string() == key:
            return {k: v.value for k, v in e.materialization.metadata.items()}
    raise KeyError(key)


def data_plane(root: Path, make_resources, **options) -> tuple[dict, list]:
    """(resources under `root` on WORLD, the code location's assets), the data plane run over DAYS.
    `options`: make_resources' own (e.g. start_runtime=False)."""
    import definitions
    from driftline.pipeline import run_data_plane
    from resources import SyntheticEventSource

    resources = make_resources(root, event_source=SyntheticEventSource(**WORLD), **options)
    assert definitions.defs.assets is not None
    assets = list(definitions.defs.assets)
    assert run_data_plane(assets, resources, DAYS).success
    return resources, assets
