"""Feast objects of the driftline repo: entities, snapshot sources, views, ODFV, service
(and the fresh-features service v2 from `fresh.py`).

`build_objects(lake_root)` returns them with the offline sources pointing at the lake's
snapshot tables (`<lake_root>/user_state`, `<lake_root>/merchant_state`: Hive-partitioned
directories, read whole by the file/dask offline store).

`lake_root` may be an object-store URL (`s3://bucket/prefix`): the FileSources then point at
`s3://bucket/prefix/user_state` and carry `s3_endpoint_override` for S3-compatible stores;
Feast reads them with s3fs (dask) and pyarrow's S3 filesystem, credentials from the AWS chain.
"""

from __future__ import annotations

import os
import types

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.data_format import ParquetFormat
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from driftline.spec import (
    FEATURE_SERVICE,
    MERCHANT_STATE_FEATURES,
    MERCHANT_STATE_TABLE,
    MERCHANT_STATE_VIEW,
    ON_DEMAND_FEATURES,
    ON_DEMAND_VIEW,
    REQUEST_FIELDS,
    SNAPSHOT_TS,
    SNAPSHOT_TTL,
    USER_STATE_FEATURES,
    USER_STATE_TABLE,
    USER_STATE_VIEW,
)

_TYPES = {"Int64": Int64, "Float64": Float64, "String": String}


def _fields(spec: dict[str, str]) -> list[Field]:
    return [Field(name=name, dtype=_TYPES[t]) for name, t in spec.items()]


def fraud_request_features(inputs: pd.DataFrame) -> pd.DataFrame:
    # Feast 0.67 rehydrates this UDF from its *source text* with only `pd`/`np` in scope
    # (feast/transformation/udf_rehydrate.py): keep it self-contained, no module globals.
    # So its column names are literals; tests/test_feature_spec.py checks them against
    # driftline.spec's USER_STATE_FEATURES, REQUEST_FIELDS and ON_DEMAND_FEATURES.
    import numpy as np
    import pandas as pd

    out = pd.DataFrame(index=inputs.index)
    amount = pd.to_numeric(inputs["amount"], errors="coerce").astype("float64")
    mean = pd.to_numeric(inputs["user_mean_amount_30d"], errors="coerce").astype("float64")
    out["amount_to_user_mean_30d"] = amount / mean.where(mean != 0)
    epoch = pd.to_numeric(inputs["event_epoch_s"], errors="coerce").astype("float64")
    last = pd.to_numeric(inputs["user_last_txn_epoch_s"], errors="coerce").astype("float64")
    out["seconds_since_last_txn"] = epoch - last
    country, last_country = inputs["country"], inputs["user_last_country"]
    known = (country.notna() & last_country.notna()).to_numpy(dtype=bool)
    differs = (
        country.astype(object).fillna("").astype(str).to_numpy()
        != last_country.astype(object).fillna("").astype(str).to_numpy()
    )
    out["country_changed"] = (known & differs).astype("int64")
    whole = np.floor(epoch.fillna(0.0).to_numpy())
    out["hour_of_day"] = ((whole // 3600) % 24).astype("int64")
    out["day_of_week"] = (((whole // 86400) + 3) % 7 + 1).astype("int64")  # ISO: 1970-01-01 was a Thursday
    return out


def _fresh_copy(fn):
    """Feast's decorator rewrites the function's __module__ to "__main__" (so dill can ship it);
    after that its source cannot be found again. Decorating a copy keeps build_objects callable
    more than once per process (several repos, tests)."""
    return types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _under(root: str, table: str) -> str:
    if "://" in root and not root.startswith("file://"):
        return root.rstrip("/") + "/" + table
    if root.startswith("file://"):
        root = root[len("file://") :]
    return os.path.join(os.path.abspath(root), table)


def build_objects(lake_root: str, s3_endpoint_override: str | None = None) -> list:
    """Every Feast object of the repo, with sources under `lake_root` (a path, made absolute,
    or an object-store URL; `s3_endpoint_override` for an S3-compatible store)."""

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="card holder")
    merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64, description="acceptor")

    user_source = FileSource(
        name="user_state_source",
        path=_under(lake_root, USER_STATE_TABLE),
        file_format=ParquetFormat(),
        timestamp_field=SNAPSHOT_TS,
        s3_endpoint_override=s3_endpoint_override or None,  # None: FileSource's default
        description="daily user_state snapshots, stamped at the end of their day",
    )
    merchant_source = FileSource(
        name="merchant_state_source",
        path=_under(lake_root, MERCHANT_STATE_TABLE),
        file_format=ParquetFormat(),
        timestamp_field=SNAPSHOT_TS,
        s3_endpoint_override=s3_endpoint_override or None,  # None: FileSource's default
        description="daily merchant_state snapshots, stamped at the end of their day",
    )

    user_state = FeatureView(
        name=USER_STATE_VIEW,
        entities=[user],
        ttl=SNAPSHOT_TTL,
        schema=[Field(name="user_id", dtype=Int64), *_fields(USER_STATE_FEATURES)],
        source=user_source,
        online=True,
        description="per-user state as of the last daily materialization",
    )
    merchant_state = FeatureView(
        name=MERCHANT_STATE_VIEW,
        entities=[merchant],
        ttl=SNAPSHOT_TTL,
        schema=[Field(name="merchant_id", dtype=Int64), *_fields(MERCHANT_STATE_FEATURES)],
        source=merchant_source,
        online=True,
        description="per-merchant volume and chargebacks as of the last daily materialization",
    )

    transaction_request = RequestSource(name="transaction_request", schema=_fields(REQUEST_FIELDS))

    request_features = on_demand_feature_view(
        name=ON_DEMAND_VIEW,
        sources=[user_state, transaction_request],
        schema=_fields(ON_DEMAND_FEATURES),
        mode="pandas",
        description="features of the incoming transaction relative to the user's state",
    )(_fresh_copy(fraud_request_features))

    service = FeatureService(
        name=FEATURE_SERVICE,
        features=[user_state, merchant_state, request_features],
        description="inputs of the card-fraud model v1",
    )
    from .fresh import build_fresh_objects

    fresh = build_fresh_objects(
        lake_root, s3_endpoint_override, user, user_state, merchant_state, transaction_request, _fresh_copy
    )
    return [
        user,
        merchant,
        user_source,
        merchant_source,
        user_state,
        merchant_state,
        transaction_request,
        request_features,
        service,
        *fresh,
    ]
