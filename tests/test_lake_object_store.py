"""The lake on an object store: `Lake(root="s3://bucket/prefix")` against a real S3 API.

S3 is outside the project, so a local S3-compatible server stands in for it: moto's server
(`moto[server]`, a test-only dependency) on a loopback port, reached over HTTP with botocore
exactly as a MinIO or AWS endpoint would be (`s3_endpoint_url`). Nothing is mocked inside the
process: s3fs, DuckDB (through the registered fsspec filesystem), pandas, dask and pyarrow's
own S3 client (Feast) all talk HTTP to it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import cast

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from assets import feature_store, ingestion
from assets.features import transaction_features
from resources.feast_store import FeastStore
from resources.lake import Lake, is_remote_url, spark_path
from resources.warehouse import Warehouse

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings(
        "ignore::DeprecationWarning",
        "ignore::FutureWarning",
        "ignore:Asset job __ephemeral_asset_job__ materializes assets with varying BackfillPolicies",
    ),
]

BUCKET = "driftline-lake"
DAY = "2026-10-05"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on 127.0.0.1 (free port), credentials in the env as a pod would have them."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "driftline-test",
            "AWS_SECRET_ACCESS_KEY": "driftline-test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    server.stop()


def _lake(endpoint: str, prefix: str) -> Lake:
    return Lake(root=f"s3://{BUCKET}/{prefix}", s3_endpoint_url=endpoint)


def _objects(lake: Lake, table: str) -> list[str]:
    return sorted(lake.fs.find(f"{BUCKET}/{lake.url.split('/', 3)[3]}/{table}"))


def test_write_replace_read_and_list_partitions(s3_endpoint):
    lake = _lake(s3_endpoint, "unit")
    assert lake.is_remote and lake.url == f"s3://{BUCKET}/unit"
    first = pa.table({"event_id": ["a", "b", "c"], "amount": [1.0, 2.0, 3.0]})
    second = pa.table({"event_id": ["x", "y"], "amount": [9.0, 8.0]})

    url = lake.write_partition("t", "2026-10-01", first)
    assert url == f"s3://{BUCKET}/unit/t/date=2026-10-01/data.parquet"
    lake.write_partition("t", "2026-10-02", first)
    assert lake.read_partition("t", "2026-10-01").equals(first)

    # re-writing a partition replaces its one object: no duplicates, no staging leftovers
    lake.write_partition("t", "2026-10-01", second)
    assert lake.read_partition("t", "2026-10-01").equals(second)
    assert _objects(lake, "t") == [
        f"{BUCKET}/unit/t/date=2026-10-01/data.parquet",
        f"{BUCKET}/unit/t/date=2026-10-02/data.parquet",
    ]
    assert not lake.fs.exists(f"{BUCKET}/unit/.staging")

    assert lake.list_partitions("t") == ["2026-10-01", "2026-10-02"]
    assert lake.list_partitions("missing") == []
    assert lake.has_partition("t", "2026-10-02") and not lake.has_partition("t", "2026-10-03")
    assert lake.existing_partition_files("t", ["2026-09-30", "2026-10-02", "2026-10-01"]) == [
        f"s3://{BUCKET}/unit/t/date=2026-10-02/data.parquet",
        f"s3://{BUCKET}/unit/t/date=2026-10-01/data.parquet",
    ]
    assert lake.tables() == ["t"]
    assert len(lake.table_files("t")) == 2
    assert lake.read_files(lake.table_files("t")).num_rows == 5
    pd.testing.assert_frame_equal(lake.read_pandas(url), second.to_pandas())

    # another split-style key (training_set/split=train) and several files per partition (prediction_log)
    lake.write_partition_file(lake.partition_url("s", "train", key="split"), first)
    assert lake.list_partitions("s", key="split") == ["train"]
    lake.write_partition_file(lake.partition_url("log", "2026-10-01", file="part-1.parquet"), first)
    lake.write_partition_file(lake.partition_url("log", "2026-10-01", file="part-2.parquet"), second)
    assert [f.rsplit("/", 1)[1] for f in lake.partition_files("log", ["2026-10-01", "2026-10-02"])] == [
        "part-1.parquet",
        "part-2.parquet",
    ]


def test_a_write_that_fails_midway_keeps_the_previous_partition(s3_endpoint, monkeypatch):
    import resources.lake as lake_module

    lake = _lake(s3_endpoint, "atomic")
    good = pa.table({"x": [1, 2]})
    lake.write_partition("t", DAY, good)

    def crash_midway(table, where, **kwargs):
        where.write(b"PAR1 half a file")  # bytes already produced when the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(lake_module.pq, "write_table", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        lake.write_partition("t", DAY, pa.table({"x": [3]}))
    monkeypatch.undo()
    assert lake.read_partition("t", DAY).equals(good)
    assert len(_objects(lake, "t")) == 1


def test_duckdb_reads_the_s3_lake_through_the_registered_filesystem(s3_endpoint, tmp_path):
    import duckdb

    lake = _lake(s3_endpoint, "duck")
    for i, day in enumerate(["2026-10-01", "2026-10-02", "2026-10-03"]):
        lake.write_partition("events", day, pa.table({"n": np.arange(10 * (i + 1))}))

    plain = duckdb.connect(config={"autoinstall_known_extensions": False})
    with pytest.raises(duckdb.Error):  # no httpfs offline: an s3:// URL is unreadable by default
        plain.sql(f"select count(*) from read_parquet('{lake.glob('events')}')").fetchall()
    plain.close()

    with lake.duckdb_connect() as con:
        lake.prepare_duckdb(con)  # idempotent
        rows = con.sql(
            f"select date, count(*) from read_parquet('{lake.glob('events')}', hive_partitioning = true) "
            "group by 1 order by 1"
        ).fetchall()
        assert [(str(d), n) for d, n in rows] == [("2026-10-01", 10), ("2026-10-02", 20), ("2026-10-03", 30)]
        files = lake.existing_partition_files("events", ["2026-10-02", "2026-10-03"])
        assert con.sql("select count(*) from read_parquet(?)", params=[files]).fetchall()[0][0] == 50

    warehouse = Warehouse(path=str(tmp_path / "wh.duckdb"))
    assert warehouse.refresh_views(lake) == ["events"]
    assert warehouse.refresh_views(lake) == []  # views current: no write lock taken
    assert warehouse.query("select count(*) n from events", lake=lake)["n"][0] == 60


def test_assets_materialize_on_an_s3_lake(s3_endpoint, tmp_path, make_resources):
    """raw events, features, snapshots, the Feast registry, the online store and the
    point-in-time training join, with the lake in the bucket and nothing of it on disk."""
    lake = _lake(s3_endpoint, "assets")
    resources = make_resources(tmp_path)
    resources["lake"] = lake
    resources["feast"] = FeastStore(lake=lake, repo_dir=str(tmp_path / "feast"))
    first = (dt.date.fromisoformat(DAY) - dt.timedelta(days=1)).isoformat()
    for day in (first, DAY):
        result = dg.materialize(
            [ingestion.raw_transactions, ingestion.raw_labels, transaction_features],
            partition_key=day,
            resources=resources,
        )
        assert result.success
    meta = result.asset_materializations_for_node("raw_transactions")[0].metadata
    assert meta["path"].value == f"s3://{BUCKET}/assets/raw_transactions/date={DAY}/data.parquet"
    assert not (tmp_path / "lake").exists()
    assert lake.list_partitions("transaction_features") == [first, DAY]

    tx = lake.read_partition("raw_transactions", DAY).to_pandas()
    features = lake.read_partition("transaction_features", DAY).to_pandas()
    assert len(features) == len(tx) > 300 and features["event_id"].is_unique
    # yesterday's history reached today's windows through the DuckDB engine's s3 reads
    assert features["user_txn_count_7d"].max() > 0
    warehouse = resources["warehouse"]
    assert (
        warehouse.query("select count(*) n from transaction_features", lake=lake)["n"][0]
        == len(features) + lake.read_partition("transaction_features", first).num_rows
    )

    # a re-run replaces the partition (one object, same rows)
    assert dg.materialize([ingestion.raw_transactions], partition_key=DAY, resources=resources).success
    assert len(_objects(lake, "raw_transactions")) == 2
    assert lake.read_partition("raw_transactions", DAY).to_pandas().equals(tx)

    # Feast: snapshots in the bucket, FileSources on s3:// with s3_endpoint_override
    for asset in ([feature_store.user_state, feature_store.merchant_state],):
        assert dg.materialize(asset, partition_key=DAY, resources=resources).success
    assert dg.materialize([feature_store.feast_registry], resources=resources).success
    online = dg.materialize([feature_store.online_features], partition_key=DAY, resources=resources)
    assert online.success
    feast = resources["feast"]
    source = feast.store().get_data_source("user_state_source")
    assert source.path == f"s3://{BUCKET}/assets/user_state"
    assert source.file_options.s3_endpoint_override == s3_endpoint

    users = lake.read_partition("user_state", DAY).to_pandas()
    active = users[users["user_txn_count_24h"].notna()].head(5)
    after = dt.datetime.fromisoformat(DAY) + dt.timedelta(days=1, minutes=5)
    rows = pd.DataFrame(
        {"user_id": active["user_id"].to_numpy(), "merchant_id": 1, "amount": 10.0, "country": "FR", "event_ts": after}
    )
    served = feast.online_features(rows)
    assert list(served["user_txn_count_24h"]) == list(active["user_txn_count_24h"])
    offline = feast.training_frame(rows.assign(event_id=[f"e{i}" for i in range(len(rows))]))
    assert list(offline["user_txn_count_24h"]) == list(active["user_txn_count_24h"])

    # the training set's readers and its split files
    from assets.training import _newest_feature_day, read_splits, split_path
    from ml.dataset import Window, known_labels, load_transactions

    assert _newest_feature_day(lake) == dt.date.fromisoformat(DAY)
    start = dt.datetime.fromisoformat(first)
    window = Window(start=start, end=start + dt.timedelta(days=2), cutoff=start + dt.timedelta(days=2))
    loaded = load_transactions(lake, window)
    assert len(loaded) == lake.read_partition("raw_transactions", first).num_rows + len(tx)
    labels = pd.concat([lake.read_partition("raw_labels", d).to_pandas() for d in (first, DAY)])
    assert known_labels(lake, window) == set(
        labels.loc[labels["is_fraud"] & (labels["label_ts"] < window.cutoff), "event_id"]
    )
    for split in ("train", "val", "test"):
        lake.write_partition_file(split_path(lake, split), pa.Table.from_pandas(loaded.head(10), preserve_index=False))
    assert split_path(lake, "val") == f"s3://{BUCKET}/assets/training_set/split=val/data.parquet"
    assert {k: len(v) for k, v in read_splits(lake).items()} == {"train": 10, "val": 10, "test": 10}


def test_monitoring_reads_and_writes_the_s3_lake(s3_endpoint):
    from monitoring.data import performance_rows, read_prediction_window, reference_frame, report_dir
    from testkit.simulate import write_prediction_log

    lake = _lake(s3_endpoint, "mon")
    tx = pd.DataFrame(
        {
            "event_id": list("abcd"),
            "user_id": [1, 2, 3, 4],
            "merchant_id": [5, 5, 6, 6],
            "amount": [1.0, 2.0, 3.0, 4.0],
            "category": ["grocery"] * 4,
            "country": ["FR"] * 4,
            "channel": ["pos"] * 4,
            "event_ts": pd.to_datetime([f"{DAY} 10:00:0{i}" for i in range(4)]),
        }
    )
    url = write_prediction_log(lake, DAY, tx, np.array([0.9, 0.2, 0.8, 0.1]), "3")
    assert url == f"s3://{BUCKET}/mon/prediction_log/date={DAY}/part-sim-3-main.parquet"
    frame, total = read_prediction_window(lake, [DAY], ["country"], ["amount"])
    assert total == 4 and list(frame["amount"]) == [1.0, 2.0, 3.0, 4.0]
    lake.write_partition("raw_labels", DAY, pa.table({"event_id": ["a"], "is_fraud": [True]}))
    per_day, pooled = performance_rows(lake, [DAY], [DAY], 0.5)
    assert per_day[0]["rows"] == 4 and pooled["3"]["recall"] == 1.0

    lake.write_partition_file(
        lake.partition_url("training_set", "train", key="split"), pa.Table.from_pandas(tx, preserve_index=False)
    )
    ref, source = reference_frame(lake, None, "3", cap=10)
    assert source == "training_set train split" and len(ref) == 4
    assert lake.exists(f"s3://{BUCKET}/mon/drift_reference/model_version=3/data.parquet")
    assert reference_frame(lake, None, "3", cap=10)[1] == "drift_reference/model_version=3"
    assert report_dir(lake) == f"s3://{BUCKET}/reports/drift"


def test_local_roots_and_spark_paths(tmp_path):
    local = Lake(root=str(tmp_path / "lake"))
    as_url = Lake(root=(tmp_path / "lake").as_uri())
    assert not local.is_remote and not as_url.is_remote and local.url == as_url.url == str(tmp_path / "lake")
    path = as_url.write_partition("t", DAY, pa.table({"x": [1]}))
    assert path == str(tmp_path / "lake" / "t" / f"date={DAY}" / "data.parquet")
    assert local.list_partitions("t") == [DAY] and local.tables() == ["t"]
    local.prepare_duckdb(None)  # a local lake needs nothing on the connection
    assert is_remote_url("s3://b/p") and not is_remote_url("/x") and not is_remote_url("file:///x")
    assert spark_path("s3://b/lake/t/date=1/data.parquet") == "s3a://b/lake/t/date=1/data.parquet"
    assert spark_path("/lake/t") == "/lake/t"
    with pytest.raises(ValueError, match="object store"):
        _ = Lake(root="s3://b/p").path


def test_spark_engine_gets_s3a_paths_of_the_s3_lake(s3_endpoint, monkeypatch):
    """The Spark engine reads the lake through Hadoop's S3A connector: it is handed s3a:// URLs.
    (Reading them needs hadoop-aws + the AWS SDK bundle jars, not in the pyspark wheel: see
    docs/lake.md; the JVM side is therefore not exercised here.)"""
    from resources.engines import spark_features
    from resources.feature_engine import FeatureEngine

    class RecordingSpark(dg.ConfigurableResource):
        @property
        def spark_session(self):
            return "session"

    seen = {}

    def record(session, tx_files, label_files, start, end):
        seen.update(session=session, tx=tx_files, labels=label_files)
        return pa.table({"event_id": pa.array([], pa.string())})

    monkeypatch.setattr(spark_features, "compute_transaction_features_spark", record)
    lake = _lake(s3_endpoint, "spark")
    lake.write_partition("raw_transactions", DAY, pa.table({"event_id": ["a"]}))
    lake.write_partition("raw_labels", DAY, pa.table({"event_id": ["a"]}))
    start = dt.datetime.fromisoformat(DAY)
    FeatureEngine(engine="spark", spark=RecordingSpark()).compute(lake, start, start + dt.timedelta(days=1))
    assert seen["tx"] == [f"s3a://{BUCKET}/spark/raw_transactions/date={DAY}/data.parquet"]
    assert seen["labels"] == [f"s3a://{BUCKET}/spark/raw_labels/date={DAY}/data.parquet"]


def test_drift_report_on_an_s3_lake_uploads_its_html(s3_endpoint, tmp_path, make_resources):
    from assets import monitoring
    from resources import SyntheticEventSource
    from testkit.simulate import register_stand_in_champion, write_prediction_log, write_reference

    lake = _lake(s3_endpoint, "drift/lake")
    resources = make_resources(
        tmp_path,
        event_source=SyntheticEventSource(seed=3, n_users=200, n_merchants=50, events_per_day=600, fraud_rate=0.02),
    )
    resources["lake"] = lake
    version = register_stand_in_champion(resources["mlflow_registry"])
    world = resources["event_source"].world()
    write_reference(lake, world, [dt.date(2026, 10, 1), dt.date(2026, 10, 2)], version)
    tx = world.transactions(dt.date.fromisoformat(DAY))
    write_prediction_log(lake, DAY, tx, np.full(len(tx), 0.1), version)
    result = dg.materialize(
        [monitoring.prediction_log, monitoring.drift_report],
        selection=[monitoring.drift_report],
        partition_key=DAY,
        resources=resources,
    )
    meta = result.asset_materializations_for_node("drift_report")[0].metadata
    url = f"s3://{BUCKET}/drift/reports/drift/{DAY}.html"
    assert meta["report"].value == url and meta["report_url"].value == url
    assert "Wasserstein distance (normed)" in cast(bytes, lake.fs.cat_file(url)).decode()  # fsspec reads bytes
    assert meta["current_rows"].value == len(tx) and meta["reference_model_version"].value == version
    assert lake.read_partition("drift_report", DAY).num_rows > 0
    assert not (tmp_path / "reports").exists() and not (tmp_path / "lake").exists()
