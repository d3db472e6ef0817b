"""Analysts query the DuckDB warehouse while runs write the lake, and never block a run."""

import json
import subprocess
import sys
import time

import dagster as dg

from assets import features, ingestion

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03"]


def _ingest(resources, day):
    assert dg.materialize(
        [ingestion.raw_transactions, ingestion.raw_labels], partition_key=day, resources=resources
    ).success


ANALYST = """
import json, sys, time, duckdb
path, stop = sys.argv[1], sys.argv[2]
con = duckdb.connect(path, read_only=True)  # an analyst keeps the file open and queries in a loop
deadline = time.time() + 120
while time.time() < deadline:
    try:
        n, total = con.execute("select count(*), sum(amount) from raw_transactions").fetchone()
        print(json.dumps({"n": n}), flush=True)
    except Exception as err:
        print(json.dumps({"error": str(err)}), flush=True)
    if os.path.exists(stop):
        break
    time.sleep(0.02)
""".replace("import json", "import json, os")


def test_analyst_queries_run_while_a_materialization_writes(tmp_path, resources):
    _ingest(resources, DAYS[0])
    stop = tmp_path / "stop"
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, resources["warehouse"].path, str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(1.0)  # the analyst session is open before the runs start
        for day in DAYS[1:]:
            _ingest(resources, day)
        run = dg.materialize(
            [features.transaction_features],
            resources=resources,
            tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
        )
        assert run.success
    finally:
        stop.touch()
        out, _ = analyst.communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines()]
    errors = [x["error"] for x in lines if "error" in x]
    counts = [x["n"] for x in lines if "n" in x]
    assert not errors, errors[:3]
    assert len(counts) > 5
    assert counts == sorted(counts)  # every query sees whole partitions: the count only grows
    final = resources["warehouse"].query("select count(*) n from raw_transactions")["n"][0]
    assert counts[-1] == final  # partitions written while the analyst held the file are visible


def test_views_cover_raw_quarantine_and_features(resources):
    for day in DAYS:
        _ingest(resources, day)
    dg.materialize(
        [features.transaction_features],
        resources=resources,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    views = set(resources["warehouse"].query("select view_name from duckdb_views() where not internal")["view_name"])
    assert {
        "raw_transactions",
        "raw_labels",
        "transaction_features",
        "quarantine",
        "quarantine_raw_transactions",
        "quarantine_raw_labels",
    } <= views
    per_day = resources["warehouse"].query("select date, count(*) n from transaction_features group by 1 order by 1")
    raw = resources["warehouse"].query("select date, count(*) n from raw_transactions group by 1 order by 1")
    assert per_day["n"].tolist() == raw["n"].tolist()


HOLDER = """
import os, sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # a read-write session: DuckDB's exclusive lock on the file
print("open", flush=True)
deadline = time.time() + 120
while not os.path.exists(sys.argv[2]) and time.time() < deadline:
    time.sleep(0.05)
"""


def test_a_locked_warehouse_does_not_fail_the_run(tmp_path, resources):
    _ingest(resources, DAYS[0])
    stop = tmp_path / "stop"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, resources["warehouse"].path, str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None  # stdout=PIPE
        assert holder.stdout.readline().strip() == "open"
        # a new table needs a new view, but the file is locked: the run still succeeds
        assert dg.materialize([features.transaction_features], partition_key=DAYS[0], resources=resources).success
    finally:
        stop.touch()
        holder.wait(timeout=30)
    assert resources["lake"].has_partition("transaction_features", DAYS[0])
    assert resources["warehouse"].refresh_views(resources["lake"]) == ["transaction_features"]
