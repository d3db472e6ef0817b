"""The landing-folder sensor requests exactly the days whose files are new or changed."""

import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg

from assets import ingestion
from resources import LandingFolderEventSource
from sensors.landing import build_landing_sensor

sensor = build_landing_sensor(dg.DefaultSensorStatus.STOPPED)


def _land(source, synthetic, day: str, name="part-0.parquet", half=0):
    """Land one half of the day's rows (a connector flushes a day in several files)."""
    folder = source.partition_dir("transactions", dt.date.fromisoformat(day))
    folder.mkdir(parents=True, exist_ok=True)
    rows = synthetic.read("transactions", dt.date.fromisoformat(day))
    rows.iloc[half::2].to_parquet(folder / name)
    return folder / name


def _evaluate(make_resources, source, cursor=None):
    resources = make_resources(Path(source.path if hasattr(source, "path") else "."), event_source=source)
    defs = dg.Definitions(
        assets=[ingestion.raw_transactions, ingestion.raw_labels], sensors=[sensor], resources=resources
    )
    ctx = dg.build_sensor_context(cursor=cursor, resources={"event_source": source}, definitions=defs)
    result = sensor.evaluate_tick(ctx)
    return result.run_requests or [], result.cursor, result.skip_message


def test_new_and_changed_days_are_requested_once(tmp_path, resources, make_resources):
    synthetic = resources["event_source"]
    landing = LandingFolderEventSource(path=str(tmp_path / "landing"))
    _land(landing, synthetic, "2026-10-01")
    _land(landing, synthetic, "2026-10-02")
    (tmp_path / "landing" / "transactions" / "date=2026-10-02" / ".part-1.parquet.tmp").write_text("in flight")

    requests, cursor, _ = _evaluate(make_resources, landing)
    assert sorted(r.partition_key or "" for r in requests) == ["2026-10-01", "2026-10-02"]
    assert all(r.asset_selection == [dg.AssetKey("raw_transactions")] for r in requests)

    again, cursor2, skip = _evaluate(make_resources, landing, cursor)
    assert skip is not None and cursor is not None and cursor2 is not None
    assert again == [] and "no new" in skip and json.loads(cursor2) == json.loads(cursor)

    path = _land(landing, synthetic, "2026-10-02", name="part-1.parquet", half=1)  # a late file for an old day
    os.utime(path, ns=(1, 1))
    changed, _, _ = _evaluate(make_resources, landing, cursor2)
    assert [r.partition_key for r in changed] == ["2026-10-02"]
    assert changed[0].run_key != next(r.run_key for r in requests if r.partition_key == "2026-10-02")

    # the requested run ingests both files of the day
    res = make_resources(tmp_path / "run", event_source=landing)
    run = dg.materialize([ingestion.raw_transactions], partition_key="2026-10-02", resources=res)
    rows = run.get_asset_materialization_events()[0].materialization.metadata["valid_rows"].value
    day_rows = len(synthetic.read("transactions", dt.date(2026, 10, 2)))
    assert rows == day_rows


def test_days_outside_the_partitions_are_skipped(tmp_path, resources, make_resources):
    landing = LandingFolderEventSource(path=str(tmp_path / "landing"))
    folder = landing.partition_dir("transactions", dt.date(2020, 1, 1))
    folder.mkdir(parents=True)
    resources["event_source"].read("transactions", dt.date(2026, 10, 1)).to_parquet(folder / "x.parquet")
    requests, _, _ = _evaluate(make_resources, landing)
    assert requests == []


def test_sensor_skips_when_the_source_is_synthetic(resources, make_resources):
    requests, _, skip = _evaluate(make_resources, resources["event_source"])
    assert requests == [] and skip is not None and "not a landing folder" in skip
