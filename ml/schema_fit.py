"""Learn the serving schema (vocabularies, normalisation) from the training split only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from driftline.spec import FEATURE_SERVICE
from seldon.artifact import CategoricalFeature, FeatureSchema, NumericFeature

MIN_CATEGORY_COUNT = 5  # rarer values share the out-of-vocabulary bucket


def fit_schema(
    train: pd.DataFrame,
    categorical: list[str],
    numeric: list[str],
    fill: dict[str, float],
    model_name: str,
    model_version: str = "unregistered",
    feature_service: str = FEATURE_SERVICE,
) -> FeatureSchema:
    """The schema of a model of `feature_service` that takes `categorical` then `numeric`."""
    cats = []
    for name in categorical:
        counts = train[name].astype("string").value_counts()
        cats.append(CategoricalFeature(name=name, vocabulary=sorted(counts[counts >= MIN_CATEGORY_COUNT].index)))
    nums = []
    for name in numeric:
        x = pd.to_numeric(train[name], errors="coerce").astype("float64").to_numpy()
        finite = x[np.isfinite(x)]
        fill_value = float(fill.get(name, np.median(finite) if len(finite) else 0.0))
        x = np.where(np.isfinite(x), x, fill_value)
        transform = "log1p" if x.min() >= 0 and x.max() > 10 else "identity"
        t = np.log1p(x) if transform == "log1p" else x
        std = float(t.std()) or 1.0
        nums.append(NumericFeature(name=name, transform=transform, mean=float(t.mean()), std=std, fill=fill_value))
    return FeatureSchema(
        model_name=model_name,
        model_version=model_version,
        categorical=cats,
        numeric=nums,
        feature_service=feature_service,
    )
