"""Small serving artifacts and request rows for the serving tests and `make bench-serving`:
a tiny random FraudNet behind a hand-written feature schema, so a test needs no training run."""

from __future__ import annotations

from pathlib import Path

from driftline import spec
from seldon.artifact import CategoricalFeature, FeatureSchema, NumericFeature

CATEGORIES = ["grocery", "travel", "electronics", "fuel", "online"]
COUNTRIES = ["FR", "DE", "ES", "IT", "NL"]
CHANNELS = ["pos", "web", "app"]
# The served features that are model inputs (the last transaction's time and country are only
# the raw material of on-demand features), in the feature service's order.
SERVED = [f for f in spec.SERVED_FEATURES if f not in (spec.USER_LAST_TXN_EPOCH_S, spec.USER_LAST_COUNTRY)]


def small_schema(version: str = "1", model_name: str = "driftline-fraud") -> FeatureSchema:
    """A schema over the served features with fixed scalings (no fitting)."""
    cats = [
        CategoricalFeature("category", CATEGORIES),
        CategoricalFeature("country", COUNTRIES),
        CategoricalFeature("channel", CHANNELS),
    ]
    nums = [NumericFeature("amount", "log1p", 3.5, 1.2, 30.0)]
    nums += [NumericFeature(n, "identity", 1.0, 2.0, 0.0) for n in SERVED]
    return FeatureSchema(model_name=model_name, model_version=str(version), categorical=cats, numeric=nums)


def build_artifact(directory: str | Path, version: str = "1", seed: int = 0, schema: FeatureSchema | None = None):
    """A tiny random FraudNet exported as a serving artifact (the orchestration venv: needs `ml`)."""
    import torch

    from ml.export import export_artifact
    from ml.network import FraudNet

    schema = schema or small_schema(version)
    torch.manual_seed(seed)
    net = FraudNet([c.cardinality for c in schema.categorical], len(schema.numeric), hidden=(16,))
    return export_artifact(net, schema, directory)


def sample_rows(n: int, seed: int = 0) -> tuple[list[str], list[list]]:
    """`n` random rows in `small_schema`'s columns: (names, rows) for a `data.ndarray` request."""
    import random

    rng = random.Random(seed)
    names = ["category", "country", "channel", "amount", *SERVED]
    rows = [
        [
            rng.choice(CATEGORIES),
            rng.choice(COUNTRIES),
            rng.choice(CHANNELS),
            round(rng.uniform(1, 500), 2),
            *[round(rng.uniform(0, 5), 3) for _ in SERVED],
        ]
        for _ in range(n)
    ]
    return names, rows
