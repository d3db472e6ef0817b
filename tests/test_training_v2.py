"""Training on fraud_model_v2 (exact event-time velocity): its training frame is the v1 frame's
rows with the stream features taken from `transaction_features`; the model artifact records its
feature service; a v2 challenger goes through the evaluation gate against a v1 champion, each
scored on its own service's frame of the same test rows. v1 stays trainable.

The pipeline fixture runs the real assets on a small generated range (real Feast repo, real
MLflow store), as tests/test_training.py does."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from driftline import spec
from driftline.pipeline import run_training
from ml.dataset import REQUEST_COLUMNS, service_frame
from ml.features import LABEL, inputs_for
from resources.mlflow_registry import CHALLENGER, CHAMPION
from seldon.artifact import SCHEMA_FILE, FeatureSchema, NumericFeature, load_schema
from tests.training_fixtures import data_plane, materialized_meta, run_config

FAST = {"max_epochs": 12, "patience": 4}


def _config(training: dict | None = None) -> dict:
    return run_config(FAST, training)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, make_resources):
    """Data plane, then a v1 model (champion) and a v2 model (default config: challenger)."""
    root = tmp_path_factory.mktemp("training_v2")
    resources, assets = data_plane(root, make_resources, start_runtime=False)
    v1 = run_training(assets, resources, run_config=_config({"feature_service": spec.FEATURE_SERVICE}))
    v2 = run_training(assets, resources, run_config=_config())  # the default: fraud_model_v2
    return {"resources": resources, "v1": v1, "v2": v2}


def _frames(lake, service: str) -> pd.DataFrame:
    from assets.training import read_splits

    return pd.concat(read_splits(lake, service).values(), ignore_index=True)


@pytest.mark.slow
def test_v2_frame_has_the_service_columns_and_transaction_features_values(pipeline):
    lake = pipeline["resources"]["lake"]
    v1, v2 = _frames(lake, spec.FEATURE_SERVICE), _frames(lake, spec.FEATURE_SERVICE_V2)
    assert list(v2.columns) == [*REQUEST_COLUMNS, *spec.SERVED_FEATURES_V2, LABEL]
    # the same rows, in the same order, with the same labels and request fields as v1's frame
    assert len(v2) == len(v1) > 10_000
    assert (v2["event_id"].to_numpy() == v1["event_id"].to_numpy()).all()
    assert (v2[LABEL].to_numpy() == v1[LABEL].to_numpy()).all() and v2[LABEL].sum() > 50
    # stream features: transaction_features' values for the same event (the offline definition)
    days = sorted(v2["event_ts"].dt.strftime("%Y-%m-%d").unique())
    exact = pd.concat([lake.read_partition("transaction_features", d).to_pandas() for d in days])
    exact = exact.set_index("event_id").loc[v2["event_id"]]
    for c in spec.STREAM_FEATURES:
        got, want = v2[c].to_numpy(dtype=float), exact[c].to_numpy(dtype=float)
        assert np.array_equal(got, want, equal_nan=True), c
    # a burst shows in the exact 1 h count, which the daily snapshot cannot see
    assert v2[spec.user_txn_count(spec.USER_SHORT)].max() >= 5
    assert not np.array_equal(
        v2[spec.COUNTRY_CHANGED].to_numpy(dtype=float), v1[spec.COUNTRY_CHANGED].to_numpy(dtype=float)
    )
    # the rest as Feast served it for v1: snapshot amount ratio, merchant state, calendar
    for c in (spec.AMOUNT_TO_USER_MEAN, *spec.MERCHANT_STATE_FEATURES, spec.HOUR_OF_DAY, spec.DAY_OF_WEEK):
        assert np.array_equal(v2[c].to_numpy(dtype=float), v1[c].to_numpy(dtype=float), equal_nan=True), c


@pytest.mark.slow
def test_v1_still_trains_and_records_its_service(pipeline, tmp_path):
    result, registry = pipeline["v1"], pipeline["resources"]["mlflow_registry"]
    assert result.success
    model = materialized_meta(result, "fraud_model")
    assert model["feature_service"] == spec.FEATURE_SERVICE and model["model_version"] == "1"
    schema = load_schema(registry.serving_artifact("1", tmp_path))
    assert schema.feature_service == spec.FEATURE_SERVICE
    v1 = inputs_for(spec.FEATURE_SERVICE)
    assert schema.feature_names == [*v1.categorical, *v1.numeric]
    assert materialized_meta(result, "model_evaluation")["decision"] == "pass"


@pytest.mark.slow
def test_v2_model_records_its_service_and_meets_the_gate_against_the_v1_champion(pipeline, tmp_path):
    from seldon.artifact import ServingModel

    result, registry = pipeline["v2"], pipeline["resources"]["mlflow_registry"]
    assert result.success
    model = materialized_meta(result, "fraud_model")
    assert model["feature_service"] == spec.FEATURE_SERVICE_V2 and model["model_version"] == "2"
    assert model["test_pr_auc"] > 5 * model["test_prevalence"]
    served = ServingModel(registry.serving_artifact("2", tmp_path))
    assert served.feature_service == spec.FEATURE_SERVICE_V2
    # the model's column order: request fields, then the service's features in service order
    assert served.schema.feature_names == ["category", "country", "channel", "amount", *spec.SERVED_FEATURES_V2]
    assert registry.version_tags("2")["feature_service"] == spec.FEATURE_SERVICE_V2
    evaluation = materialized_meta(result, "model_evaluation")
    assert evaluation["challenger_feature_service"] == spec.FEATURE_SERVICE_V2
    assert evaluation["champion_feature_service"] == spec.FEATURE_SERVICE
    assert evaluation["challenger_version"] == "2" and evaluation["champion_version"] == "1"
    assert f"challenger ({spec.FEATURE_SERVICE_V2})" in evaluation["metrics"]
    assert f"champion ({spec.FEATURE_SERVICE})" in evaluation["metrics"]
    checks = [c for c in result.get_asset_check_evaluations() if c.check_name == "challenger_not_worse"]
    assert len(checks) == 1 and checks[0].passed == (evaluation["decision"] == "pass")
    if evaluation["decision"] == "pass":  # goes on as the canary's challenger
        assert registry.aliases() == {CHAMPION: "1", CHALLENGER: "2"}
    else:
        assert registry.aliases() == {CHAMPION: "1"}
    # the v2 model scores its own frame better than chance on the test rows
    from assets.training import read_splits
    from ml.metrics import pr_auc

    test = read_splits(pipeline["resources"]["lake"], spec.FEATURE_SERVICE_V2)["test"]
    scores = served.score_columns({c: test[c].to_numpy() for c in served.schema.feature_names})
    assert pr_auc(test[LABEL].to_numpy(), scores) > 5 * test[LABEL].mean()


# ------------------------------------------------------------------------------- fast: no pipeline
def _schema(**kw) -> FeatureSchema:
    num = [NumericFeature(name="amount", transform="log1p", mean=1.0, std=2.0, fill=0.0)]
    return FeatureSchema(model_name="m", model_version="1", categorical=[], numeric=num, **kw)


def test_artifact_feature_service_round_trips_and_old_artifacts_read_as_v1(tmp_path):
    from seldon.artifact import save_schema

    v2 = _schema(feature_service=spec.FEATURE_SERVICE_V2)
    assert FeatureSchema.from_json(v2.to_json()).feature_service == spec.FEATURE_SERVICE_V2
    save_schema(tmp_path, v2)
    assert load_schema(tmp_path).feature_service == spec.FEATURE_SERVICE_V2
    # an artifact written before the field existed: trained on the daily snapshots
    old = json.loads(_schema().to_json())
    del old["feature_service"]
    (tmp_path / SCHEMA_FILE).write_text(json.dumps(old))
    assert load_schema(tmp_path).feature_service == spec.FEATURE_SERVICE == "fraud_model_v1"


def test_fit_schema_records_the_service_in_its_column_order():
    from ml.schema_fit import fit_schema

    inputs = inputs_for(spec.FEATURE_SERVICE_V2)
    rng = np.random.default_rng(0)
    train = pd.DataFrame({c: rng.random(50) for c in inputs.numeric})
    for c in inputs.categorical:
        train[c] = "x"
    schema = fit_schema(train, inputs.categorical, inputs.numeric, inputs.fill, "m", feature_service=inputs.service)
    assert schema.feature_service == spec.FEATURE_SERVICE_V2
    assert [n.name for n in schema.numeric] == ["amount", *spec.SERVED_FEATURES_V2]


def test_unknown_feature_service_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown feature service 'fraud_model_v9'.*fraud_model_v1"):
        inputs_for("fraud_model_v9")


def _served(ids: list[str]) -> pd.DataFrame:
    """A v1-style frame: request columns, the v1 features, label and split."""
    n = len(ids)
    frame = pd.DataFrame({c: [None] * n for c in REQUEST_COLUMNS})
    frame["event_id"] = ids
    for k, c in enumerate(spec.SERVED_FEATURES):
        frame[c] = np.arange(n, dtype=float) + 100 * k
    frame[LABEL] = np.int8(0)
    frame["split"] = "train"
    return frame


def test_service_frame_takes_stream_features_by_event_id_and_keeps_row_order():
    served = _served(["c", "a", "b"])
    stream = pd.DataFrame({"event_id": ["a", "b", "c"]})
    for k, c in enumerate(spec.STREAM_FEATURES):
        stream[c] = [1000 + k, 2000 + k, 3000 + k]
    out = service_frame(served, stream, spec.FEATURE_SERVICE_V2)
    assert list(out.columns) == [*REQUEST_COLUMNS, *spec.SERVED_FEATURES_V2, LABEL, "split"]
    assert list(out["event_id"]) == ["c", "a", "b"]
    first = spec.STREAM_FEATURES[0]
    assert list(out[first]) == [3000, 1000, 2000]
    assert list(out[spec.MERCHANT_CB_RATE]) == list(served[spec.MERCHANT_CB_RATE])
    assert service_frame(served, stream, spec.FEATURE_SERVICE) is served
    with pytest.raises(ValueError, match="no transaction_features row"):
        service_frame(served, stream[stream["event_id"] != "a"], spec.FEATURE_SERVICE_V2)
    with pytest.raises(ValueError, match="duplicate event_ids"):
        service_frame(served, pd.concat([stream, stream.head(1)]), spec.FEATURE_SERVICE_V2)
