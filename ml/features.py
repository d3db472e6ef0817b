"""The model's inputs: request-time fields of the transaction plus what its feature service
serves.

Feature names come from driftline.spec so the model, the training frame and the online path
name the same things. A model is trained for one feature service and asks the online path for
that service only: `country_changed` and the 24 h / 7 d counts exist in both services, with
snapshot meaning in `fraud_model_v1` and exact event-time meaning in `fraud_model_v2`.
"""

from __future__ import annotations

from dataclasses import dataclass

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

# fraud_model_v2: the service's features in service order (the v2 model's column order).
NUMERIC_V2 = REQUEST_NUMERIC + list(spec.SERVED_FEATURES_V2)
FILL_V2 = {
    spec.SECONDS_SINCE_PREV_TXN: float(spec.LOOKBACK.seconds),  # null: no payment within the look-back
    spec.AMOUNT_TO_USER_MEAN: 1.0,
}


@dataclass(frozen=True)
class ModelInputs:
    """What a model of one feature service takes: categoricals, then numerics, in this order."""

    service: str
    categorical: list[str]
    numeric: list[str]
    fill: dict[str, float]
    served: list[str]  # the service's features, in service order


INPUTS = {
    spec.FEATURE_SERVICE: ModelInputs(spec.FEATURE_SERVICE, CATEGORICAL, NUMERIC, FILL, list(spec.SERVED_FEATURES)),
    spec.FEATURE_SERVICE_V2: ModelInputs(
        spec.FEATURE_SERVICE_V2, CATEGORICAL, NUMERIC_V2, FILL_V2, list(spec.SERVED_FEATURES_V2)
    ),
}
FEATURE_SERVICES = tuple(INPUTS)


def inputs_for(service: str) -> ModelInputs:
    """The inputs of a model trained for `service`; a clear error for an unknown service."""
    try:
        return INPUTS[service]
    except KeyError:
        raise ValueError(f"unknown feature service {service!r}; known: {', '.join(FEATURE_SERVICES)}") from None
