"""transaction_features partitions: re-runs replace, and days come out the same whatever order
they are materialized in, one at a time or as one backfill run."""

import dagster as dg
import pandas as pd

from assets import features, ingestion

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]


def _features(resources, day=None, days=None):
    tags = (
        {}
        if days is None
        else {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    )
    assert dg.materialize([features.transaction_features], partition_key=day, resources=resources, tags=tags).success


def _read_all(lake, days):
    return {day: lake.read_partition("transaction_features", day).to_pandas() for day in days}


def test_any_order_single_days_or_one_backfill_give_the_same_rows(resources):
    lake = resources["lake"]
    for day in DAYS:
        assert dg.materialize(
            [ingestion.raw_transactions, ingestion.raw_labels], partition_key=day, resources=resources
        ).success
    for day in (DAYS[3], DAYS[1], DAYS[2], DAYS[0]):  # out of order: later days first
        _features(resources, day=day)
    one_by_one = _read_all(lake, DAYS)

    _features(resources, days=DAYS)  # the same days again, as one backfill run
    backfilled = _read_all(lake, DAYS)
    _features(resources, day=DAYS[2])  # and one day once more
    again = _read_all(lake, DAYS)

    for day in DAYS:
        pd.testing.assert_frame_equal(one_by_one[day], backfilled[day])
        pd.testing.assert_frame_equal(one_by_one[day], again[day])
        files = list((lake.table_dir("transaction_features") / f"date={day}").glob("*.parquet"))
        assert len(files) == 1, files
        raw = lake.read_partition("raw_transactions", day).to_pandas()
        assert sorted(again[day]["event_id"]) == sorted(raw["event_id"])  # every valid row, once
    view = resources["warehouse"].query("select count(*) n, count(distinct event_id) ids from transaction_features")
    assert view["n"][0] == view["ids"][0] == sum(len(again[d]) for d in DAYS)
