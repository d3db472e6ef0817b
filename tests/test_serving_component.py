"""The model component's hot path, in-process: vectorised encoding bit-identical to the per-value
reference, request shapes (ndarray, tensor) scoring alike, 400s for bad input, and the in-process
online-store reader against Feast's own serialization and on-demand UDF."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest

from seldon.artifact import encode_columns
from testkit.artifacts import build_artifact, sample_rows, small_schema


def _reference_encode(schema, columns):
    """The former per-value implementation of encode_columns (training's contract)."""
    n = len(next(v for v in columns.values() if v is not None)) if columns else 0
    cat = np.empty((n, len(schema.categorical)), dtype=np.int64)
    for j, feat in enumerate(schema.categorical):
        lookup = {v: i for i, v in enumerate(feat.vocabulary)}
        values, oov = columns.get(feat.name), len(feat.vocabulary)
        cat[:, j] = oov if values is None else [lookup.get(v, oov) if isinstance(v, str) else oov for v in values]
    num = np.empty((n, len(schema.numeric)), dtype=np.float32)
    for j, feat in enumerate(schema.numeric):
        values = columns.get(feat.name)
        if values is None:
            x = np.full(n, feat.fill, dtype=np.float64)
        else:
            x = np.array(
                [feat.fill if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values],
                dtype=np.float64,
            )
            x = np.where(np.isfinite(x), x, feat.fill)
        if feat.transform == "log1p":
            x = np.log1p(np.maximum(x, 0.0))
        num[:, j] = (x - feat.mean) / feat.std
    return cat, num


def test_encode_columns_is_bit_identical_to_the_per_value_reference():
    schema = small_schema()
    rng = random.Random(7)
    n = 3000
    cats = ["FR", "DE", "pos", "web", "grocery", "zz", None, float("nan"), 7, ""]
    nums = [None, float("nan"), float("inf"), -float("inf"), -5.0, 0.0, 1e300, 3, True]
    columns = {c.name: [rng.choice(cats) for _ in range(n)] for c in schema.categorical}
    columns.update({f.name: [rng.choice(nums + [rng.uniform(-10, 1e4)]) for _ in range(n)] for f in schema.numeric})
    del columns["user_txn_count_7d"]  # absent: missing
    variants = [
        columns,
        {k: np.array(v, dtype=object) for k, v in columns.items()},
        {
            k: (
                pd.Series(v, dtype=object).to_numpy()
                if isinstance(v[0], str) or v[0] is None
                else pd.to_numeric(pd.Series(v, dtype=object), errors="coerce").to_numpy()
            )
            for k, v in columns.items()
        },
    ]
    with np.errstate(over="ignore"):
        for cols in variants:
            ref_cat, ref_num = _reference_encode(schema, cols)
            cat, num = encode_columns(schema, cols)
            assert np.array_equal(cat, ref_cat)
            assert num.dtype == np.float32 and num.tobytes() == ref_num.tobytes()


@pytest.fixture(scope="module")
def component(tmp_path_factory):
    from seldon.model import FraudModel

    model = FraudModel(str(build_artifact(tmp_path_factory.mktemp("component") / "m", "1", seed=2)))
    model.load()
    return model


def test_request_shapes_score_alike(component):
    names, rows = sample_rows(50, seed=3)
    rows[3][0], rows[4][5] = None, None  # a missing categorical and a missing numeric
    by_columns = component.score_columns({n: [r[i] for r in rows] for i, n in enumerate(names)})
    ndarray = component.predict_raw({"data": {"names": names, "ndarray": rows}})
    tensor = component.predict_raw(
        {"data": {"names": names, "tensor": {"shape": [len(rows), len(names)], "values": [v for r in rows for v in r]}}}
    )
    shuffled = names[::-1]
    reordered = component.predict_raw({"data": {"names": shuffled, "ndarray": [r[::-1] for r in rows]}})
    for out in (ndarray, tensor, reordered):
        assert np.array_equal(np.array(out["data"]["ndarray"], dtype=np.float32), by_columns)
    assert ndarray["meta"]["tags"] == {"model_name": "driftline-fraud", "model_version": "1"}


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"names": ["category"], "ndarray": [["grocery"]]}, "missing"),
        ({"ndarray": [[1.0]]}, "names"),
        ("NAMES", "row width"),
        ("STRING_NUMBER", "non-numeric"),
        ("NAN", "NaN or infinity"),
        ("BOOL", "non-numeric"),
        ("NUMBER_CATEGORY", "categorical"),
        ("NESTED", "value"),
        ("EMPTY", "empty batch"),
        ("HUGE_INT", "out of range"),
        ("TENSOR_SHAPE", "tensor shape"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(component, data, needle):
    names, rows = sample_rows(2)
    row = list(rows[0])
    bodies = {
        "NAMES": {"names": names, "ndarray": [row, row[:-1]]},
        "STRING_NUMBER": {"names": names, "ndarray": [row[:3] + ["12"] + row[4:]]},
        "NAN": {"names": names, "ndarray": [row[:3] + [float("nan")] + row[4:]]},
        "BOOL": {"names": names, "ndarray": [row[:3] + [True] + row[4:]]},
        "NUMBER_CATEGORY": {"names": names, "ndarray": [[5] + row[1:]]},
        "NESTED": {"names": names, "ndarray": [row[:3] + [[1.0]] + row[4:]]},
        "EMPTY": {"names": names, "ndarray": []},
        "HUGE_INT": {"names": names, "ndarray": [row[:3] + [10**400] + row[4:]]},
        "TENSOR_SHAPE": {"names": names, "tensor": {"shape": [2, len(names)], "values": row}},
    }
    body = {"data": bodies.get(data, data) if isinstance(data, str) else data}
    if data == "NAMES":
        needle = "values; got widths"
    with pytest.raises(Exception) as err:
        component.predict_raw(body)
    assert getattr(err.value, "status_code", None) == 400, repr(err.value)
    message = getattr(err.value, "message", "")  # seldon-core's exception, or the in-process stand-in: both have it
    assert needle in message, message


def test_metrics_are_handed_over_at_most_once_per_interval(component):
    names, rows = sample_rows(3)
    component._flushed_at = 0.0
    first = component.predict_raw({"data": {"names": names, "ndarray": rows}})
    second = component.predict_raw({"data": {"names": names, "ndarray": rows}})
    keys = {m["key"]: m["value"] for m in first["meta"]["metrics"] if "tags" not in m}
    assert keys["driftline_scored_rows_total"] >= 3 and "metrics" not in second["meta"]
    later = component.metrics()  # the generic path / a flush: what accumulated since
    assert {m["key"]: m["value"] for m in later if "tags" not in m}["driftline_scored_rows_total"] == 3


def test_online_store_encoding_matches_feast():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Null, Value

    from seldon.online import decode_value, entity_key

    for key, value in (("user_id", 0), ("user_id", 4999), ("merchant_id", -3), ("merchant_id", 2**40)):
        proto = EntityKey(join_keys=[key], entity_values=[Value(int64_val=value)])
        assert entity_key(key, value) == serialize_entity_key(proto, entity_key_serialization_version=3)
    cases: tuple[tuple[dict[str, Any], Any], ...] = (
        (dict(int64_val=5), 5),
        (dict(int64_val=-1), -1),
        (dict(double_val=1.25), 1.25),
        (dict(string_val="FR"), "FR"),
        (dict(string_val="É"), "É"),
        (dict(int32_val=7), 7),
        (dict(bool_val=True), True),
        (dict(float_val=2.5), 2.5),
        (dict(null_val=Null.NULL), None),
        ({}, None),
    )
    for kw, expected in cases:
        assert decode_value(Value(**kw).SerializeToString()) == expected


def test_on_demand_matches_the_feast_udf():
    from resources.feast_repo.definitions import fraud_request_features
    from seldon.online import on_demand

    rng = random.Random(5)
    n = 500
    cols = {
        "amount": [rng.choice([0.0, 12.5, rng.uniform(0, 900)]) for _ in range(n)],
        "event_epoch_s": [rng.uniform(1.7e9, 1.8e9) for _ in range(n)],
        "country": [rng.choice(["FR", "DE", None]) for _ in range(n)],
        "user_mean_amount_30d": [rng.choice([None, 0.0, rng.uniform(1, 200)]) for _ in range(n)],
        "user_last_txn_epoch_s": [rng.choice([None, rng.uniform(1.7e9, 1.8e9)]) for _ in range(n)],
        "user_last_country": [rng.choice(["FR", "DE", None]) for _ in range(n)],
    }
    ref = fraud_request_features(pd.DataFrame(cols))
    mine = on_demand(**cols)
    for name in ref.columns:
        expected = [None if pd.isna(v) else v for v in ref[name].tolist()]
        assert mine[name] == expected, name


def test_the_former_artifact_dir_parameter_still_loads(tmp_path):
    """Manifests applied before model URIs name the model `artifact_dir`: such a predictor still loads."""
    from seldon.model import FraudModel

    model = FraudModel(artifact_dir=str(build_artifact(tmp_path / "m", "3", seed=1)))
    model.load()
    assert model.model_uri.endswith("/m") and model.health_status_raw()["status"] == "ok"


# ------------------------------------------------------------ Seldon's clients; every input problem a 400
def test_rows_without_names_are_in_the_metadata_order(component):
    """Seldon's clients send no names: rows are positional, in the order `init_metadata` publishes;
    a tensor's categoricals may be vocabulary indices (a protobuf tensor holds numbers only)."""
    names, rows = sample_rows(20, seed=5)
    meta = component.init_metadata()
    assert meta["inputs"][0]["schema"]["names"] == names
    named = component.predict_raw({"data": {"names": names, "ndarray": rows}})
    positional = component.predict_raw({"data": {"ndarray": rows}})
    assert positional["data"] == named["data"]
    assert positional["meta"]["tags"]["model_features"] == {"names": names}  # the log names the rows with it
    assert "model_features" not in named["meta"]["tags"]  # named rows say it themselves
    vocab = json.loads(meta["custom"]["categories"])
    codes = [[float(vocab[n].index(v)) if n in vocab else v for n, v in zip(names, r, strict=True)] for r in rows]
    flat = [v for r in codes for v in r]
    for data in ({"tensor": {"shape": [20, len(names)], "values": flat}}, {"names": [], "ndarray": rows}):
        assert component.predict_raw({"data": data})["data"] == named["data"]
    unknown = list(codes[0])
    unknown[0] = float(len(vocab["category"]))  # the unknown-category index: scored like an unknown string
    as_string = list(rows[0])
    as_string[0] = "never-seen"
    one = component.predict_raw({"data": {"tensor": {"shape": [1, len(names)], "values": unknown}}})
    assert one["data"] == component.predict_raw({"data": {"names": names, "ndarray": [as_string]}})["data"]


def _problems(names, row):
    width = len(names)

    def with_value(col, value):
        out = list(row)
        out[col] = value
        return {"data": {"names": names, "ndarray": [out]}}

    return {
        "missing name": ({"data": {"names": names[:-1], "ndarray": [row[:-1]]}}, "missing"),
        "extra name": ({"data": {"names": [*names, "x"], "ndarray": [[*row, 1]]}}, "unknown ['x']"),
        "duplicate name": ({"data": {"names": [*names[:-1], names[0]], "ndarray": [row]}}, "duplicated"),
        "names not strings": ({"data": {"names": [1] * width, "ndarray": [row]}}, "data.names"),
        "ragged rows": ({"data": {"names": names, "ndarray": [row, row[:-2]]}}, "values; got widths"),
        "positional width": ({"data": {"ndarray": [row[:-1]]}}, "rows without names need"),
        "nested value": (with_value(5, [[1.0, 2.0]]), names[5]),
        "nested row": ({"data": {"names": names, "ndarray": [[[v] for v in row]]}}, "value"),
        "NaN": (with_value(4, float("nan")), f"{names[4]}: NaN"),
        "Infinity": (with_value(4, float("-inf")), f"{names[4]}: NaN"),
        "NaN as a string": (with_value(4, "NaN"), f"{names[4]}: NaN"),
        "beyond float64": (with_value(6, 10**400), f"{names[6]}: numeric value out of range"),
        "beyond float32": (with_value(6, 1e300), f"{names[6]}: numeric value out of range"),
        "int in a category": (with_value(1, 7), f"{names[1]}: categorical values must be strings"),
        "dict in a category": (with_value(2, {"a": 1}), names[2]),
        "bool in a number": (with_value(3, True), f"{names[3]}: non-numeric"),
        "string in a number": (with_value(3, "12"), "dtype=object"),
        "tensor negative shape": ({"data": {"tensor": {"shape": [-1, width], "values": row}}}, "tensor shape"),
        "tensor huge shape": ({"data": {"tensor": {"shape": [10**30, width], "values": row}}}, "tensor shape"),
        "tensor fractional index": (
            {"data": {"tensor": {"shape": [1, width], "values": [0.5, *row[1:]]}}},
            f"{names[0]}: 0.5 is neither",
        ),
        "tensor index too big": (
            {"data": {"tensor": {"shape": [1, width], "values": [99, *row[1:]]}}},
            "vocabulary index",
        ),
        "data not an object": ({"data": [row]}, "request needs 'data'"),
        "no rows key": ({"data": {"names": names}}, "'ndarray' or 'tensor'"),
        "not JSON": (b"{", "malformed JSON"),
        "deep JSON": (("[" * 100_000 + "]" * 100_000).encode(), "malformed JSON"),
    }


def test_every_input_problem_is_a_400_naming_it(component):
    names, rows = sample_rows(1, seed=6)
    for label, (request, needle) in _problems(names, rows[0]).items():
        with pytest.raises(Exception) as err:
            component.predict_raw(request)
        assert getattr(err.value, "status_code", None) == 400, (label, repr(err.value))
        assert getattr(err.value, "reason", "") == "MICROSERVICE_BAD_DATA", label
        message = getattr(err.value, "message", "")
        assert needle in message, (label, message)


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"user_id": 41.5}, "user_id must be an integer, got 41.5"),
        ({"merchant_id": "6"}, "merchant_id must be an integer"),
        ({"user_id": 2**63}, "user_id 9223372036854775808 is beyond the 64-bit integer range"),
        ({"user_id": 1e19}, "beyond the 64-bit integer range"),
        ({"merchant_id": True}, "merchant_id must be an integer"),
        ({"amount": 10**400}, "amount 100000000000000000000"),
        ({"event_ts": 1e300}, "event_ts 1e+300 is not a finite number"),
        ({"event_ts": "yesterday"}, "not an ISO timestamp"),
        ({"country": 5}, "country must be a string"),
    ],
)
def test_raw_transaction_problems_are_400s_before_any_lookup(component, change, needle):
    """Checked before the online lookup (none is configured here: a valid transaction would get
    503 'no online features'): ids as int64, integral floats accepted (a protobuf Struct's 41.0)."""
    tx = {"user_id": 41, "merchant_id": 6, "amount": 12.5, "country": "FR", "event_ts": "2026-10-05T08:00:00"}
    with pytest.raises(Exception) as err:
        component.predict_raw({"jsonData": {**tx, **change}})
    assert getattr(err.value, "status_code", None) == 400, repr(err.value)
    message = getattr(err.value, "message", "")
    assert needle in message, message
    for ok in ({"user_id": 41.0}, {"merchant_id": -(2**63)}):  # ids as protobuf sends them: no 400
        with pytest.raises(Exception) as err:
            component.predict_raw({"jsonData": {**tx, **ok}})
        assert getattr(err.value, "status_code", None) == 503, repr(err.value)


def test_the_log_keeps_the_model_rows_beside_the_request(tmp_path):
    """`model_features`: the completed rows of raw transactions (what the model answered in
    `meta.tags.model_features`), null beside `data` rows, whose `features` are the model's row
    (positional ones named by the model); files written before the column still read."""
    import pyarrow.parquet as pq

    from monitoring.data import read_prediction_window
    from resources import Lake
    from seldon.predlog_file import write_file

    names, rows = sample_rows(3, seed=8)
    raw = {"jsonData": [{"event_id": "e1", "user_id": 1, "amount": rows[0][3]}]}
    completed = {"names": names, "ndarray": [rows[0]]}
    named = json.dumps({"data": {"names": names, "ndarray": rows[:2]}}).encode()
    positional = json.dumps({"data": {"ndarray": rows[1:]}}).encode()
    head = (1.7e9, "s", "fraud", "main", "1")
    items = [
        ("named", *head, named, [0.1, 0.2], 0.001),
        ("positional", *head, positional, [0.2, 0.3], 0.001, {"names": names}),
        ("raw", *head, json.dumps(raw).encode(), [0.4], 0.001, completed),
        ("raw-unknown", *head, json.dumps(raw).encode(), [0.5], 0.001),
    ]
    day = "2023-11-14"
    write_file(str(tmp_path), day, items)
    table = pq.read_table(next((tmp_path / "prediction_log").glob("date=*/*.parquet"))).to_pylist()
    by_id = {(r["request_id"], r["row"]): r for r in table}
    assert json.loads(by_id["named", 1]["features"]) == dict(zip(names, rows[1], strict=True))
    assert json.loads(by_id["positional", 0]["features"]) == dict(zip(names, rows[1], strict=True))
    assert json.loads(by_id["raw", 0]["features"]) == raw["jsonData"][0]  # the request, as sent
    assert json.loads(by_id["raw", 0]["model_features"]) == dict(zip(names, rows[0], strict=True))
    assert [by_id[k]["model_features"] for k in (("named", 0), ("positional", 1), ("raw-unknown", 0))] == [None] * 3
    frame, total = read_prediction_window(Lake(root=str(tmp_path)), [day], names[:3], names[3:])
    assert total == 6 and set(frame.columns) == {*names, "score"}  # every row has the model's inputs but one
    assert frame["user_txn_count_24h"].notna().sum() == 5  # raw-unknown: only the request's fields
