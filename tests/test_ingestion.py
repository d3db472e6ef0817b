"""Raw assets: idempotent re-runs, conservation through the quarantine, the blocking check."""

import datetime as dt

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from assets import features, ingestion
from resources import LandingFolderEventSource

DAY = "2026-10-05"


def _materialize(assets, resources, partition_key=DAY, selection=None, raise_on_error=True):
    return dg.materialize(
        assets, partition_key=partition_key, resources=resources, selection=selection, raise_on_error=raise_on_error
    )


def test_rerun_of_a_partition_gives_identical_rows_and_no_duplicates(resources):
    lake = resources["lake"]
    _materialize([ingestion.raw_transactions, ingestion.raw_labels], resources)
    first = lake.read_partition("raw_transactions", DAY).to_pandas()
    first_labels = lake.read_partition("raw_labels", DAY).to_pandas()
    _materialize([ingestion.raw_transactions, ingestion.raw_labels], resources)
    second = lake.read_partition("raw_transactions", DAY).to_pandas()
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first_labels, lake.read_partition("raw_labels", DAY).to_pandas())
    assert first["event_id"].is_unique and len(first) > 300
    files = list(lake.table_dir("raw_transactions").rglob("*.parquet"))
    assert len(files) == 1
    n = resources["warehouse"].query("select count(*) n from raw_transactions")["n"][0]
    assert n == len(first)


def test_labels_arrive_after_their_transactions(resources):
    _materialize([ingestion.raw_labels], resources, partition_key="2026-10-20")
    labels = resources["lake"].read_partition("raw_labels", "2026-10-20").to_pandas()
    assert len(labels) > 0
    assert (labels["label_ts"] > labels["event_ts"]).all()
    assert (labels["label_ts"].dt.date == dt.date(2026, 10, 20)).all()


def _corrupted_day(source: LandingFolderEventSource, good: pd.DataFrame) -> dict[int, str]:
    """Write a landing CSV with one bad row of each kind; returns row -> expected reason."""
    bad = good.head(40).astype(str).copy()
    bad["event_ts"] = good.head(40)["event_ts"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    expected = {
        0: "null user_id",
        1: "amount not positive",
        2: "amount above 50000 EUR",
        3: "unknown currency",
        5: "duplicate event_id",
        6: "event_ts outside the partition 2026-10-05",
        7: "unparseable amount (not a float)",
        8: "unexpected column promo_code",
        9: "unparseable event_ts (not a timestamp)",
        10: "null amount",
        11: "unparseable user_id (not an int)",
    }
    bad.loc[0, "user_id"] = ""
    bad.loc[1, "amount"] = "-3.50"
    bad.loc[2, "amount"] = "999999999"
    bad.loc[3, "currency"] = "XXX"
    bad.loc[5, "event_id"] = bad.loc[4, "event_id"]
    bad.loc[6, "event_ts"] = "2026-10-07T10:00:00Z"
    bad.loc[7, "amount"] = "twelve"
    bad["promo_code"] = ""
    bad.loc[8, "promo_code"] = "BLACKFRIDAY"
    bad.loc[9, "event_ts"] = "yesterday-ish"
    bad.loc[10, "amount"] = ""
    bad.loc[11, "user_id"] = "12.5"
    folder = source.partition_dir("transactions", dt.date(2026, 10, 5))
    folder.mkdir(parents=True)
    bad.to_csv(folder / "part-0000.csv", index=False)
    return expected


def test_quarantine_conserves_rows_and_names_each_reason(tmp_path, resources, make_resources):
    good = resources["event_source"].read("transactions", dt.date(2026, 10, 5))
    landing = LandingFolderEventSource(path=str(tmp_path / "landing"))
    expected = _corrupted_day(landing, good)
    res = make_resources(tmp_path / "run", event_source=landing, max_quarantine_share=0.9)
    result = _materialize([ingestion.raw_transactions], res)
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["input_rows"].value == 40
    valid_rows, quarantined_rows = meta["valid_rows"].value, meta["quarantined_rows"].value
    assert isinstance(valid_rows, int) and isinstance(quarantined_rows, int)  # IntMetadataValue
    assert valid_rows + quarantined_rows == 40
    assert meta["quarantined_rows"].value == len(expected)
    q = res["lake"].read_partition("quarantine_raw_transactions", DAY).to_pandas().set_index("row_number")
    for row, reason in expected.items():
        assert reason in q.loc[row, "reason"], (row, q.loc[row, "reason"])
    assert '"amount": "twelve"' in q.loc[7, "record"]  # the original value is kept
    valid = pq.read_table(res["lake"].partition_file("raw_transactions", DAY)).to_pandas()
    assert len(valid) == 40 - len(expected)
    view = res["warehouse"].query("select source, count(*) n from quarantine group by 1")
    assert view.set_index("source")["n"].to_dict() == {"raw_transactions": len(expected)}


def test_blocking_check_stops_a_bad_partition_flowing_downstream(tmp_path, resources, make_resources):
    good = resources["event_source"].read("transactions", dt.date(2026, 10, 5))
    landing = LandingFolderEventSource(path=str(tmp_path / "landing"))
    _corrupted_day(landing, good)
    res = make_resources(tmp_path / "run", event_source=landing, max_quarantine_share=0.05)
    result = dg.materialize(
        [ingestion.raw_transactions, features.transaction_features],
        partition_key=DAY,
        resources=res,
        selection=[ingestion.raw_transactions, features.transaction_features],
        raise_on_error=False,
    )
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 1 and not checks[0].passed
    assert "quarantined" in (checks[0].description or "")
    materialized = {e.materialization.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_transactions"}  # features did not run on the bad partition
    assert not res["lake"].has_partition("transaction_features", DAY)


def test_missing_landing_files_fail_with_a_clear_error(tmp_path, make_resources):
    res = make_resources(tmp_path, event_source=LandingFolderEventSource(path=str(tmp_path / "empty")))
    with pytest.raises(Exception, match="no landing files for transactions on 2026-10-05"):
        _materialize([ingestion.raw_transactions], res)


def test_corrupt_landing_file_is_named_and_old_partition_kept(tmp_path, resources):
    _materialize([ingestion.raw_transactions], resources)
    before = resources["lake"].read_partition("raw_transactions", DAY)
    landing = LandingFolderEventSource(path=str(tmp_path / "landing"))
    folder = landing.partition_dir("transactions", dt.date(2026, 10, 5))
    folder.mkdir(parents=True)
    (folder / "broken.parquet").write_bytes(b"not parquet at all")
    res = dict(resources, event_source=landing)
    with pytest.raises(Exception, match=r"cannot read landing file .*broken.parquet"):
        _materialize([ingestion.raw_transactions], res)
    assert resources["lake"].read_partition("raw_transactions", DAY).equals(before)
