"""Feast objects of the fresh-features service `fraud_model_v2` (docs/streaming.md).

The stream worker pushes each user's recent events (driftline.velocity.RecentEvents, as arrays)
through the PushSource `user_recent_push` into the view `user_recent`; the on-demand view
`fraud_stream_features` finishes the windows `[t - w, t)` for the request's own time t, so a
count read between two events is as fresh as the read, not as the last event.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from driftline import spec

if TYPE_CHECKING:
    import pandas as pd
    from feast import Field


def fields(types: dict[str, str]) -> list[Field]:
    """Feast fields of a spec dict (name -> Feast type name, arrays as "Array(Int64)")."""
    from feast import Field
    from feast.types import Array, Float64, Int64, String

    scalars = {"Int64": Int64, "Float64": Float64, "String": String}
    kinds = {**scalars, **{f"Array({n})": Array(t) for n, t in scalars.items()}}
    return [Field(name=name, dtype=kinds[t]) for name, t in types.items()]


def fraud_stream_features(inputs: pd.DataFrame) -> pd.DataFrame:
    # driftline.velocity.features_at in pandas, plus the v1 calendar and amount-to-mean columns.
    # Feast 0.67 rehydrates this UDF from its *source text* with only `pd`/`np` in scope
    # (feast/transformation/udf_rehydrate.py): self-contained, names and window lengths are
    # literals; tests/test_velocity.py checks them against driftline.spec and features_at.
    import bisect

    import numpy as np
    import pandas as pd

    windows = (3_600_000_000, 86_400_000_000, 604_800_000_000)  # spec.USER_WINDOWS in micros
    distinct_us = 86_400_000_000  # spec.DISTINCT_MERCHANTS
    lookback_us = 2_592_000_000_000  # spec.LOOKBACK: "previous transaction" looks this far back

    def seq(value):
        if value is None or isinstance(value, float):  # null: None or NaN
            return []
        return list(value)

    def scalar(value):
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return None
        return value

    n = len(inputs)
    counts = [[0] * n for _ in windows]
    sums = [[0.0] * n for _ in windows]
    distinct, since, changed = [0] * n, [np.nan] * n, [0] * n
    epoch = pd.to_numeric(inputs["event_epoch_s"], errors="coerce").astype("float64").to_numpy()
    for i in range(n):
        t = 0 if np.isnan(epoch[i]) else round(float(epoch[i]) * 1_000_000)
        us = [int(x) for x in seq(inputs["recent_event_us"].iloc[i])]
        amounts = [float(x) for x in seq(inputs["recent_amounts"].iloc[i])]
        merchants = [int(x) for x in seq(inputs["recent_merchants"].iloc[i])]
        countries = [None if c == "" else c for c in seq(inputs["recent_countries"].iloc[i])]
        hi = bisect.bisect_left(us, t)
        for k, width in enumerate(windows):
            lo = bisect.bisect_left(us, t - width, 0, hi)
            counts[k][i] = hi - lo
            sums[k][i] = sum(round(a * 1_000_000) for a in amounts[lo:hi]) / 1_000_000
        distinct[i] = len(set(merchants[bisect.bisect_left(us, t - distinct_us, 0, hi) : hi]))
        prev, prev_country = None, None
        evicted = scalar(inputs["evicted_us"].iloc[i])
        if hi > 0:
            prev, prev_country = us[hi - 1], countries[hi - 1]
        elif evicted is not None and int(evicted) < t:
            prev, prev_country = int(evicted), scalar(inputs["evicted_country"].iloc[i])
            prev_country = None if prev_country == "" else prev_country
        if prev is not None and prev >= t - lookback_us:
            since[i] = (t - prev) / 1_000_000
            changed[i] = 1 if prev_country != scalar(inputs["country"].iloc[i]) else 0

    out = pd.DataFrame(index=inputs.index)
    out["user_txn_count_1h"] = np.array(counts[0], dtype="int64")
    out["user_txn_count_24h"] = np.array(counts[1], dtype="int64")
    out["user_txn_count_7d"] = np.array(counts[2], dtype="int64")
    out["user_amount_sum_1h"] = np.array(sums[0], dtype="float64")
    out["user_amount_sum_24h"] = np.array(sums[1], dtype="float64")
    out["user_amount_sum_7d"] = np.array(sums[2], dtype="float64")
    out["user_distinct_merchants_24h"] = np.array(distinct, dtype="int64")
    out["seconds_since_prev_txn"] = np.array(since, dtype="float64")
    out["country_changed"] = np.array(changed, dtype="int64")
    amount = pd.to_numeric(inputs["amount"], errors="coerce").astype("float64")
    mean = pd.to_numeric(inputs["user_mean_amount_30d"], errors="coerce").astype("float64")
    out["amount_to_user_mean_30d"] = amount / mean.where(mean != 0)
    whole = np.floor(np.where(np.isnan(epoch), 0.0, epoch))
    out["hour_of_day"] = ((whole // 3600) % 24).astype("int64")
    out["day_of_week"] = (((whole // 86400) + 3) % 7 + 1).astype("int64")  # ISO: 1970-01-01 was a Thursday
    return out


def _under(root: str, table: str) -> str:
    if "://" in root and not root.startswith("file://"):
        return root.rstrip("/") + "/" + table
    return os.path.join(os.path.abspath(root.removeprefix("file://")), table)


def build_fresh_objects(
    lake_root: str, s3_endpoint_override: str | None, user, user_state, merchant_state, request, fresh_copy
) -> list:
    """The v2 objects over the v1 entity `user`, views `user_state` / `merchant_state` and the
    RequestSource `request`; `fresh_copy` copies a UDF before Feast's decorator rewrites it."""
    from feast import FeatureService, FeatureView, Field, FileSource, PushSource
    from feast.data_format import ParquetFormat
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Int64

    batch = FileSource(
        name=f"{spec.USER_RECENT_TABLE}_source",
        path=_under(lake_root, spec.USER_RECENT_TABLE),
        file_format=ParquetFormat(),
        timestamp_field=spec.RECENT_TS,
        s3_endpoint_override=s3_endpoint_override or None,
        description="pushed user_recent rows, if ever logged (may be empty: the stream is their source)",
    )
    push = PushSource(name=spec.USER_RECENT_PUSH, batch_source=batch, description="the stream worker's pushes")
    user_recent = FeatureView(
        name=spec.USER_RECENT_VIEW,
        entities=[user],
        ttl=spec.LOOKBACK.timedelta,  # older than the look-back, no event can be in any window
        schema=[Field(name="user_id", dtype=Int64), *fields(spec.USER_RECENT_FIELDS)],
        source=push,
        online=True,
        description="each user's events within the retention (driftline.velocity), newest state pushed",
    )
    stream_features = on_demand_feature_view(
        name=spec.ON_DEMAND_VIEW_V2,
        sources=[user_recent, user_state, request],
        schema=fields(spec.ON_DEMAND_FEATURES_V2),
        mode="pandas",
        description="exact event-time velocity at the request's time, from the user's recent events",
    )(fresh_copy(fraud_stream_features))
    service = FeatureService(
        name=spec.FEATURE_SERVICE_V2,
        features=[stream_features, merchant_state],
        description="inputs of the card-fraud model v2 (fresh velocity features)",
    )
    return [batch, push, user_recent, stream_features, service]
