"""`training_set` (point-in-time, through Feast) and `fraud_model` (Lightning, tracked in MLflow,
registered with the alias `challenger`).

`training_set` writes one frame per feature service, row for row the same transactions, labels
and splits: `fraud_model_v1`'s (daily snapshots, as Feast served them) and `fraud_model_v2`'s
(exact event-time velocity from `transaction_features`, the rest as in v1). `fraud_model` trains
on the service its config names, and the evaluation scores each model on its own service's frame
of the same test rows."""

import datetime as dt
import json
import subprocess
import tempfile
from pathlib import Path

import dagster as dg

from deployment.k8s_config import ASSET_OP_TAGS
from driftline import spec
from resources.feast_store import FeastStore
from resources.lake import Lake
from resources.mlflow_registry import CHALLENGER, MlflowRegistry

TRAINING_TABLE = "training_set"
# The lake table of each feature service's training frame (v1 keeps the original name).
TRAINING_TABLES = {spec.FEATURE_SERVICE: TRAINING_TABLE, spec.FEATURE_SERVICE_V2: f"{TRAINING_TABLE}_v2"}


class TrainingSetConfig(dg.Config):
    window_days: int = 14
    maturity_days: int = 7
    cutoff: str | None = None  # ISO date-time; default: the end of the newest feature partition
    val_fraction: float = 0.15
    test_fraction: float = 0.2


def split_path(lake: Lake, split: str, service: str = spec.FEATURE_SERVICE) -> str:
    """URL of a split's file: `<lake>/training_set/split=<split>/data.parquet` (a path or s3://...);
    `training_set_v2/...` for fraud_model_v2's frame."""
    if service not in TRAINING_TABLES:
        raise ValueError(f"unknown feature service {service!r}; known: {', '.join(TRAINING_TABLES)}")
    return lake.partition_url(TRAINING_TABLES[service], split, key="split")


def _newest_feature_day(lake: Lake) -> dt.date:
    days = lake.list_partitions("transaction_features")
    if not days:
        raise ValueError("transaction_features has no partitions yet: materialize features first")
    return dt.date.fromisoformat(days[-1])


@dg.asset(
    group_name="training",
    deps=["transaction_features", "raw_labels", "online_features"],
    kinds={"feast", "parquet"},
    op_tags=ASSET_OP_TAGS["training_set"],
)
def training_set(
    context: dg.AssetExecutionContext, config: TrainingSetConfig, lake: Lake, feast: FeastStore
) -> dg.MaterializeResult:
    """Transactions of the window with the features Feast would have served at their time and
    labels known at the cutoff; split by time into train / val / test."""
    import pyarrow as pa

    from ml.dataset import (
        assign_splits,
        known_labels,
        load_stream_features,
        load_transactions,
        service_frame,
        window_for,
    )
    from ml.features import LABEL

    cutoff = dt.datetime.fromisoformat(config.cutoff) if config.cutoff else None
    window = window_for(_newest_feature_day(lake), config.window_days, config.maturity_days, cutoff)
    tx = load_transactions(lake, window)
    frame = feast.training_frame(tx)
    frame[LABEL] = frame["event_id"].isin(known_labels(lake, window)).astype("int8")
    frame["split"] = assign_splits(frame["event_ts"], config.val_fraction, config.test_fraction)
    stream = load_stream_features(lake, window)
    stats = {}
    for service in TRAINING_TABLES:
        by_service = service_frame(frame, stream, service)
        for split, part in by_service.groupby("split", sort=False):
            lake.write_partition_file(
                split_path(lake, str(split), service),
                pa.Table.from_pandas(part.drop(columns="split"), preserve_index=False),
            )
    for split, part in frame.groupby("split", sort=False):
        stats[split] = {
            "rows": len(part),
            "fraud_rate": round(float(part[LABEL].mean()), 5),
            "from": str(part["event_ts"].min()),
            "to": str(part["event_ts"].max()),
        }
    context.log.info(f"training_set {window}: {stats}")
    return dg.MaterializeResult(
        metadata={
            "splits": dg.MetadataValue.json(stats),
            "rows": dg.MetadataValue.int(len(frame)),
            "fraud_rate": float(frame[LABEL].mean()),
            "window": f"[{window.start:%Y-%m-%d}, {window.end:%Y-%m-%d})",
            "labels_known_before": window.cutoff.isoformat(),
            "feature_partitions": dg.MetadataValue.json(window.days()),
            "feature_services": dg.MetadataValue.json(dict(TRAINING_TABLES)),
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
        }
    )


class TrainingConfig(dg.Config):
    seed: int = 7
    max_epochs: int = 30
    patience: int = 5
    batch_size: int | None = None  # None: the rule per accelerator and data size (docs/training.md)
    learning_rate: float = 5e-3  # at batch 512; the rule scales it with the batch (with warm-up)
    accelerator: str = "auto"
    # The feature service the model is trained on and will be served from (the one home of this
    # choice). New training uses the fresh features; "fraud_model_v1" trains on daily snapshots.
    feature_service: str = spec.FEATURE_SERVICE_V2


def git_commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
                check=False,  # outside a checkout git fails with no output: "unknown" below
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def read_splits(lake: Lake, service: str = spec.FEATURE_SERVICE):
    """train / val / test frames of `service` (the same rows for every service)."""
    missing = [s for s in ("train", "val", "test") if not lake.exists(split_path(lake, s, service))]
    if missing:
        raise ValueError(f"training_set lacks {service} splits {missing}: materialize training_set first")
    return {s: lake.read_pandas(split_path(lake, s, service)) for s in ("train", "val", "test")}


@dg.asset(
    group_name="training",
    deps=[training_set],
    kinds={"pytorch", "mlflow"},
    tags={"driftline/accelerator": "gpu-if-available"},
    op_tags={**ASSET_OP_TAGS["fraud_model"], "driftline/gpu": "1"},
    pool="gpu",
)
def fraud_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, lake: Lake, mlflow_registry: MlflowRegistry
) -> dg.MaterializeResult:
    """Trains the network, logs the run to MLflow, registers the version as `challenger`."""
    from ml.dataset import encode_split
    from ml.export import export_artifact
    from ml.features import inputs_for
    from ml.lightning_model import TrainConfig, evaluate, train
    from ml.schema_fit import fit_schema

    inputs = inputs_for(config.feature_service)
    frames = read_splits(lake, inputs.service)
    schema = fit_schema(
        frames["train"],
        inputs.categorical,
        inputs.numeric,
        inputs.fill,
        mlflow_registry.model_name,
        feature_service=inputs.service,
    )
    splits = {name: encode_split(schema, f) for name, f in frames.items()}
    cfg = TrainConfig(
        seed=config.seed,
        max_epochs=config.max_epochs,
        patience=config.patience,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        accelerator=config.accelerator,
    )
    mlflow, exp_id = mlflow_registry.setup()
    with mlflow.start_run(experiment_id=exp_id, run_name=f"fraud_model {context.run.run_id[:8]}") as run:
        mlflow.log_params(
            {
                **{k: v for k, v in cfg.__dict__.items() if k != "extra"},
                "n_train": len(frames["train"]),
                "feature_service": inputs.service,
                "features": ",".join(schema.feature_names),
            }
        )
        mlflow.set_tags(
            {
                "dagster_run_id": context.run.run_id,
                "git_commit": git_commit(),
                "feature_service": inputs.service,
                "training_window": json.dumps(_split_ranges(frames)),
                "training_partitions": json.dumps(_partitions(frames)),
            }
        )
        tmp = tempfile.TemporaryDirectory()
        checkpoint = Path(tmp.name) / "model.ckpt"
        result = train(
            schema,
            splits,
            cfg,
            log=context.log.info,
            checkpoint_out=str(checkpoint),
            metric_sink=lambda m, step: mlflow.log_metrics(m, step=step),
        )
        mlflow.log_artifact(str(checkpoint), "checkpoint")  # the Lightning model itself, for reuse
        ran_on = result.metadata()  # accelerator, device, precision, batch, samples/s, epochs, peak memory
        mlflow.log_params({f"effective_{k}": v for k, v in ran_on.items() if isinstance(v, str) or k in _EFFECTIVE})
        mlflow.log_metrics({k: float(v) for k, v in ran_on.items() if k in _SPEED})
        device = "cuda" if result.accelerator == "CUDAAccelerator" else "cpu"  # score where it trained
        test_metrics = evaluate(result.module, splits["test"], cfg.fpr, device=device)
        val_metrics = evaluate(result.module, splits["val"], cfg.fpr, device=device)
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        mlflow.log_metrics({f"val_{k}": v for k, v in val_metrics.items() if k != "pr_auc"})
        mlflow.log_dict({"feature_service": inputs.service, "features": schema.feature_names}, "feature_list.json")
        with tmp:
            artifact = export_artifact(result.module.net, schema, Path(tmp.name) / "serving")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(Path(__file__).parents[1] / "ml" / "pyfunc_model.py"),
                artifacts={"serving": str(artifact)},
                code_paths=[str(Path(__file__).parents[1] / "seldon")],
                pip_requirements=["torch==2.13.0", "numpy"],
            )
        version = mlflow.register_model(
            info.model_uri,
            mlflow_registry.model_name,
            tags={"dagster_run_id": context.run.run_id, "feature_service": inputs.service},
        ).version
        mlflow_registry.set_alias(CHALLENGER, version)
        client = mlflow.MlflowClient()
        client.set_model_version_tag(
            mlflow_registry.model_name, version, "test_pr_auc", f"{test_metrics['pr_auc']:.5f}"
        )
    context.log.info(
        f"registered {mlflow_registry.model_name} v{version} ({inputs.service}) as {CHALLENGER}: {test_metrics}"
    )
    return dg.MaterializeResult(
        metadata={
            "mlflow_run": dg.MetadataValue.url(mlflow_registry.run_url(exp_id, run.info.run_id)),
            "mlflow_run_id": run.info.run_id,
            "model_version": dg.MetadataValue.text(str(version)),
            "feature_service": inputs.service,
            "test_pr_auc": test_metrics["pr_auc"],
            "test_roc_auc": test_metrics["roc_auc"],
            "test_recall_at_1pct_fpr": test_metrics["recall_at_fpr_0.01"],
            "test_prevalence": test_metrics["prevalence"],
            **ran_on,
        }
    )


# What `TrainResult.metadata()` goes to MLflow as: the run's settings as params (strings included),
# its speed and footprint as metrics.
_EFFECTIVE = {"world_size", "batch_size", "learning_rate", "warmup_steps"}
_SPEED = {"epochs", "train_samples_per_s", "epoch_samples_per_s", "peak_device_memory_mb", "fit_seconds"}


def _partitions(frames) -> list[str]:
    """The transaction_features partitions (days) the training set was built from."""
    days = set()
    for f in frames.values():
        days |= set(f["event_ts"].dt.strftime("%Y-%m-%d").unique())
    return sorted(days)


def _split_ranges(frames) -> dict:
    return {k: [str(f["event_ts"].min()), str(f["event_ts"].max())] for k, f in frames.items()}
