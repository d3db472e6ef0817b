"""Test and benchmark support: small artifacts, tokens, and components with injected faults.

The fault components stand in for a broken or slow challenger in the canary tests; they are
ordinary subclasses selected through the manifest's MODEL_NAME, like any other image would be.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from seldon.artifact import CategoricalFeature, FeatureSchema, NumericFeature
from seldon.model import FraudModel

CATEGORIES = ["grocery", "travel", "electronics", "fuel", "online"]
COUNTRIES = ["FR", "DE", "ES", "IT", "NL"]
CHANNELS = ["pos", "web", "app"]
SERVED = ["user_txn_count_24h", "user_amount_sum_24h", "user_txn_count_7d", "user_amount_sum_7d",
          "user_mean_amount_30d", "user_distinct_merchants_7d", "merchant_txn_count_30d", "merchant_cb_count_30d",
          "merchant_cb_rate_30d", "amount_to_user_mean_30d", "seconds_since_last_txn", "country_changed",
          "hour_of_day", "day_of_week"]


def small_schema(version: str = "1", model_name: str = "driftline-fraud") -> FeatureSchema:
    cats = [CategoricalFeature("category", CATEGORIES), CategoricalFeature("country", COUNTRIES),
            CategoricalFeature("channel", CHANNELS)]
    nums = [NumericFeature("amount", "log1p", 3.5, 1.2, 30.0)]
    nums += [NumericFeature(n, "identity", 1.0, 2.0, 0.0) for n in SERVED]
    return FeatureSchema(model_name=model_name, model_version=str(version), categorical=cats, numeric=nums)


def build_artifact(directory: str | Path, version: str = "1", seed: int = 0, schema: FeatureSchema | None = None):
    """A tiny random FraudNet exported as a serving artifact (needs the ml package on sys.path)."""
    import torch

    from ml.export import export_artifact
    from ml.network import FraudNet

    schema = schema or small_schema(version)
    torch.manual_seed(seed)
    net = FraudNet([c.cardinality for c in schema.categorical], len(schema.numeric), hidden=(16,))
    return export_artifact(net, schema, directory)


def sample_rows(n: int, seed: int = 0) -> tuple[list[str], list[list]]:
    import random

    rng = random.Random(seed)
    names = ["category", "country", "channel", "amount", *SERVED]
    rows = [[rng.choice(CATEGORIES), rng.choice(COUNTRIES), rng.choice(CHANNELS), round(rng.uniform(1, 500), 2),
             *[round(rng.uniform(0, 5), 3) for _ in SERVED]] for _ in range(n)]
    return names, rows


def token(secret: str, scopes: str = "predict", subject: str = "tester", ttl_s: int = 3600, **claims) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": subject, "scope": scopes, "iat": now, "exp": now + ttl_s, **claims}, secret,
                      algorithm="HS256")


class FailingModel(FraudModel):
    """Answers 500 for a share of requests (parameter/env FAULT_ERROR_RATE, default 1.0)."""

    def predict_raw(self, request):
        rate = float(os.environ.get("FAULT_ERROR_RATE", "1.0"))
        if rate >= 1.0 or (time.perf_counter_ns() % 1000) < rate * 1000:
            raise RuntimeError("injected fault")
        return super().predict_raw(request)


class SlowModel(FraudModel):
    """Adds FAULT_DELAY_S (default 0.25 s) to every prediction."""

    def predict_raw(self, request):
        time.sleep(float(os.environ.get("FAULT_DELAY_S", "0.25")))
        return super().predict_raw(request)


class TrivialModel:
    """The wrapper's floor for `make bench-serving`: the generic predict path, no real work."""

    def __init__(self, **_):
        pass

    def predict(self, X, names, meta=None):
        return [0.5] * len(X)
