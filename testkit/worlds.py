"""Synthetic worlds small enough for tests: seconds to generate, enough fraud to train on."""

from __future__ import annotations

from typing import Any

SMALL_WORLD: dict[str, Any] = dict(seed=11, n_users=300, n_merchants=80, events_per_day=600, fraud_rate=0.01)


# The production profile's runs in its image (tests/test_user_code_image.py) and as Jobs on a
# cluster (tests/cluster/): a week of history materialized in-process, then one partition in the
# image; the chargebacks of the following week (they arrive about nine days after the payment)
# so that training's cutoff comes after them and the evaluation gate can judge the model.
# 4,000 payments a day: at 1,500 the test split held ~30 fraud rows and whether the network beat
# the logistic-regression baseline depended on the seed (PR-AUC 0.20 to 0.34 against 0.32).
PRODUCTION_RUN_WORLD: dict[str, str] = {
    "DRIFTLINE_SYNTH_SEED": "11",
    "DRIFTLINE_SYNTH_USERS": "800",
    "DRIFTLINE_SYNTH_MERCHANTS": "150",
    "DRIFTLINE_SYNTH_EVENTS_PER_DAY": "4000",
    "DRIFTLINE_SYNTH_FRAUD_RATE": "0.03",
}
PRODUCTION_RUN_HISTORY = [f"2026-10-{d:02d}" for d in range(1, 8)]
PRODUCTION_RUN_DAY = "2026-10-08"
PRODUCTION_RUN_LABEL_DAYS = [f"2026-10-{d:02d}" for d in range(9, 16)]
PRODUCTION_RUN_TRAINING: dict[str, Any] = {
    "ops": {
        "training_set": {"config": {"window_days": 6, "maturity_days": 8, "cutoff": "2026-10-16T00:00:00"}},
        "fraud_model": {"config": {"max_epochs": 20, "patience": 5}},
    }
}
