"""The Feast names, re-exported from driftline.spec (their one home), and `epoch_seconds`.

Kept so the orchestration side imports Feast names and the pandas `epoch_seconds` from one
module of the Feast repo. Importing this module does not import feast (the Dagster code
location must load fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

from driftline.spec import (
    ENTITY_KEYS,
    FEATURE_SERVICE,
    MERCHANT_STATE_FEATURES,
    MERCHANT_STATE_TABLE,
    ON_DEMAND_FEATURES,
    PROJECT,
    REQUEST_FIELDS,
    SERVED_FEATURES,
    SNAPSHOT_TS,
    SNAPSHOT_TTL,
    USER_STATE_FEATURES,
    USER_STATE_TABLE,
)

__all__ = [
    "ENTITY_KEYS",
    "FEATURE_SERVICE",
    "MERCHANT_STATE_FEATURES",
    "MERCHANT_STATE_TABLE",
    "ON_DEMAND_FEATURES",
    "PROJECT",
    "REQUEST_FIELDS",
    "SERVED_FEATURES",
    "SNAPSHOT_TS",
    "SNAPSHOT_TTL",
    "USER_STATE_FEATURES",
    "USER_STATE_TABLE",
    "epoch_seconds",
]

if TYPE_CHECKING:
    import pandas as pd


@overload
def epoch_seconds(ts: pd.Series) -> pd.Series: ...
@overload
def epoch_seconds(ts: object) -> float: ...
def epoch_seconds(ts):
    """Seconds since the Unix epoch (float) of a timestamp / pandas Series; naive means UTC.

    This is the one definition of `event_epoch_s`: callers of the online path must send the
    same number that `FeastStore.training_frame` derives from `event_ts`.
    """
    import pandas as pd

    if isinstance(ts, pd.Series):
        s = pd.to_datetime(ts, utc=True)
        return (s - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return (t - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
