"""Monitoring: `drift_report` (the feature rows the model scored and its scores, from the
prediction log, against the champion's training features and its scores of them, Evidently),
its WARN asset check, and `model_performance` (the champion's PR-AUC once delayed labels arrive).

The prediction log is written by the ingress, outside Dagster: `prediction_log` is an external
asset so the lineage shows where the monitored data comes from.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource types of
# the decorated functions from their annotations at definition time.
import dataclasses
import datetime as dt
import math
import tempfile
import warnings
from pathlib import Path

import dagster as dg
import pyarrow as pa

from driftline import settings
from driftline.report_links import served_report_url
from driftline.spec import FEATURE_SERVICE
from monitoring.data import (
    LOG_TABLE,
    champion_model,
    model_features,
    performance_rows,
    read_prediction_window,
    reference_frame,
    report_dir,
    report_rows,
    with_scores,
)
from monitoring.drift import DriftConfig
from resources.lake import Lake
from resources.mlflow_registry import CHAMPION, MlflowRegistry
from resources.warehouse import Warehouse

from .partitions import daily_partitions, parse_day
from .training import TRAINING_TABLES

DRIFT_TABLE, PERFORMANCE_TABLE = "drift_report", "model_performance"
# The columns of the two tables these assets write (monitoring/data.py builds their rows): the
# files are written with these schemas, and the UI's column schemas are read from them.
DRIFT_REPORT_SCHEMA = pa.schema(
    [
        ("feature", pa.string()),
        ("kind", pa.string()),
        ("method", pa.string()),
        ("score", pa.float64()),
        ("threshold", pa.float64()),
        ("feature_drifted", pa.bool_()),
        ("window_drifted", pa.bool_()),
        ("share_drifted", pa.float64()),
        ("reference_model_version", pa.string()),
        ("current_rows", pa.int64()),
        ("sampled_current_rows", pa.int64()),
        ("engine", pa.string()),
    ]
)
PERFORMANCE_SCHEMA = pa.schema(
    [
        ("prediction_date", pa.string()),
        ("model_version", pa.string()),
        ("rows", pa.int64()),
        ("positives", pa.int64()),
        ("flagged", pa.int64()),
        ("pr_auc", pa.float64()),
        ("recall", pa.float64()),
        ("precision", pa.float64()),
        ("evaluation_date", pa.string()),
    ]
)
# Labels arrive 1-60 days after the transaction (median 9): a prediction day is judged once its
# labels are this old (~77 % of chargebacks known), pooled over a window for enough positives.
# DRIFTLINE_LABEL_MATURITY_DAYS / _PERFORMANCE_WINDOW_DAYS let a short demo judge sooner; they
# shape a partition mapping, so they are read when the code location loads.
_SETTINGS = settings.load()
LABEL_MATURITY_DAYS = _SETTINGS.label_maturity_days
PERFORMANCE_WINDOW_DAYS = _SETTINGS.performance_window_days
_DRIFT = DriftConfig()  # the defaults of the drift decision: monitoring/drift.py

prediction_log = dg.AssetSpec(
    LOG_TABLE,
    group_name="monitoring",
    partitions_def=daily_partitions,
    deps=["seldon_deployment"],
    kinds={"parquet", "seldon"},
    description="Every answered prediction (the request, the feature row the model scored, score, model "
    "version), written by the ingress (in Kubernetes, by the prediction-log sink).",
)


class DriftReportConfig(dg.Config):
    """Run config of `drift_report`: the engine, the log window, and the DriftConfig fields a
    run may change (their defaults are DriftConfig's; `drift_config()` builds the dataclass)."""

    engine: str = "evidently"  # evidently (HTML report) | numpy (same statistics, no HTML)
    num_threshold: float = _DRIFT.num_threshold
    cat_threshold: float = _DRIFT.cat_threshold
    drift_share: float = _DRIFT.drift_share
    reference_cap: int = _DRIFT.reference_cap
    current_cap: int = _DRIFT.current_cap
    min_rows: int = _DRIFT.min_rows
    # day_of_week is constant within a daily window: it always differs from a multi-day reference.
    exclude: list[str] = ["day_of_week"]  # noqa: RUF012  # a pydantic field (dg.Config): each instance gets a copy
    # Log date folders to read instead of the partition's own (the log is dated by request time: a
    # demo replaying simulated days through a live ingress reads today's folder for each of them).
    log_days: list[str] = []  # noqa: RUF012  # a pydantic field (dg.Config): each instance gets a copy

    def drift_config(self) -> DriftConfig:
        """DriftConfig with this run's values for the fields it shares with this config."""
        shared = {f.name for f in dataclasses.fields(DriftConfig)} & set(type(self).model_fields)
        return dataclasses.replace(_DRIFT, **{name: getattr(self, name) for name in shared})


@dg.asset(
    partitions_def=daily_partitions,
    group_name="monitoring",
    deps=[prediction_log, "model_evaluation"],
    kinds={"evidently", "parquet"},
    automation_condition=dg.AutomationCondition.on_cron("30 0 * * *").ignore(
        dg.AssetSelection.assets(LOG_TABLE, "model_evaluation")
    ),
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftReportConfig,
    lake: Lake,
    mlflow_registry: MlflowRegistry,
    warehouse: Warehouse,
) -> dg.MaterializeResult:
    """Drift of the day's scored feature rows and scores against the champion's training features
    and its scores of them (Evidently)."""
    from monitoring.drift import drift_decision

    day = context.partition_key
    champion = mlflow_registry.version_for_alias(CHAMPION)
    if champion is None:
        raise ValueError(f"no {CHAMPION} version of {mlflow_registry.model_name}: nothing to compare against")
    version = str(champion.version)
    cfg = config.drift_config()
    with tempfile.TemporaryDirectory() as tmp:
        model = champion_model(mlflow_registry, version, tmp)
    service = getattr(model, "feature_service", None) or FEATURE_SERVICE
    table = TRAINING_TABLES.get(service, TRAINING_TABLES[FEATURE_SERVICE])  # the champion's training frame
    reference, source = reference_frame(lake, mlflow_registry, version, config.reference_cap, table=table)
    reference = with_scores(lake, version, reference, model)
    cats, nums = model_features(model)
    features = ([c for c in cats if c not in config.exclude], [n for n in nums if n not in config.exclude])
    current, total = read_prediction_window(lake, config.log_days or [day], *features)
    meta = {
        "reference_model_version": version,
        "reference_source": source,
        "reference_rows": len(reference),
        "log_days": dg.MetadataValue.json(config.log_days or [day]),
        "current_rows": dg.MetadataValue.int(total),
        "dagster/row_count": dg.MetadataValue.int(total),
    }
    if total == 0:
        context.log.warning(f"no predictions logged on {day}")
        return dg.MaterializeResult(
            metadata={**meta, "drifted": False, "share_drifted": 0.0, "reason": "no predictions in the window"}
        )
    # The log keeps the row the model scored, so every model input is in the window; a feature no
    # row carried (a log written before it kept the model's rows) cannot be judged: the drift share
    # is taken over the columns present, and the rest are named. The champion's score distribution
    # is judged with them when the reference could be scored.
    present = [c for c in current.columns if current[c].notna().any()]
    unmonitored = [f for group in features for f in group if f not in present]
    monitored_score = "score" in present and "score" in reference
    features = (
        [c for c in features[0] if c in present],
        [n for n in features[1] if n in present] + (["score"] if monitored_score else []),
    )
    meta["unmonitored_features"] = dg.MetadataValue.json(unmonitored)
    meta["monitored_features"] = dg.MetadataValue.json([f for group in features for f in group])
    meta["score_monitored"] = monitored_score
    html: Path | str | None = None
    report_url = ""  # set with html
    with tempfile.TemporaryDirectory() as tmp:
        if config.engine == "evidently":
            if lake.is_remote:  # Evidently writes a local file: uploaded beside the lake afterwards
                html, report_url = Path(tmp) / f"{day}.html", f"{report_dir(lake)}/{day}.html"
            else:
                html = Path(report_dir(lake)) / f"{day}.html"
                # served over http by `make dev` (a file:// link does not open from the UI)
                report_url = served_report_url(html, Path(report_dir(lake)).parent)
        result = drift_decision(reference, current, features, cfg, engine=config.engine, html_path=html)
        if html is not None and lake.is_remote:
            html = lake.put_file(html, report_url)
    rows = report_rows(day, result, version, total)
    lake.write_partition(DRIFT_TABLE, day, pa.Table.from_pylist(rows, schema=DRIFT_REPORT_SCHEMA))
    warehouse.refresh_views(lake)
    context.log.info(f"drift {day} vs champion v{version}: {result.reason}")
    meta |= {
        "drifted": result.drifted,
        "share_drifted": float(result.share),
        "reason": result.reason,
        "drifted_features": dg.MetadataValue.json(result.drifted_features),
        "scores": dg.MetadataValue.json({k: round(v, 5) for k, v in result.scores.items()}),
        **{f"score/{f.name}": float(round(f.score, 5)) for f in result.features},
        "sampled_current_rows": result.sampled_current,
        "engine": result.engine,
        "refined_on_all_rows": dg.MetadataValue.json(result.refined),
        "thresholds": dg.MetadataValue.json(
            {
                "numeric": f"{cfg.num_method} >= {cfg.num_threshold}",
                "categorical": f"{cfg.cat_method} >= {cfg.cat_threshold}",
                "drift_share": cfg.drift_share,
            }
        ),
    }
    if html is not None:
        meta |= {"report": dg.MetadataValue.path(str(html)), "report_url": dg.MetadataValue.url(report_url)}
    return dg.MaterializeResult(metadata=meta)


# Dagster 1.13 calls a partitioned check "preview" and warns at every import of the definitions.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(
        asset=drift_report,
        name="served_inputs_within_drift_limits",
        partitions_def=daily_partitions,
        description="WARN when the day's drift report found the window drifted (drift_share of the monitored "
        "features and the score beyond their thresholds). Informational: the drift sensor decides on retraining.",
    )
    def drift_check(context: dg.AssetCheckExecutionContext, lake: Lake) -> dg.AssetCheckResult:
        """The day's `drift_report` rows in the lake: passed unless the window drifted (WARN)."""
        day = context.partition_key
        url = lake.partition_url(DRIFT_TABLE, day)
        if not lake.exists(url):
            return dg.AssetCheckResult(
                passed=True, severity=dg.AssetCheckSeverity.WARN, metadata={"reason": f"no drift report rows for {day}"}
            )
        rows = lake.read_partition(DRIFT_TABLE, day).to_pylist()
        drifted = [r["feature"] for r in rows if r["feature_drifted"]]
        window = bool(rows) and bool(rows[0]["window_drifted"])
        share = float(rows[0]["share_drifted"]) if rows else 0.0
        return dg.AssetCheckResult(
            passed=not window,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{share:.0%} of {len(rows)} monitored columns drifted"
            + (f" ({', '.join(drifted)})" if drifted else ""),
            metadata={
                "share_drifted": share,
                "drifted_features": dg.MetadataValue.json(drifted),
                "monitored": dg.MetadataValue.int(len(rows)),
                "reference_model_version": str(rows[0]["reference_model_version"]) if rows else "",
            },
        )


class PerformanceConfig(dg.Config):
    threshold: float = 0.5  # the serving threshold: score >= threshold is flagged


_log_window = dg.TimeWindowPartitionMapping(
    start_offset=-(LABEL_MATURITY_DAYS + PERFORMANCE_WINDOW_DAYS - 1), end_offset=-LABEL_MATURITY_DAYS
)


@dg.asset(
    partitions_def=daily_partitions,
    group_name="monitoring",
    kinds={"duckdb", "parquet"},
    deps=[dg.AssetDep(prediction_log, partition_mapping=_log_window), "raw_labels"],
    automation_condition=dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets(LOG_TABLE)),
)
def model_performance(
    context: dg.AssetExecutionContext, config: PerformanceConfig, lake: Lake, mlflow_registry: MlflowRegistry
) -> dg.MaterializeResult:
    """PR-AUC, recall, precision per model version of the predictions made LABEL_MATURITY_DAYS
    ago (a PERFORMANCE_WINDOW_DAYS window), with the chargebacks known at the end of this day."""
    day = parse_day(context.partition_key)
    first = day - dt.timedelta(days=LABEL_MATURITY_DAYS + PERFORMANCE_WINDOW_DAYS - 1)
    pred_days = [(first + dt.timedelta(days=k)).isoformat() for k in range(PERFORMANCE_WINDOW_DAYS)]
    label_days = [(first + dt.timedelta(days=k)).isoformat() for k in range((day - first).days + 1)]
    per_day, pooled = performance_rows(lake, pred_days, label_days, config.threshold)
    champion = mlflow_registry.version_for_alias(CHAMPION)
    champ = str(champion.version) if champion else None
    for row in per_day:
        row["evaluation_date"] = context.partition_key
    if per_day:
        lake.write_partition(
            PERFORMANCE_TABLE, context.partition_key, pa.Table.from_pylist(per_day, schema=PERFORMANCE_SCHEMA)
        )
    meta = {
        "prediction_days": f"{pred_days[0]}..{pred_days[-1]}",
        "labels_known_through": day.isoformat(),
        "champion_version": champ or "none",
        "versions": dg.MetadataValue.json(_no_nan(pooled)),
        "dagster/row_count": dg.MetadataValue.int(sum(r["rows"] for r in per_day)),
    }
    for version, m in pooled.items():
        meta |= {
            f"v{version}/{k}": float(v)
            for k, v in m.items()
            if k in ("pr_auc", "recall", "precision") and not math.isnan(v)
        }
    if champ in pooled:
        meta |= {f"champion_{k}": v for k, v in pooled[champ].items() if not math.isnan(v)}
    context.log.info(f"performance of {meta['prediction_days']} (labels through {day}): {pooled}")
    return dg.MaterializeResult(metadata=meta)


def _no_nan(pooled: dict) -> dict:
    return {v: {k: (None if math.isnan(x) else x) for k, x in m.items()} for v, m in pooled.items()}
