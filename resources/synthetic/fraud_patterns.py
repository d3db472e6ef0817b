"""Fraud patterns injected into the synthetic stream.

Each pattern returns a frame of fraudulent transactions (with a `pattern` column) drawn
from its own random stream, so labels for a day can be produced without regenerating
the whole legitimate traffic of the days before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .catalog import CATEGORIES, CATEGORY_AMOUNT_OFFSET, FAR_COUNTRIES, HOME_COUNTRIES
from .population import Population

DAY_US = 86_400_000_000
_ELECTRONICS = CATEGORIES.index("electronics")
_JEWELRY = CATEGORIES.index("jewelry")
_EVERYDAY = [CATEGORIES.index(c) for c in ("grocery", "restaurants", "fuel")]


def _frame(pattern, users, merchants, ts_us, amounts, country, channel):
    return pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "merchant_id": np.asarray(merchants, dtype=np.int64),
            "ts_us": np.asarray(ts_us, dtype=np.int64),
            "amount": np.round(np.asarray(amounts, dtype=np.float64), 2),
            "country": np.asarray(country, dtype=object),
            "channel": np.asarray(channel, dtype=object),
            "pattern": pattern,
        }
    )


def card_testing(rng, pop: Population, day_start_us: int, budget: float) -> pd.DataFrame:
    """Bursts of small online payments that probe whether a stolen card works."""
    n_bursts = rng.poisson(budget / 8.0)
    sizes = rng.integers(5, 13, n_bursts)
    users = np.repeat(rng.integers(0, pop.n_users, n_bursts), sizes)
    online = np.flatnonzero(pop.merchant_is_online)
    burst_merchant = online[rng.integers(0, len(online), n_bursts)]
    merchants = np.repeat(burst_merchant, sizes)
    starts = np.repeat(rng.integers(0, DAY_US - 3_600_000_000, n_bursts), sizes)
    gaps = rng.exponential(40e6, sizes.sum()).astype(np.int64) + 1_000_000
    offsets = np.concatenate([np.cumsum(g) for g in np.split(gaps, np.cumsum(sizes)[:-1])]) if n_bursts else gaps
    amounts = rng.uniform(0.5, 5.0, sizes.sum())
    country = np.array(HOME_COUNTRIES)[pop.merchant_country[merchants]]
    return _frame("card_testing", users, merchants, day_start_us + starts + offsets, amounts, country, "ecom")


def high_amount_new_merchant(rng, pop: Population, day_start_us: int, budget: float) -> pd.DataFrame:
    """One large online purchase of resellable goods at a shop the user never used."""
    n = rng.poisson(budget)
    users = rng.integers(0, pop.n_users, n)
    pool = np.concatenate([pop.merchants_by_category[_ELECTRONICS], pop.merchants_by_category[_JEWELRY]])
    merchants = pool[rng.integers(0, len(pool), n)]
    cat_offset = np.array([CATEGORY_AMOUNT_OFFSET[c] for c in CATEGORIES])[pop.merchant_category[merchants]]
    amounts = np.exp(pop.log_amount_mean[users] + cat_offset + 1.8 + rng.normal(0, 0.4, n))
    country = np.array(HOME_COUNTRIES)[pop.merchant_country[merchants]]
    ts = day_start_us + rng.integers(0, DAY_US, n)
    return _frame("high_amount_new_merchant", users, merchants, ts, amounts, country, "ecom")


def country_jump(rng, pop: Population, day_start_us: int, budget: float) -> pd.DataFrame:
    """A card-present payment far from home: a cloned card used abroad."""
    n = rng.poisson(budget)
    users = rng.integers(0, pop.n_users, n)
    merchants = rng.integers(0, pop.n_merchants, n)
    amounts = np.exp(pop.log_amount_mean[users] + 1.0 + rng.normal(0, 0.5, n))
    country = np.array(FAR_COUNTRIES)[rng.integers(0, len(FAR_COUNTRIES), n)]
    ts = day_start_us + rng.integers(0, DAY_US, n)
    return _frame("country_jump", users, merchants, ts, amounts, country, "pos")


def night_contactless(rng, pop: Population, day_start_us: int, budget: float) -> pd.DataFrame:
    """Concept drift: tokenised-wallet takeover. Ordinary amounts at everyday shops in the
    user's home country, paid contactless at night: nothing the pre-drift model has seen."""
    n = rng.poisson(budget)
    users = rng.integers(0, pop.n_users, n)
    pool = np.concatenate([pop.merchants_by_category[c] for c in _EVERYDAY])
    merchants = pool[rng.integers(0, len(pool), n)]
    cat_offset = np.array([CATEGORY_AMOUNT_OFFSET[c] for c in CATEGORIES])[pop.merchant_category[merchants]]
    amounts = np.exp(pop.log_amount_mean[users] + cat_offset + rng.normal(0.3, 0.3, n))
    country = np.array(HOME_COUNTRIES)[pop.home_country[users]]
    ts = day_start_us + rng.integers(3_600_000_000, 5 * 3_600_000_000, n)
    return _frame("night_contactless", users, merchants, ts, amounts, country, "contactless")


# Share of the fraud budget taken by each standing pattern.
STANDING_PATTERNS = ((card_testing, 0.45), (high_amount_new_merchant, 0.30), (country_jump, 0.25))
