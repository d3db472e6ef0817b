"""Spark (`local[2]`, through dagster-pyspark) and DuckDB compute the same transaction_features.

One small world (SMALL_WORLD, five days of raw events) is shared by the module; the Spark
session starts once (PySparkResource in a module fixture) and is reused by getOrCreate.

Tolerance: strings, timestamps and integers must be equal; floats within 1e-12 relative
(both engines sum exact int64 micro-units and apply the same IEEE operations in the same
order, so in practice they are bitwise equal; the test reports how many are). Missing values:
the spec says null; DuckDB's engine currently emits NaN for "none" (see `_missing`), so NaN
and null count as the same missing value and must sit in the same places.
"""

from __future__ import annotations

import datetime as dt
import shutil

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets import ingestion
from assets.features import transaction_features
from driftline import spec
from resources import FeatureEngine, Lake
from resources.engines.spark_features import SCHEMA

pytestmark = [pytest.mark.spark, pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

DAYS = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05"]
START, END = dt.datetime(2026, 10, 2), dt.datetime(2026, 10, 6)
FLOAT_RTOL = 1e-12


@pytest.fixture(scope="module")
def spark():
    from resources.profiles import spark_resource

    resource = spark_resource("local[2]", {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "1g"})
    with dg.build_resources({"spark": resource}) as built:
        yield built.spark


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_resources):
    root = tmp_path_factory.mktemp("spark_parity")
    resources = make_resources(root)
    for day in DAYS:
        assert dg.materialize(
            [ingestion.raw_transactions, ingestion.raw_labels], partition_key=day, resources=resources
        ).success
    return root, resources


def _missing(col: pa.ChunkedArray) -> np.ndarray:
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(col.type):
        nulls |= pc.fill_null(pc.is_nan(col), False).to_numpy(zero_copy_only=False)  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute defines its kernels at import time
    return nulls


def assert_same_features(spark_t: pa.Table, duck_t: pa.Table) -> dict:
    assert spark_t.schema == duck_t.schema == SCHEMA
    assert spark_t.num_rows == duck_t.num_rows > 0
    spark_t, duck_t = spark_t.sort_by("event_id"), duck_t.sort_by("event_id")
    bitwise = floats = 0
    for name in SCHEMA.names:
        a, b = spark_t.column(name), duck_t.column(name)
        miss_a, miss_b = _missing(a), _missing(b)
        assert (miss_a == miss_b).all(), f"{name}: missing values in different rows"
        keep = pa.array(~miss_a)
        a, b = a.filter(keep), b.filter(keep)
        if pa.types.is_floating(a.type):
            x, y = a.to_numpy(), b.to_numpy()
            np.testing.assert_allclose(x, y, rtol=FLOAT_RTOL, atol=0, err_msg=name)
            bitwise, floats = bitwise + int((x == y).sum()), floats + len(x)
        else:
            assert a.equals(b), f"{name}: values differ"
    return {"rows": spark_t.num_rows, "floats": floats, "bitwise_equal_floats": bitwise}


def test_engines_agree_over_a_multi_day_range(world, spark):
    _, resources = world
    lake = resources["lake"]
    duck = FeatureEngine(threads=2).compute(lake, START, END)
    sp = FeatureEngine(engine="spark", spark=spark).compute(lake, START, END)
    result = assert_same_features(sp, duck)
    print(f"\nparity {START:%Y-%m-%d}..{END:%Y-%m-%d}: {result}")
    assert result["rows"] > 1500
    # the history windows are exercised: rows with and without a past, chargebacks seen
    assert 0 < pc.sum(duck.column(spec.IS_NEW_MERCHANT)).as_py() < duck.num_rows  # pyright: ignore[reportAttributeAccessIssue]  # pyarrow.compute defines its kernels at import time
    assert pc.max(duck.column(spec.MERCHANT_CB_COUNT)).as_py() > 0  # pyright: ignore[reportAttributeAccessIssue]  # as above


def test_spark_asset_writes_the_same_lake_partition(world, spark, tmp_path):
    """The asset on engine=spark: one Parquet file per day, atomically, equal to DuckDB's."""
    root, resources = world
    spark_root = tmp_path / "spark_lake"
    for table in ("raw_transactions", "raw_labels"):
        shutil.copytree(root / "lake" / table, spark_root / table)
    spark_resources = dict(
        resources, lake=Lake(root=str(spark_root)), feature_engine=FeatureEngine(engine="spark", spark=spark)
    )
    spark_resources["warehouse"] = type(resources["warehouse"])(path=str(tmp_path / "wh.duckdb"))
    day = DAYS[-1]
    for res in (resources, spark_resources):
        result = dg.materialize([transaction_features], partition_key=day, resources=res)
        assert result.success
    meta = result.asset_materializations_for_node("transaction_features")[0].metadata
    assert meta["engine"].value == "spark"
    spark_lake = spark_resources["lake"]
    files = list(spark_lake.table_dir("transaction_features").rglob("*.parquet"))
    assert files == [spark_lake.partition_file("transaction_features", day)]
    assert not any((spark_root / ".staging").iterdir())
    assert_same_features(
        spark_lake.read_partition("transaction_features", day),
        resources["lake"].read_partition("transaction_features", day),
    )


def test_spark_engine_without_session_is_a_clear_error(world):
    with pytest.raises(ValueError, match="PySparkResource"):
        FeatureEngine(engine="spark").compute(world[1]["lake"], START, END)
