"""Deterministic synthetic card-transaction stream with delayed chargebacks and drift.

Every day is generated from random streams seeded by (seed, day, stream), so a re-run of
a partition yields identical rows regardless of which other days were generated before.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd

from .catalog import (
    CATEGORIES,
    CATEGORY_AMOUNT_OFFSET,
    COUNTRY_CURRENCY,
    HOME_COUNTRIES,
    NEW_COUNTRIES,
    REASON_CODES,
)
from .config import WorldConfig
from .fraud_patterns import DAY_US, STANDING_PATTERNS, night_contactless
from .population import FAVOURITES_PER_USER, build_population

MAX_LABEL_DELAY_DAYS = 60
_EPOCH = dt.date(1970, 1, 1)
# Relative activity by hour of day and by weekday (Mon..Sun).
_HOURLY = np.array(
    [
        0.25,
        0.12,
        0.08,
        0.06,
        0.06,
        0.1,
        0.3,
        0.6,
        0.9,
        1.0,
        1.05,
        1.15,
        1.35,
        1.25,
        1.05,
        1.0,
        1.05,
        1.2,
        1.4,
        1.45,
        1.3,
        1.0,
        0.7,
        0.45,
    ]
)
_HOURLY_P = _HOURLY / _HOURLY.sum()
_WEEKLY = np.array([0.95, 0.97, 1.0, 1.03, 1.15, 1.2, 0.8])
_CAT_OFFSET = np.array([CATEGORY_AMOUNT_OFFSET[c] for c in CATEGORIES])
_DRIFT_CATEGORIES = [CATEGORIES.index(c) for c in ("travel", "electronics", "entertainment")]
_STREAM_LEGIT, _STREAM_FRAUD, _STREAM_LABEL_DELAY = 1, 2, 3

TRANSACTION_COLUMNS = [
    "event_id",
    "event_ts",
    "user_id",
    "merchant_id",
    "amount",
    "currency",
    "category",
    "country",
    "channel",
]
LABEL_COLUMNS = ["event_id", "event_ts", "user_id", "merchant_id", "label_ts", "is_fraud", "reason_code"]


def _ordinal(day: dt.date) -> int:
    return (day - _EPOCH).days


def _event_ids(seed: int, day: dt.date, stream: int, n: int) -> np.ndarray:
    """Opaque, stable ids (splitmix64 of seed/day/stream/index): they reveal nothing about fraud."""
    with np.errstate(over="ignore"):
        x = (
            np.arange(n, dtype=np.uint64)
            + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
            + np.uint64(_ordinal(day)) * np.uint64(0xBF58476D1CE4E5B9)
            + np.uint64(stream) * np.uint64(0x94D049BB133111EB)
        )
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    if n == 0:
        return np.array([], dtype=object)
    return np.char.add("tx", np.char.zfill(np.char.mod("%x", x), 16)).astype(object)


class SyntheticWorld:
    def __init__(self, config: WorldConfig):
        self.config = config
        self.population = build_population(config.seed, config.n_users, config.n_merchants)
        # Per world, so a dropped world frees its days (a cache on the method would keep every world).
        self._fraud = lru_cache(maxsize=128)(self._fraud_of_day)

    def drift_intensity(self, day: dt.date) -> float:
        c = self.config
        if c.drift_scenario == "none":
            return 0.0
        assert c.drift_start is not None  # WorldConfig requires it for a drift scenario
        if day < c.drift_start:
            return 0.0
        return min(1.0, ((day - c.drift_start).days + 1) / max(c.drift_ramp_days, 1))

    def _rng(self, day: dt.date, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, _ordinal(day), stream])

    def _day_start_us(self, day: dt.date) -> int:
        return _ordinal(day) * DAY_US

    def _legit(self, day: dt.date) -> pd.DataFrame:
        c, pop = self.config, self.population
        rng = self._rng(day, _STREAM_LEGIT)
        expected = c.events_per_day * _WEEKLY[day.weekday()] * pop.activity
        counts = rng.poisson(expected)
        users = np.repeat(np.arange(pop.n_users), counts)
        n = len(users)
        hours = rng.choice(24, n, p=_HOURLY_P)
        ts = self._day_start_us(day) + hours * 3_600_000_000 + rng.integers(0, 3_600_000_000, n)

        merchants = pop.favourites[users, rng.integers(0, FAVOURITES_PER_USER, n)]
        explore = rng.random(n) < 0.35
        cats = (rng.random((n, 1)) > pop.category_cdf[users]).sum(axis=1)
        intensity = self.drift_intensity(day)
        shifted = np.zeros(n, dtype=bool)
        if c.drift_scenario == "covariate" and intensity > 0:
            shifted = rng.random(n) < 0.35 * intensity
            cats = np.where(shifted, np.array(_DRIFT_CATEGORIES)[rng.integers(0, 3, n)], cats)
            explore |= shifted
        for cat, pool in enumerate(pop.merchants_by_category):
            m = explore & (cats == cat)
            merchants[m] = pool[rng.integers(0, len(pool), m.sum())]
        mcat = pop.merchant_category[merchants]

        log_amount = pop.log_amount_mean[users] + _CAT_OFFSET[mcat] + rng.normal(0, 0.6, n)
        online = pop.merchant_is_online[merchants]
        channel = np.where(online, "ecom", np.where(rng.random(n) < 0.25, "contactless", "pos"))
        travelling = rng.random(n) < 0.04
        country_idx = np.where(
            online,
            pop.merchant_country[merchants],
            np.where(travelling, rng.integers(0, len(HOME_COUNTRIES), n), pop.home_country[users]),
        )
        country = np.array(HOME_COUNTRIES, dtype=object)[country_idx]
        if c.drift_scenario == "covariate" and intensity > 0:
            log_amount += np.log(1.6) * intensity
            abroad = (~online) & (rng.random(n) < 0.12 * intensity)
            country[abroad] = np.array(NEW_COUNTRIES, dtype=object)[rng.integers(0, len(NEW_COUNTRIES), abroad.sum())]
        amounts = np.round(np.maximum(np.exp(log_amount), 0.5), 2)
        return pd.DataFrame(
            {
                "user_id": users.astype(np.int64),
                "merchant_id": merchants.astype(np.int64),
                "ts_us": ts,
                "amount": amounts,
                "country": country,
                "channel": channel.astype(object),
            }
        )

    def _fraud_of_day(self, day: dt.date) -> pd.DataFrame:
        """Fraudulent transactions of one day, with their chargeback times."""
        c, pop = self.config, self.population
        rng = self._rng(day, _STREAM_FRAUD)
        budget = c.events_per_day * _WEEKLY[day.weekday()] * c.fraud_rate
        start = self._day_start_us(day)
        parts = [pattern(rng, pop, start, budget * share) for pattern, share in STANDING_PATTERNS]
        if c.drift_scenario == "concept" and self.drift_intensity(day) > 0:
            parts.append(night_contactless(rng, pop, start, budget * 1.2 * self.drift_intensity(day)))
        fraud = pd.concat(parts, ignore_index=True)
        fraud["event_id"] = _event_ids(c.seed, day, _STREAM_FRAUD, len(fraud))
        delay_rng = self._rng(day, _STREAM_LABEL_DELAY)
        delay_days = np.clip(delay_rng.lognormal(np.log(9.0), 0.6, len(fraud)), 1.0, MAX_LABEL_DELAY_DAYS - 1)
        fraud["label_ts_us"] = fraud["ts_us"] + (delay_days * DAY_US).astype(np.int64)
        return fraud

    def transactions(self, day: dt.date) -> pd.DataFrame:
        legit = self._legit(day)
        legit["event_id"] = _event_ids(self.config.seed, day, _STREAM_LEGIT, len(legit))
        df = pd.concat([legit, self._fraud(day).drop(columns=["pattern", "label_ts_us"])], ignore_index=True)
        df = df.sort_values(["ts_us", "event_id"], kind="stable", ignore_index=True)
        df["event_ts"] = pd.to_datetime(df["ts_us"], unit="us")
        df["category"] = np.array(CATEGORIES, dtype=object)[self.population.merchant_category[df["merchant_id"]]]
        df["currency"] = df["country"].map(COUNTRY_CURRENCY)
        return df[TRANSACTION_COLUMNS]

    def labels(self, day: dt.date) -> pd.DataFrame:
        """Chargebacks whose label_ts falls on `day` (for transactions of earlier days)."""
        start, end = self._day_start_us(day), self._day_start_us(day) + DAY_US
        frames = []
        for back in range(MAX_LABEL_DELAY_DAYS + 1):
            f = self._fraud(day - dt.timedelta(days=back))
            frames.append(f[(f["label_ts_us"] >= start) & (f["label_ts_us"] < end)])
        df = pd.concat(frames, ignore_index=True).sort_values(["label_ts_us", "event_id"], ignore_index=True)
        return pd.DataFrame(
            {
                "event_id": df["event_id"],
                "event_ts": pd.to_datetime(df["ts_us"], unit="us"),
                "user_id": df["user_id"],
                "merchant_id": df["merchant_id"],
                "label_ts": pd.to_datetime(df["label_ts_us"], unit="us"),
                "is_fraud": True,
                "reason_code": df["pattern"].map(REASON_CODES),
            }
        )[LABEL_COLUMNS]

    def fraud_truth(self, day: dt.date) -> pd.DataFrame:
        """Ground truth for tests and evaluation: fraudulent event ids of a day and their pattern."""
        return self._fraud(day)[["event_id", "pattern"]].copy()
