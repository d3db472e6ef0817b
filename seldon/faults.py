"""Components with injected faults, for the canary tests and `make bench-serving`.

They stand in for a broken or slow challenger (or for the bare wrapper's floor); they are
ordinary classes selected through the manifest's MODEL_NAME (`seldon.faults.FailingModel`),
like any other image would be, so they live with the serving code and run in the serving
environment: nothing here imports from the orchestration side.
"""

from __future__ import annotations

import os
import time

from seldon.model import FraudModel


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

    def __init__(self, **_) -> None:
        pass

    def predict(self, X, names, meta=None) -> list[float]:
        return [0.5] * len(X)
