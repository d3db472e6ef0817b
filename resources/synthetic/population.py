"""The fixed population of the synthetic world: users, merchants and their habits.

Seeded once from the world seed, independent of the day, so every partition sees
the same people and shops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .catalog import CATEGORIES, HOME_COUNTRIES, HOME_COUNTRY_WEIGHTS

FAVOURITES_PER_USER = 6


@dataclass(frozen=True)
class Population:
    home_country: np.ndarray  # user -> index into HOME_COUNTRIES
    log_amount_mean: np.ndarray  # user -> mean of log(amount) before the category offset
    activity: np.ndarray  # user -> expected share of the day's events
    category_cdf: np.ndarray  # user x category cumulative preference
    favourites: np.ndarray  # user x FAVOURITES_PER_USER merchant ids
    merchant_category: np.ndarray  # merchant -> index into CATEGORIES
    merchant_is_online: np.ndarray  # merchant -> bool
    merchant_country: np.ndarray  # merchant -> index into HOME_COUNTRIES
    merchants_by_category: tuple[np.ndarray, ...]

    @property
    def n_users(self) -> int:
        return len(self.home_country)

    @property
    def n_merchants(self) -> int:
        return len(self.merchant_category)


def build_population(seed: int, n_users: int, n_merchants: int) -> Population:
    if n_users < 1 or n_merchants < len(CATEGORIES):
        raise ValueError(
            f"need at least 1 user and {len(CATEGORIES)} merchants, got {n_users} users and {n_merchants} merchants"
        )
    rng = np.random.default_rng([seed, 0])
    home = rng.choice(len(HOME_COUNTRIES), n_users, p=HOME_COUNTRY_WEIGHTS)
    log_mean = rng.normal(3.0, 0.45, n_users)
    activity = rng.gamma(2.0, 1.0, n_users)
    activity /= activity.sum()
    prefs = rng.dirichlet(np.full(len(CATEGORIES), 0.7), n_users)
    category_cdf = np.cumsum(prefs, axis=1)
    category_cdf[:, -1] = 1.0

    # Every category gets merchants; the rest are spread with a bias to everyday shops.
    cat_weights = np.array([3, 3, 2, 2, 2, 1.5, 1, 1.5, 1.5, 0.5])
    merchant_category = np.concatenate(
        [
            np.arange(len(CATEGORIES)),
            rng.choice(len(CATEGORIES), n_merchants - len(CATEGORIES), p=cat_weights / cat_weights.sum()),
        ]
    )
    online_share = np.array([0.05, 0.1, 0.0, 0.3, 0.5, 0.6, 0.6, 0.5, 0.2, 0.3])
    merchant_is_online = rng.random(n_merchants) < online_share[merchant_category]
    merchant_country = rng.choice(len(HOME_COUNTRIES), n_merchants, p=HOME_COUNTRY_WEIGHTS)
    by_category = tuple(np.flatnonzero(merchant_category == c) for c in range(len(CATEGORIES)))

    # Favourite shops follow the user's category taste, like a real neighbourhood.
    fav_cats = (rng.random((n_users, FAVOURITES_PER_USER, 1)) > category_cdf[:, None, :]).sum(axis=2)
    favourites = np.empty((n_users, FAVOURITES_PER_USER), dtype=np.int64)
    for c, merchants in enumerate(by_category):
        mask = fav_cats == c
        favourites[mask] = merchants[rng.integers(0, len(merchants), mask.sum())]
    return Population(
        home_country=home,
        log_amount_mean=log_mean,
        activity=activity,
        category_cdf=category_cdf,
        favourites=favourites,
        merchant_category=merchant_category,
        merchant_is_online=merchant_is_online,
        merchant_country=merchant_country,
        merchants_by_category=by_category,
    )
