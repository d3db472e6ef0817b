"""The synthetic world: deterministic per partition, realistic, and drifting as configured."""

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from resources.synthetic import SyntheticWorld, WorldConfig
from resources.synthetic.catalog import HOME_COUNTRIES, NEW_COUNTRIES

BASE: dict[str, Any] = dict(seed=3, n_users=2_000, n_merchants=300, events_per_day=5_000)
DRIFT_START = dt.date(2026, 10, 15)
BEFORE = [dt.date(2026, 10, 8) + dt.timedelta(days=k) for k in range(5)]
AFTER = [dt.date(2026, 10, 18) + dt.timedelta(days=k) for k in range(5)]


def _days(world, days):
    return pd.concat([world.transactions(d) for d in days], ignore_index=True)


def test_a_partition_is_identical_whatever_was_generated_before():
    a = SyntheticWorld(WorldConfig(**BASE))
    b = SyntheticWorld(WorldConfig(**BASE))
    b.transactions(dt.date(2026, 10, 3))  # different history of calls
    day = dt.date(2026, 10, 5)
    pd.testing.assert_frame_equal(a.transactions(day), b.transactions(day))
    pd.testing.assert_frame_equal(a.labels(day), b.labels(day))


def test_structure_is_realistic():
    world = SyntheticWorld(WorldConfig(**BASE))
    days = BEFORE
    tx = _days(world, days)
    fraud = pd.concat([world.fraud_truth(d) for d in days])
    rate = len(fraud) / len(tx)
    assert 0.001 < rate < 0.01, rate  # under 1 %, as in real card fraud
    assert set(fraud["pattern"]) == {"card_testing", "high_amount_new_merchant", "country_jump"}
    # lognormal amounts: right-skewed, median well below the mean
    assert tx["amount"].median() < 0.8 * tx["amount"].mean()
    # daily seasonality: the afternoon is much busier than the small hours
    hours = tx["event_ts"].dt.hour.value_counts().sort_index()
    assert hours.loc[12:20].mean() > 5 * hours.loc[2:4].mean()
    # weekly seasonality: Saturdays busier than Sundays
    by_day = tx.groupby(tx["event_ts"].dt.dayofweek).size() / tx.groupby(tx["event_ts"].dt.dayofweek)["event_ts"].apply(
        lambda s: s.dt.date.nunique()
    )
    assert by_day.loc[5] > by_day.loc[6] * 1.2
    # card testing comes in bursts of small online payments
    burst_ids = set(fraud.loc[fraud["pattern"] == "card_testing", "event_id"])
    burst = tx[tx["event_id"].isin(burst_ids)]
    assert (burst["amount"] <= 5).all() and (burst["channel"] == "ecom").all()


def test_labels_are_delayed_chargebacks_of_real_frauds():
    world = SyntheticWorld(WorldConfig(**BASE))
    day = dt.date(2026, 11, 10)
    labels = world.labels(day)
    assert len(labels) > 0
    delay = (labels["label_ts"] - labels["event_ts"]).dt.total_seconds() / 86400
    assert delay.min() >= 1 and delay.max() < 60 and 4 < delay.median() < 20
    frauds = pd.concat([world.fraud_truth(day - dt.timedelta(days=k)) for k in range(61)])
    assert set(labels["event_id"]) <= set(frauds["event_id"])


def _ks(a, b) -> float:
    grid = np.sort(np.concatenate([a, b]))
    ca = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(ca - cb).max())


def test_no_drift_keeps_distributions_stable():
    world = SyntheticWorld(WorldConfig(**BASE))
    before, after = _days(world, BEFORE), _days(world, AFTER)
    assert _ks(before["amount"].to_numpy(), after["amount"].to_numpy()) < 0.03
    assert not after["country"].isin(NEW_COUNTRIES).any()


def test_covariate_drift_shifts_amounts_categories_and_countries():
    cfg = WorldConfig(**BASE, drift_scenario="covariate", drift_start=DRIFT_START)
    world = SyntheticWorld(cfg)
    before, after = _days(world, BEFORE), _days(world, AFTER)
    assert after["amount"].median() > 1.4 * before["amount"].median()
    assert _ks(before["amount"].to_numpy(), after["amount"].to_numpy()) > 0.15
    travel_share = lambda df: (df["category"] == "travel").mean()  # noqa: E731
    assert travel_share(after) > 1.6 * travel_share(before)
    assert after["country"].isin(NEW_COUNTRIES).mean() > 0.03
    assert not before["country"].isin(NEW_COUNTRIES).any()
    # days before the drift start are untouched by the scenario
    pd.testing.assert_frame_equal(before, _days(SyntheticWorld(WorldConfig(**BASE)), BEFORE))


def test_concept_drift_adds_a_fraud_pattern_without_moving_inputs():
    cfg = WorldConfig(**BASE, drift_scenario="concept", drift_start=DRIFT_START)
    world = SyntheticWorld(cfg)
    patterns_after = pd.concat([world.fraud_truth(d) for d in AFTER])["pattern"]
    patterns_before = pd.concat([world.fraud_truth(d) for d in BEFORE])["pattern"]
    assert "night_contactless" not in set(patterns_before)
    assert (patterns_after == "night_contactless").mean() > 0.3
    after = _days(world, AFTER)
    new = after[
        after["event_id"].isin(
            set(pd.concat([world.fraud_truth(d) for d in AFTER]).query("pattern == 'night_contactless'")["event_id"])
        )
    ]
    assert (new["channel"] == "contactless").all() and new["event_ts"].dt.hour.between(1, 4).all()
    assert new["country"].isin(HOME_COUNTRIES).all()
    # the inputs barely move: the model, not the data, goes stale
    base_after = _days(SyntheticWorld(WorldConfig(**BASE)), AFTER)
    assert _ks(base_after["amount"].to_numpy(), after["amount"].to_numpy()) < 0.03


def test_bad_configuration_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="unknown drift_scenario"):
        WorldConfig(drift_scenario="sideways", drift_start=DRIFT_START)
    with pytest.raises(ValueError, match="needs a drift_start"):
        WorldConfig(drift_scenario="covariate")
