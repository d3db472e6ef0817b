"""Training and the registry, end to end on a small generated range (real Feast repo, real
MLflow store, real serving environment for the artifact parity)."""

import datetime as dt
import json
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from driftline.pipeline import run_training
from resources.mlflow_registry import CHALLENGER, CHAMPION
from tests.training_fixtures import DAYS, SET, data_plane, materialized_meta, run_config

ROOT = Path(__file__).resolve().parents[1]
FAST = {"max_epochs": 20, "patience": 5}


def _config(training=None, evaluation=None):
    return run_config(FAST, training, evaluation)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, make_resources):
    root = tmp_path_factory.mktemp("training")
    resources, assets = data_plane(root, make_resources)
    first = run_training(assets, resources, run_config=_config())
    return {"root": root, "resources": resources, "assets": assets, "first": first}


def test_first_model_trains_registers_and_becomes_champion(pipeline):
    first = pipeline["first"]
    assert first.success
    model = materialized_meta(first, "fraud_model")
    assert model["model_version"] == "1"
    assert model["mlflow_run"].startswith("http") and model["mlflow_run_id"] in model["mlflow_run"]
    assert model["accelerator"] == "CPUAccelerator" and model["precision"] == "32-true"
    assert model["device_name"].startswith("cpu") and model["data_on_device"] == "true"
    assert model["batch_size"] == 512 and model["warmup_steps"] == 0  # the rule keeps small sets at 512
    assert model["epochs"] >= 1 and model["epoch_samples_per_s"] > 0 and model["peak_device_memory_mb"] > 0
    assert model["test_pr_auc"] > 5 * model["test_prevalence"]  # far better than chance
    evaluation = materialized_meta(first, "model_evaluation")
    assert evaluation["decision"] == "pass" and "first model" in evaluation["reason"]
    assert pipeline["resources"]["mlflow_registry"].aliases() == {CHAMPION: "1"}
    checks = first.get_asset_check_evaluations()
    assert [c.passed for c in checks if c.check_name == "challenger_not_worse"] == [True]


def test_run_is_tracked_in_mlflow_with_lineage(pipeline):
    registry = pipeline["resources"]["mlflow_registry"]
    client = registry.client()
    run = client.get_run(materialized_meta(pipeline["first"], "fraud_model")["mlflow_run_id"])
    assert {"test_pr_auc", "test_roc_auc", "test_recall_at_fpr_0.01", "test_ece", "val_pr_auc"} <= set(run.data.metrics)
    assert run.data.tags["dagster_run_id"] == pipeline["first"].run_id
    assert run.data.tags["git_commit"]
    assert json.loads(run.data.tags["training_window"])["train"]
    assert len(json.loads(run.data.tags["training_partitions"])) == SET["window_days"]
    assert "amount" in run.data.params["features"]
    assert run.data.params["effective_accelerator"] == "CPUAccelerator"
    assert run.data.params["effective_device_name"].startswith("cpu")
    assert run.data.params["effective_precision"] == "32-true" and run.data.params["effective_batch_size"] == "512"
    assert {"epochs", "epoch_samples_per_s", "train_samples_per_s", "peak_device_memory_mb"} <= set(run.data.metrics)
    history = client.get_metric_history(run.info.run_id, "val_pr_auc")
    assert len(history) >= 2  # per-epoch metrics


def test_training_set_uses_only_labels_known_at_the_cutoff(pipeline):
    resources = pipeline["resources"]
    lake = resources["lake"]
    frames = pd.concat(
        [
            pd.read_parquet(lake.table_dir("training_set") / f"split={s}" / "data.parquet")
            for s in ("train", "val", "test")
        ]
    )
    labels = pd.concat([lake.read_partition("raw_labels", d).to_pandas() for d in DAYS])
    cutoff = pd.Timestamp(DAYS[-1]) + pd.Timedelta(days=1)
    known = set(labels.loc[labels["label_ts"] < cutoff, "event_id"])
    assert set(frames.loc[frames["label"] == 1, "event_id"]) <= known
    # a chargeback that arrives after the cutoff is not visible: its row trains as unlabelled
    world = resources["event_source"].world()
    late = pd.concat([world.labels(cutoff.date() + dt.timedelta(days=k)) for k in range(30)])
    late_rows = frames[frames["event_id"].isin(set(late["event_id"]))]
    assert len(late_rows) > 0 and (late_rows["label"] == 0).all()
    # time-based split: every train row precedes every val row, which precede every test row
    parts = {
        s: pd.read_parquet(lake.table_dir("training_set") / f"split={s}" / "data.parquet")
        for s in ("train", "val", "test")
    }
    assert parts["train"]["event_ts"].max() < parts["val"]["event_ts"].min()
    assert parts["val"]["event_ts"].max() < parts["test"]["event_ts"].min()


def test_training_set_files_have_the_columns_the_ui_declares(pipeline):
    """training_set's column schema (assets/conventions.py) is what its files hold: the same
    names in order, the same types, except an integer feature some row got no snapshot for
    (null), which the file holds as double."""
    import pyarrow.parquet as pq

    from assets.conventions import arrow_type_name, column_schemas

    declared = column_schemas()["training_set"].columns
    lake = pipeline["resources"]["lake"]
    for split in ("train", "val", "test"):
        schema = pq.read_schema(lake.table_dir("training_set") / f"split={split}" / "data.parquet")
        assert [c.name for c in declared] == schema.names, split
        for column in declared:
            stored = arrow_type_name(schema.field(column.name).type)
            assert stored == column.type or (column.type == "int64" and stored == "double"), (split, column.name)


def test_degraded_challenger_is_blocked_and_champion_untouched(pipeline):
    # a challenger trained for one step at a tiny learning rate: no better than its random start
    result = run_training(
        pipeline["assets"], pipeline["resources"], run_config=_config(training={"max_epochs": 1, "learning_rate": 1e-7})
    )
    registry = pipeline["resources"]["mlflow_registry"]
    evaluation = materialized_meta(result, "model_evaluation")
    assert evaluation["decision"] == "reject", evaluation
    checks = [c for c in result.get_asset_check_evaluations() if c.check_name == "challenger_not_worse"]
    assert len(checks) == 1 and not checks[0].passed
    assert registry.aliases() == {CHAMPION: "1"}
    assert registry.version_tags("2")["driftline.evaluation"] == "rejected"


def test_new_version_becomes_challenger_not_champion(pipeline):
    assets, resources = pipeline["assets"], pipeline["resources"]
    selection = [a for a in assets if a.key.to_user_string() == "fraud_model"]
    result = dg.materialize(
        assets, selection=selection, resources=resources, run_config={"ops": {"fraud_model": {"config": FAST}}}
    )
    version = materialized_meta(result, "fraud_model")["model_version"]
    assert resources["mlflow_registry"].aliases() == {CHAMPION: "1", CHALLENGER: version}


def test_same_seed_same_model_on_cpu(pipeline):
    from assets.training import read_splits
    from ml.dataset import encode_split
    from ml.features import CATEGORICAL, FILL, NUMERIC
    from ml.lightning_model import TrainConfig, evaluate, train
    from ml.schema_fit import fit_schema

    frames = read_splits(pipeline["resources"]["lake"])
    schema = fit_schema(frames["train"], CATEGORICAL, NUMERIC, FILL, "test")
    splits = {k: encode_split(schema, v) for k, v in frames.items()}
    runs = [
        train(schema, splits, TrainConfig(max_epochs=2, seed=11), log=lambda _: None, progress_bar=False)
        for _ in range(2)
    ]
    a, b = (evaluate(r.module, splits["test"], 0.01) for r in runs)
    assert a == b
    for pa, pb in zip(runs[0].module.parameters(), runs[1].module.parameters(), strict=True):
        assert np.array_equal(pa.detach().numpy(), pb.detach().numpy())


def test_accelerator_choice_follows_the_hardware(monkeypatch):
    import torch

    from ml.lightning_model import pick_precision

    assert pick_precision("auto") == ("bf16-mixed" if torch.cuda.is_available() else "32-true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_precision("auto") == "bf16-mixed"
    assert pick_precision("cpu") == "32-true"


PARITY = """
import json, sys
import numpy as np, pyarrow.parquet as pq
sys.path.insert(0, sys.argv[1])
from seldon.artifact import ServingModel
model = ServingModel(sys.argv[2])
table = pq.read_table(sys.argv[3])
cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in model.schema.feature_names
        if c in table.column_names}
np.save(sys.argv[4], model.score_columns(cols))
import lightning  # noqa: F401  (must not be importable here)
"""


def test_serving_artifact_scores_like_the_lightning_model_in_the_serving_env(pipeline, tmp_path):
    from assets.training import read_splits
    from ml.dataset import encode_split
    from ml.lightning_model import score

    registry = pipeline["resources"]["mlflow_registry"]
    artifact = registry.serving_artifact("1", tmp_path / "artifact")
    test = read_splits(pipeline["resources"]["lake"])["test"]
    rows = tmp_path / "rows.parquet"
    test.to_parquet(rows)
    out = tmp_path / "scores.npy"
    serving_python = ROOT / ".venv-serving" / "bin" / "python"
    proc = subprocess.run(
        [str(serving_python), "-c", PARITY, str(ROOT), str(artifact), str(rows), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the script ends by failing to import lightning, on purpose
    )
    assert "No module named 'lightning'" in proc.stderr, proc.stderr[-2000:]  # the env has no Lightning
    served = np.load(out)

    from seldon.artifact import load_schema

    schema = load_schema(artifact)
    cat, num, _ = encode_split(schema, test)
    # the eager reference: the Lightning checkpoint registered with the run
    eager = score(_lightning_from_run(registry, tmp_path), cat, num)
    assert len(served) == len(test) > 1000
    assert float(np.max(np.abs(served - eager))) < 1e-5


def _lightning_from_run(registry, tmp_path):
    from ml.lightning_model import FraudModule

    client = registry.client()
    run_id = client.get_model_version(registry.model_name, "1").run_id
    path = client.download_artifacts(run_id, "checkpoint/model.ckpt", str(tmp_path))
    return FraudModule.load_from_checkpoint(path, map_location="cpu")


def test_unknown_categories_and_missing_fields_do_not_crash(pipeline, tmp_path):
    from seldon.artifact import ServingModel

    model = ServingModel(pipeline["resources"]["mlflow_registry"].serving_artifact("1", tmp_path))
    columns = {
        "amount": [12.5, 9000.0, None],
        "country": ["ZZ", None, "DE"],
        "category": ["spaceships", "grocery", 7],
        "seconds_since_last_txn": [float("nan"), float("inf"), 3.0],
    }  # everything else absent
    scores = model.score_columns(columns)
    assert scores.shape == (3,) and np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
