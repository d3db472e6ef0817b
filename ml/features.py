"""The model's inputs: request-time fields of the transaction plus what Feast serves.

Feature names come from driftline.spec so the model, the training frame and the online path
name the same things.
"""

from __future__ import annotations

from driftline import spec

CATEGORICAL = ["category", "country", "channel"]
REQUEST_NUMERIC = ["amount"]
# Absolute times and raw strings are not model inputs; their derived features are.
_NOT_INPUTS = {spec.USER_LAST_TXN_EPOCH_S, spec.USER_LAST_COUNTRY}
NUMERIC = REQUEST_NUMERIC + [f for f in spec.SERVED_FEATURES if f not in _NOT_INPUTS]
LABEL = "label"

# Missing values mean "no history": fill with what that means, not with a typical value.
FILL = {
    spec.SECONDS_SINCE_LAST_TXN: float(spec.LOOKBACK.seconds),
    spec.AMOUNT_TO_USER_MEAN: 1.0,
}
