"""Feast feature store: snapshots, online/offline consistency, point-in-time correctness.

One small synthetic world (module fixture) goes through the real assets in-process:
`raw_transactions`, `raw_labels` and `transaction_features` for five days, `user_state` /
`merchant_state` for four, `feast_registry`, then `online_features` day by day, against a real
Feast repo (file registry, sqlite online store, file offline store) in a temporary folder.
Hand-placed rows 30 days back make one user and one merchant leave the 30-day window on the
last day, so their tombstones are exercised.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.feature_store import (
    FEATURE_STORE_ASSETS,
    compute_merchant_state,
    compute_user_state,
    feast_registry,
    merchant_state,
    online_features,
    user_state,
)
from assets.features import transaction_features
from assets.ingestion import raw_labels, raw_transactions
from resources import SyntheticEventSource
from resources.feast_repo.schema import (
    MERCHANT_STATE_FEATURES,
    ON_DEMAND_FEATURES,
    SERVED_FEATURES,
    USER_STATE_FEATURES,
)
from resources.feast_store import FeastStore
from resources.lake import Lake

ROOT = Path(__file__).resolve().parents[1]
DAYS = [dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(5)]  # snapshots of DAYS[:4]; DAYS[4] is "after"
SNAPSHOT_DAYS = DAYS[:4]
LAST_T = dt.datetime(2026, 10, 5)  # stamp of the last snapshot (end of DAYS[3])
DROPOUT_DAY = dt.date(2026, 9, 4)  # 30 days before DAYS[3]: in the window of DAYS[2], not of DAYS[3]
DROPOUT_USER, DROPOUT_MERCHANT = 10_001, 10_001
UNKNOWN_USER, UNKNOWN_MERCHANT = 20_001, 20_001

pytestmark = pytest.mark.filterwarnings(
    "ignore::FutureWarning",
    "ignore::DeprecationWarning",
    "ignore:Asset job __ephemeral_asset_job__ materializes assets with varying BackfillPolicies",
)


def _materialize(assets, resources, partition_key=None):
    result = dg.materialize(assets, partition_key=partition_key, resources=resources, raise_on_error=True)
    assert result.success
    return result


def _meta(result, asset_name) -> dict[str, Any]:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset_name)[0].metadata.items()}


REQUEST_COLUMNS = ["event_id", "event_ts", "user_id", "merchant_id", "amount", "category", "country", "channel"]


def _transactions(lake: Lake, day: dt.date) -> pd.DataFrame:
    """The valid transactions of a day, as the training set reads them (request columns only)."""
    return lake.read_partition("transaction_features", day.isoformat()).select(REQUEST_COLUMNS).to_pandas()


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_resources):
    root = tmp_path_factory.mktemp("feast")
    source = SyntheticEventSource(seed=3, n_users=150, n_merchants=40, events_per_day=400, fraud_rate=0.04)
    resources = make_resources(root, event_source=source)
    lake = resources["lake"]
    feast = FeastStore(lake=lake, repo_dir=str(root / "feast"))
    resources["feast"] = feast
    # The real data plane: raw events, validated, and their point-in-time features.
    for d in DAYS:
        _materialize([raw_transactions, raw_labels, transaction_features], resources, d.isoformat())
    # Hand-placed history 30 days before the last snapshot day (before the first partition).
    dropout = pd.DataFrame(
        {
            "event_id": ["drop-1", "drop-2"],
            "event_ts": pd.to_datetime(["2026-09-04 10:00:00", "2026-09-04 11:00:00"]),
            "user_id": [DROPOUT_USER, DROPOUT_USER],
            "merchant_id": [DROPOUT_MERCHANT, 3],
            "amount": [40.0, 44.0],
            "category": ["grocery"] * 2,
            "country": ["DE", "AT"],
            "channel": ["pos"] * 2,
        }
    )
    lake.write_partition(
        "transaction_features", DROPOUT_DAY.isoformat(), pa.Table.from_pandas(dropout, preserve_index=False)
    )

    snapshot_meta = {}
    for d in SNAPSHOT_DAYS:
        r = _materialize([user_state, merchant_state], resources, d.isoformat())
        snapshot_meta[d] = (_meta(r, "user_state"), _meta(r, "merchant_state"))
    registry_meta = _materialize([feast_registry], resources)
    online_meta = {}
    dropout_online = {}
    for d in SNAPSHOT_DAYS:
        r = _materialize([online_features], resources, d.isoformat())
        online_meta[d] = _meta(r, "online_features")
        row = {
            "user_id": DROPOUT_USER,
            "merchant_id": DROPOUT_MERCHANT,
            "amount": 10.0,
            "country": "DE",
            "event_ts": dt.datetime.combine(d, dt.time()) + dt.timedelta(days=1, minutes=1),
        }
        dropout_online[d] = feast.online_features([row]).iloc[0]
    return {
        "lake": lake,
        "feast": feast,
        "resources": resources,
        "transactions": {d: _transactions(lake, d) for d in DAYS},
        "snapshot_meta": snapshot_meta,
        "registry_meta": _meta(registry_meta, "feast_registry"),
        "online_meta": online_meta,
        "dropout_online": dropout_online,
    }


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, columns) -> None:
    """Identical values (NaN/None equal to each other), column by column."""
    for col in columns:
        x, y = a[col].reset_index(drop=True), b[col].reset_index(drop=True)
        both_null = x.isna() & y.isna()
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            equal = both_null | (x.astype("float64") == y.astype("float64"))
        else:
            equal = both_null | (x.astype(object) == y.astype(object))
        bad = ~equal
        assert not bad.any(), f"{col}: {int(bad.sum())} rows differ, e.g.\n{pd.concat([x[bad], y[bad]], axis=1).head()}"


# --------------------------------------------------------------------------- snapshots


def test_snapshot_windows_and_tombstones(tmp_path):
    """Window edges of the SQL: [T-24h, T), [T-30d, T); T-30d-1us only yields a tombstone."""
    t = dt.datetime(2026, 10, 5)
    us = dt.timedelta(microseconds=1)
    rows = [  # (user, merchant, ts, amount, country)
        (1, 7, t - dt.timedelta(hours=24), 10.0, "FR"),  # in 24h (edge)
        (1, 8, t - dt.timedelta(hours=24) - us, 20.0, "FR"),  # 7d, not 24h
        (1, 7, t - us, 30.0, "IT"),  # latest
        (1, 9, t, 1000.0, "ES"),  # at T: excluded
        (2, 7, t - dt.timedelta(days=30), 5.0, "DE"),  # 30d edge: included
        (3, 8, t - dt.timedelta(days=30) - us, 5.0, "DE"),  # just outside: tombstone
    ]
    df = pd.DataFrame(rows, columns=["user_id", "merchant_id", "event_ts", "amount", "country"])
    df["event_id"] = [f"e{i}" for i in range(len(df))]
    labels = pd.DataFrame(
        {
            "event_id": ["e0", "e1", "e4"],
            "event_ts": df["event_ts"].iloc[np.array([0, 1, 4])].to_numpy(),
            "user_id": [1, 1, 2],
            "merchant_id": [7, 8, 7],
            "label_ts": [t - us, t, t - dt.timedelta(hours=1)],  # e1's chargeback arrives at T: not yet known
            "is_fraud": True,
            "reason_code": "x",
        }
    )
    tx_file, lb_file = str(tmp_path / "tx.parquet"), str(tmp_path / "lb.parquet")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tx_file)
    pq.write_table(pa.Table.from_pandas(labels, preserve_index=False), lb_file)
    users = compute_user_state([tx_file], t).to_pandas().set_index("user_id")
    merchants = compute_merchant_state([tx_file], [lb_file], t).to_pandas().set_index("merchant_id")

    assert list(users.index) == [1, 2, 3]
    u1 = users.loc[1]
    assert (u1.user_txn_count_24h, u1.user_amount_sum_24h) == (2, 40.0)
    assert (u1.user_txn_count_7d, u1.user_amount_sum_7d, u1.user_distinct_merchants_7d) == (3, 60.0, 2)
    assert u1.user_mean_amount_30d == 20.0 and u1.user_last_country == "IT"
    assert u1.user_last_txn_epoch_s == (t - us - dt.datetime(1970, 1, 1)).total_seconds()
    assert users.loc[2].user_txn_count_24h == 0 and users.loc[2].user_mean_amount_30d == 5.0
    assert users.loc[3, list(USER_STATE_FEATURES)].isna().all()  # tombstone
    assert (users["event_timestamp"] == pd.Timestamp(t, tz="UTC")).all()

    assert list(merchants.index) == [7, 8]
    assert (merchants.loc[7].merchant_txn_count_30d, merchants.loc[7].merchant_cb_count_30d) == (3, 2)
    assert merchants.loc[7].merchant_cb_rate_30d == pytest.approx(2 / 3)
    assert (merchants.loc[8].merchant_txn_count_30d, merchants.loc[8].merchant_cb_count_30d) == (1, 0)


def test_snapshot_assets_metadata(world):
    users_meta, merchants_meta = world["snapshot_meta"][SNAPSHOT_DAYS[3]]
    assert users_meta["as_of"] == "2026-10-05T00:00:00Z"
    assert users_meta["tombstoned_users"] == 1 and merchants_meta["tombstoned_merchants"] == 1
    assert users_meta["active_users"] > 100
    assert merchants_meta["chargebacks_30d"] > 0
    reg = world["registry_meta"]
    assert set(reg["feature_views"]) == {"user_state", "merchant_state", "user_recent"}
    assert reg["n_features"] == len(SERVED_FEATURES)
    assert all(not m["skipped"] for m in world["online_meta"].values())


def test_rematerializing_a_partition_replaces_it(world):
    lake, resources = world["lake"], world["resources"]
    day = SNAPSHOT_DAYS[3].isoformat()
    before = {t: lake.read_partition(t, day) for t in ("user_state", "merchant_state")}
    _materialize([user_state, merchant_state], resources, day)
    for table, old in before.items():
        files = list(lake.table_dir(table).rglob("*.parquet"))
        assert len(files) == len(SNAPSHOT_DAYS), files  # one file per partition, nothing left over
        new = lake.read_partition(table, day)
        assert new.equals(old)
        key = "user_id" if table == "user_state" else "merchant_id"
        assert new.column(key).to_pandas().is_unique
    # Re-running the latest online partition reloads it; an older one is refused (no rollback).
    again = _meta(_materialize([online_features], resources, day), "online_features")
    assert not again["skipped"] and again["online_as_of"].startswith("2026-10-05")
    older = _meta(_materialize([online_features], resources, SNAPSHOT_DAYS[1].isoformat()), "online_features")
    assert older["skipped"] and older["online_as_of"].startswith("2026-10-05")
    assert world["feast"].online_snapshot_as_of() == dt.datetime(2026, 10, 5, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- consistency


def _after_rows(world) -> pd.DataFrame:
    """Transactions of the day after the last snapshot, plus dropout and never-seen entities."""
    tx = world["transactions"][DAYS[4]].copy()
    extra = pd.DataFrame(
        {
            "event_id": ["x-drop", "x-new", "x-at-T"],
            "event_ts": [LAST_T + dt.timedelta(minutes=5), LAST_T + dt.timedelta(hours=3), LAST_T],
            "user_id": [DROPOUT_USER, UNKNOWN_USER, int(tx.user_id.iloc[0])],
            "merchant_id": [DROPOUT_MERCHANT, UNKNOWN_MERCHANT, int(tx.merchant_id.iloc[0])],
            "amount": [12.5, 99.0, 7.0],
            "currency": "EUR",
            "category": "grocery",
            "country": ["DE", "FR", "FR"],
            "channel": "pos",
        }
    )
    return pd.concat([tx, extra], ignore_index=True)


def test_online_features_equal_training_frame(world):
    feast = world["feast"]
    rows = _after_rows(world)
    online = feast.online_features(rows)
    training = feast.training_frame(rows)

    assert len(online) == len(training) == len(rows)
    assert list(training["event_id"]) == list(rows["event_id"])  # input order kept
    assert list(training.columns) == list(rows.columns) + SERVED_FEATURES
    _assert_same(online, training, ["user_id", "merchant_id", *SERVED_FEATURES])

    # The comparison is not vacuous: real state for most rows, nulls where there is none.
    assert training["user_mean_amount_30d"].notna().mean() > 0.9
    assert training["merchant_cb_count_30d"].gt(0).any()
    assert training["country_changed"].isin([0, 1]).all() and training["country_changed"].eq(1).any()
    for event_id in ("x-drop", "x-new"):
        row = training.set_index("event_id").loc[event_id]
        assert row[list(USER_STATE_FEATURES) + list(MERCHANT_STATE_FEATURES)].isna().all(), event_id
        assert pd.isna(row.amount_to_user_mean_30d) and pd.isna(row.seconds_since_last_txn)
        assert row.country_changed == 0
    # Request-time features are fresh: computed from the transaction itself.
    ts = pd.to_datetime(rows["event_ts"])
    assert (training["hour_of_day"] == ts.dt.hour).all()
    assert (training["day_of_week"] == ts.dt.dayofweek + 1).all()


def test_dropout_tombstone_overwrites_online_state(world):
    """The dropout user was active in the snapshot of DAYS[2]; the next one must clear it online."""
    seen = world["dropout_online"]
    assert seen[SNAPSHOT_DAYS[2]]["user_mean_amount_30d"] == 42.0
    assert seen[SNAPSHOT_DAYS[2]]["user_last_country"] == "AT"
    assert seen[SNAPSHOT_DAYS[2]]["merchant_txn_count_30d"] == 1
    last = seen[SNAPSHOT_DAYS[3]]
    assert pd.isna(last["user_mean_amount_30d"]) and pd.isna(last["user_last_country"])
    assert pd.isna(last["merchant_txn_count_30d"])


# --------------------------------------------------------------------------- point in time


def test_training_frame_is_point_in_time(world):
    """Each transaction gets the latest snapshot stamped <= its event_ts, never a later one."""
    feast, lake = world["feast"], world["lake"]
    tx = pd.concat([world["transactions"][d] for d in DAYS], ignore_index=True)
    # Plus rows exactly on and just before snapshot instants.
    probe = world["transactions"][DAYS[2]].head(20).copy()
    on_t = probe.assign(event_id=probe.event_id + "-onT", event_ts=pd.Timestamp("2026-10-04"))
    before_t = probe.assign(
        event_id=probe.event_id + "-preT", event_ts=pd.Timestamp("2026-10-04") - pd.Timedelta(microseconds=1)
    )
    entity = pd.concat([tx, on_t, before_t], ignore_index=True)
    frame = feast.training_frame(entity)

    snaps = pd.concat(
        [lake.read_partition("user_state", d.isoformat()).to_pandas() for d in SNAPSHOT_DAYS], ignore_index=True
    )
    snaps["stamp"] = snaps.pop("event_timestamp").dt.tz_convert(None)
    expected = entity[["event_id", "user_id", "event_ts"]].assign(stamp=pd.to_datetime(entity.event_ts).dt.floor("D"))
    expected = expected.merge(snaps, on=["user_id", "stamp"], how="left")  # day D+1's rows see stamp D+1 00:00
    # Users absent from that snapshot had no activity in 30 days, and no earlier snapshot is
    # newer than it: they get nulls (first day: no snapshot yet at all).
    _assert_same(frame, expected, list(USER_STATE_FEATURES))

    first_day = pd.to_datetime(frame.event_ts) < pd.Timestamp("2026-10-02")
    assert frame.loc[first_day, "user_txn_count_24h"].isna().all()
    assert frame.loc[~first_day, "user_txn_count_24h"].notna().mean() > 0.9
    # Never the future: the user's last known transaction is strictly before the row.
    known = frame["seconds_since_last_txn"].notna()
    assert (frame.loc[known, "seconds_since_last_txn"] > 0).all()
    assert (frame.set_index("event_id").loc[on_t.event_id, "seconds_since_last_txn"].dropna() > 0).all()
    # Just before T the row still sees the previous day's snapshot, at T the new one.
    pre = frame.set_index("event_id").loc[before_t.event_id, "user_txn_count_24h"].to_numpy()
    at = frame.set_index("event_id").loc[on_t.event_id, "user_txn_count_24h"].to_numpy()
    assert not np.array_equal(pre, at)


def test_training_frame_keeps_every_row(world):
    """Batch scoring "as of" one instant: >1000 rows share a timestamp, some share all keys.

    feast's dask join deduplicates on (keys, timestamp) and drops rows whose snapshots all
    lie outside their window; FeastStore.training_frame works around both.
    """
    feast, lake = world["feast"], world["lake"]
    users = lake.read_partition("user_state", SNAPSHOT_DAYS[3].isoformat()).column("user_id").to_pylist()
    merchants = list(range(7))
    at = LAST_T + dt.timedelta(hours=1)
    rows = pd.DataFrame([(u, m) for u in users for m in merchants], columns=["user_id", "merchant_id"])
    rows["amount"] = 10.0 + rows.index % 13
    rows["country"] = np.where(rows.index % 3 == 0, "FR", "DE").astype(object)
    rows.loc[5, "country"] = None
    dup = rows.head(3).assign(amount=[1.0, 2.0, 3.0])  # same user, merchant and instant, other amounts
    early = rows.head(2).assign(event_ts=pd.Timestamp("2026-09-20"))  # entity has only later snapshots
    rows = pd.concat(
        [rows.assign(event_ts=pd.Timestamp(at)), dup.assign(event_ts=pd.Timestamp(at)), early], ignore_index=True
    )
    assert len(rows) > 1000
    training = feast.training_frame(rows)
    assert len(training) == len(rows)
    assert training[["user_id", "merchant_id", "amount"]].equals(rows[["user_id", "merchant_id", "amount"]])
    early_rows = training.tail(2)
    assert early_rows[list(USER_STATE_FEATURES) + list(MERCHANT_STATE_FEATURES)].isna().all().all()
    now = training.iloc[:-2]
    online = feast.online_features(rows.iloc[:-2])
    _assert_same(online, now, ["user_id", "merchant_id", *SERVED_FEATURES])
    assert now.loc[5, "country_changed"] == 0  # unknown country: not a change
    ratios = now["amount_to_user_mean_30d"] * now["user_mean_amount_30d"]
    assert np.allclose(ratios.dropna(), now.loc[ratios.notna(), "amount"])


def test_training_frame_without_any_match(world):
    """Rows that match no snapshot at all (before the first one, unknown entities) get nulls."""
    rows = pd.DataFrame(
        {
            "event_id": ["a", "b", "c"],
            "user_id": [1, 2, UNKNOWN_USER],
            "merchant_id": [1, 2, UNKNOWN_MERCHANT],
            "event_ts": pd.to_datetime(["2026-09-20 10:00:00", "2026-09-30 23:59:59", "2026-10-05 12:00:00"]),
            "amount": [5.0, 6.0, 7.0],
            "country": ["FR", "FR", "DE"],
        }
    )
    frame = world["feast"].training_frame(rows)
    assert len(frame) == 3
    assert frame[list(USER_STATE_FEATURES) + list(MERCHANT_STATE_FEATURES)].isna().all().all()
    assert list(frame["hour_of_day"]) == [10, 23, 12]


# --------------------------------------------------------------------------- plumbing


def test_config_is_pluggable_and_absolute(tmp_path):
    lake = Lake(root=str(tmp_path / "lake"))
    store = FeastStore(
        lake=lake,
        repo_dir=str(tmp_path / "feast"),
        online_store_type="redis",
        online_store_connection_string="redis:6379,db=0",
    )
    assert store.config_dict()["online_store"] == {"type": "redis", "connection_string": "redis:6379,db=0"}
    local = FeastStore(lake=lake, repo_dir="data/feast").config_dict()
    assert Path(local["registry"]["path"]).is_absolute() and Path(local["online_store"]["path"]).is_absolute()
    with pytest.raises(ValueError):
        FeastStore(lake=lake, online_store_type="redis").config_dict()


def test_code_location_does_not_import_feast():
    code = (
        "import sys, assets.feature_store, resources.feast_store, resources.feast_repo; "
        "heavy = {'feast', 'duckdb', 'dask'} & {m.split('.')[0] for m in sys.modules}; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    assert len(FEATURE_STORE_ASSETS) == 4
    assert set(ON_DEMAND_FEATURES) <= set(SERVED_FEATURES)
