"""The model's inputs: request-time fields of the transaction plus what Feast serves.

Feature names come from the Feast repo's schema so the model, the training frame and the
online path name the same things.
"""

from __future__ import annotations

from resources.feast_repo.schema import MERCHANT_STATE_FEATURES, ON_DEMAND_FEATURES, USER_STATE_FEATURES

CATEGORICAL = ["category", "country", "channel"]
REQUEST_NUMERIC = ["amount"]
# Absolute times and raw strings are not model inputs; their derived features are.
_NOT_INPUTS = {"user_last_txn_epoch_s", "user_last_country"}
NUMERIC = REQUEST_NUMERIC + [
    f for f in [*USER_STATE_FEATURES, *MERCHANT_STATE_FEATURES, *ON_DEMAND_FEATURES] if f not in _NOT_INPUTS
]
LABEL = "label"

# Missing values mean "no history": fill with what that means, not with a typical value.
FILL = {
    "seconds_since_last_txn": 30 * 86_400.0,
    "amount_to_user_mean_30d": 1.0,
}
