"""Synthetic training sets at any size, shaped like the fraud model's input (numpy only).

`make bench-train --rows N` needs tens of millions of rows without running the pipeline: rows
are drawn already encoded over the model's current input schema (`ml.features`: its categorical
and numeric columns), with labels from a fixed nonlinear fraud score (interactions, thresholds,
a risky category x channel cell) at about 0.6 % prevalence, so a model has something to learn
and batch-size effects on quality show. Imports numpy, `ml.features` and `seldon.artifact` only:
the GPU check runs it where pandas and Dagster are not installed.
"""

from __future__ import annotations

import numpy as np

from ml.features import CATEGORICAL, NUMERIC
from seldon.artifact import CategoricalFeature, FeatureSchema, NumericFeature

Split = tuple[np.ndarray, np.ndarray, np.ndarray]
CARDINALITY = {"category": 12, "country": 24, "channel": 4}  # vocabulary sizes, as in the synthetic world
CHUNK = 1 << 20


def schema() -> FeatureSchema:
    cats = [
        CategoricalFeature(name=c, vocabulary=[f"{c}_{k}" for k in range(CARDINALITY.get(c, 8))]) for c in CATEGORICAL
    ]
    nums = [NumericFeature(name=n, transform="identity", mean=0.0, std=1.0, fill=0.0) for n in NUMERIC]
    return FeatureSchema(model_name="bench", model_version="synthetic", categorical=cats, numeric=nums)


def _chunk(rng: np.random.Generator, n: int, cards: list[int], n_num: int) -> Split:
    cat = np.stack([rng.integers(0, c - 1, n) for c in cards], axis=1)  # the last index is out-of-vocabulary
    num = rng.standard_normal((n, n_num), dtype=np.float32)
    num[:, 0] = np.abs(num[:, 0]) * 1.5  # an amount-like, skewed column
    logit = (
        -7.3
        + 0.9 * num[:, 0]
        + 0.6 * num[:, 1] * num[:, 2]
        + 1.1 * (num[:, 3] > 1.6)
        - 0.5 * np.abs(num[:, 4])
        + 0.4 * np.maximum(num[:, 5], 0) ** 2
        + 1.4 * ((cat[:, 0] % 5 == 1) & (cat[:, min(2, len(cards) - 1)] == 0))
        + 0.08 * (cat[:, min(1, len(cards) - 1)] % 7)
    )
    y = (rng.random(n, dtype=np.float32) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return cat.astype(np.int64), num, y


def make_split(n: int, seed: int, feature_schema: FeatureSchema | None = None) -> Split:
    """`n` rows (cat int64 [n, C], num float32 [n, F], y float32 [n]), the same for the same seed."""
    s = feature_schema or schema()
    cards = [c.cardinality for c in s.categorical]
    parts = [
        _chunk(np.random.default_rng([seed, k]), min(CHUNK, n - start), cards, len(s.numeric))
        for k, start in enumerate(range(0, n, CHUNK))
    ]
    if not parts:
        return np.empty((0, len(cards)), np.int64), np.empty((0, len(s.numeric)), np.float32), np.empty(0, np.float32)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def make_splits(rows: int, seed: int = 0, eval_rows: int | None = None) -> tuple[FeatureSchema, dict[str, Split]]:
    """Train (`rows`), validation and test (a tenth each, 20k-2M) from independent seeds."""
    s = schema()
    held = eval_rows or min(max(rows // 10, 20_000), 2_000_000)
    splits = {
        "train": make_split(rows, seed, s),
        "val": make_split(held, seed + 1, s),
        "test": make_split(held, seed + 2, s),
    }
    return s, splits
