"""The drift report computes on capped samples (20,000 rows a side) so that a million-row day
costs what a 20,000-row day does: the sampled decisions must equal the full-data decisions, per
feature and for the window, in every generator scenario, before, during and after the ramp."""

import datetime as dt
from typing import Any

import pytest

from monitoring.drift import DriftConfig, drift_decision
from resources import SyntheticEventSource
from testkit.simulate import reference_from_days

WORLD: dict[str, Any] = dict(seed=2, n_users=20_000, n_merchants=2_000, events_per_day=40_000, fraud_rate=0.004)
START, DRIFT_START = dt.date(2026, 10, 1), dt.date(2026, 10, 15)
FEATURES = (["category", "country", "channel"], ["amount", "hour_of_day"])
DAYS = [
    DRIFT_START - dt.timedelta(days=1),
    DRIFT_START,
    DRIFT_START + dt.timedelta(days=1),
    DRIFT_START + dt.timedelta(days=5),
]
FULL = DriftConfig(reference_cap=10**9, current_cap=10**9)


@pytest.fixture(scope="module")
def reference():
    world = SyntheticEventSource(**WORLD).world()
    return reference_from_days(world, [START + dt.timedelta(days=k) for k in range(7)])


@pytest.mark.parametrize("scenario", ["none", "covariate", "concept"])
def test_sampled_decisions_equal_full_data_decisions(reference, scenario, capsys):
    world = SyntheticEventSource(
        **WORLD, drift_scenario=scenario, drift_start=None if scenario == "none" else DRIFT_START.isoformat()
    ).world()
    lines = []
    for day in DAYS:
        current = reference_from_days(world, [day])
        assert len(current) > DriftConfig().current_cap and len(reference) > DriftConfig().reference_cap
        sampled = drift_decision(reference, current, FEATURES)
        full = drift_decision(reference, current, FEATURES, FULL)
        assert sampled.sampled_current < full.sampled_current == len(current)
        assert sampled.drifted == full.drifted, (day, sampled.reason, full.reason)
        assert sampled.drifted_features == full.drifted_features, (day, sampled.scores, full.scores)
        gap = max(abs(sampled.scores[f] - full.scores[f]) / max(1.0, full.scores[f] / 0.1) for f in full.scores)
        margin = min(abs(f.score - f.threshold) for f in full.features)
        lines.append(
            f"{day} drifted={full.drifted} ({','.join(full.drifted_features) or '-'}) "
            f"max sampling error {gap:.4f} (relative to 0.1 above it), nearest score to its threshold {margin:.3f}, "
            f"refined on all rows: {sampled.refined or '-'}"
        )
        assert gap < 0.03  # sampling noise well below the 0.1 thresholds (and ~10 % of larger scores)
    if scenario == "covariate":
        assert [
            full.drifted
            for full in [drift_decision(reference, reference_from_days(world, [d]), FEATURES, FULL) for d in DAYS[-1:]]
        ] == [True]
    with capsys.disabled():
        print(f"\n{scenario}: " + "\n  ".join(lines))
