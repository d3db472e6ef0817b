"""`model_evaluation`: challenger against champion and a simple baseline on the same, later-in-
time test split. Its blocking check keeps a worse model away from users.

Each model is scored on its own feature service's frame of the test split (a fraud_model_v2
challenger against a fraud_model_v1 champion): the same rows, in the same order, with the
features each would be served."""

import math
import tempfile

import dagster as dg

from deployment.k8s_config import ASSET_OP_TAGS
from resources.lake import Lake
from resources.mlflow_registry import CHALLENGER, CHAMPION, MlflowRegistry

from .training import fraud_model, read_splits


class EvaluationConfig(dg.Config):
    max_pr_auc_drop: float = 0.02  # the challenger may trail the champion by at most this much
    min_pr_auc: float = 0.05  # absolute floor for the very first model (prevalence is ~0.005)
    fpr: float = 0.01
    bootstrap_rounds: int = 300


def paired_bootstrap_se(y, a, b, rounds: int, seed: int = 0) -> float:
    """Standard error of PR-AUC(a) - PR-AUC(b) over resampled test rows. With ~100 positives it
    is ~0.03: differences below it are noise, not a better model."""
    import numpy as np

    from ml.metrics import pr_auc

    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].sum():
            diffs.append(pr_auc(y[idx], a[idx]) - pr_auc(y[idx], b[idx]))
    return float(np.std(diffs)) if diffs else 0.0


def decide(
    challenger: float,
    champion: float | None,
    baseline: float,
    cfg: EvaluationConfig,
    baseline_se: float = 0.0,
    champion_se: float = 0.0,
) -> tuple[bool, str]:
    """Pass when the challenger is not worse than the baseline beyond sampling noise (one paired
    bootstrap standard error), and not worse than the champion by more than `max_pr_auc_drop`
    plus that noise (or above the floor, for the first model). Closer calls are the canary's."""
    if math.isnan(challenger) or math.isnan(baseline):
        return False, "the test split has no labelled fraud yet: the challenger cannot be judged"
    if champion is not None and math.isnan(champion):
        return False, "the champion cannot be scored on the test split"
    if challenger < baseline - baseline_se:
        return False, (
            f"PR-AUC {challenger:.4f} is below the logistic-regression baseline {baseline:.4f} "
            f"by more than its standard error {baseline_se:.4f}"
        )
    if champion is None:
        if challenger < cfg.min_pr_auc:
            return False, f"first model: PR-AUC {challenger:.4f} is below the floor {cfg.min_pr_auc}"
        return True, (
            f"first model: PR-AUC {challenger:.4f} passes the floor {cfg.min_pr_auc}; baseline "
            f"{baseline:.4f} (difference SE {baseline_se:.4f})"
        )
    if challenger < champion - cfg.max_pr_auc_drop - champion_se:
        return False, (
            f"PR-AUC {challenger:.4f} trails the champion's {champion:.4f} by more than the margin "
            f"{cfg.max_pr_auc_drop} plus the difference's standard error {champion_se:.4f}"
        )
    return True, (
        f"PR-AUC {challenger:.4f} vs champion {champion:.4f} (margin {cfg.max_pr_auc_drop} + SE "
        f"{champion_se:.4f}); baseline {baseline:.4f} (difference SE {baseline_se:.4f})"
    )


def baseline_scores(train, test, schema):
    """Logistic regression on the same encoded features (one-hot categoricals)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ml.dataset import encode_split

    def design(frame):
        cat, num, y = encode_split(schema, frame)
        onehot = [np.eye(f.cardinality, dtype=np.float32)[cat[:, j]] for j, f in enumerate(schema.categorical)]
        return np.hstack([num, *onehot]), y

    x_train, y_train = design(train)
    x_test, _ = design(test)
    model = LogisticRegression(max_iter=500, class_weight="balanced", random_state=0)
    model.fit(x_train, y_train)
    return model.predict_proba(x_test)[:, 1]


def version_scores(registry: MlflowRegistry, version: str, split: str, read_split):
    """(scores, schema) of a registered version on `split` of ITS feature service's frame.
    `read_split(service, split)` returns that frame."""
    from seldon.artifact import ServingModel

    with tempfile.TemporaryDirectory() as tmp:
        model = ServingModel(registry.serving_artifact(version, tmp))
        frame = read_split(model.feature_service, split)
        columns = {c: frame[c].to_numpy() for c in model.schema.feature_names if c in frame.columns}
        return model.score_columns(columns), model.schema


@dg.asset(
    group_name="training",
    deps=[fraud_model],
    kinds={"mlflow"},
    op_tags=ASSET_OP_TAGS["model_evaluation"],
    check_specs=[
        dg.AssetCheckSpec(
            "challenger_not_worse",
            asset="model_evaluation",
            blocking=True,
            description="Challenger within the margin of the champion and "
            "better than the logistic-regression baseline.",
        )
    ],
)
def model_evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, lake: Lake, mlflow_registry: MlflowRegistry
) -> dg.MaterializeResult:
    """Scores challenger, champion and a baseline on the test split; promotes the first model."""
    from ml.features import LABEL
    from ml.metrics import summary

    challenger = mlflow_registry.version_for_alias(CHALLENGER)
    if challenger is None:
        raise ValueError(f"no version of {mlflow_registry.model_name} has the alias {CHALLENGER!r}: train first")
    champion = mlflow_registry.version_for_alias(CHAMPION)
    frames: dict[str, dict] = {}

    def read_split(service: str, split: str):
        if service not in frames:
            frames[service] = read_splits(lake, service)
        return frames[service][split]

    chal_scores, schema = version_scores(mlflow_registry, challenger.version, "test", read_split)
    test = read_split(schema.feature_service, "test")
    y = test[LABEL].to_numpy()
    services = {"challenger": schema.feature_service}
    rows = {"challenger": summary(y, chal_scores, config.fpr)}
    champion_se = 0.0
    if champion is not None and champion.version != challenger.version:
        champ_scores, champ_schema = version_scores(mlflow_registry, champion.version, "test", read_split)
        _same_rows(test, read_split(champ_schema.feature_service, "test"))
        services["champion"] = champ_schema.feature_service
        rows["champion"] = summary(y, champ_scores, config.fpr)
        champion_se = paired_bootstrap_se(y, chal_scores, champ_scores, config.bootstrap_rounds)
    base_scores = baseline_scores(read_split(schema.feature_service, "train"), test, schema)
    rows["baseline"] = summary(y, base_scores, config.fpr)
    baseline_se = paired_bootstrap_se(y, chal_scores, base_scores, config.bootstrap_rounds)
    champ_pr = rows["champion"]["pr_auc"] if "champion" in rows else None
    if champion is not None and champion.version == challenger.version:
        champ_pr = rows["challenger"]["pr_auc"]
    passed, reason = decide(
        rows["challenger"]["pr_auc"], champ_pr, rows["baseline"]["pr_auc"], config, baseline_se, champion_se
    )

    mlflow_registry.mark_evaluated(challenger.version, passed, reason)
    if passed and champion is None:
        mlflow_registry.make_champion(challenger.version)
        action = f"v{challenger.version} became the first champion"
    elif passed:
        assert champion is not None  # the branch above took the no-champion case
        action = f"v{challenger.version} goes on as canary against champion v{champion.version}"
    else:
        mlflow_registry.drop_challenger()
        action = f"v{challenger.version} rejected; champion {f'v{champion.version}' if champion else 'none'} unchanged"
    context.log.info(f"{action}: {reason}")
    table = _markdown(rows, services)
    return dg.MaterializeResult(
        metadata={
            "decision": "pass" if passed else "reject",
            "reason": reason,
            "action": action,
            "challenger_version": str(challenger.version),
            "champion_version": str(champion.version) if champion else "none",
            **{f"{who}_feature_service": service for who, service in services.items()},
            "metrics": dg.MetadataValue.md(table),
            "baseline_difference_se": baseline_se,
            "champion_difference_se": champion_se,
            **{f"{who}_pr_auc": m["pr_auc"] for who, m in rows.items()},
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="challenger_not_worse",
                passed=passed,
                description=reason,
                metadata={"challenger_version": str(challenger.version)},
            )
        ],
    )


def _same_rows(a, b) -> None:
    """Two services' test frames must hold the same rows in the same order (paired comparison)."""
    if len(a) != len(b) or not (a["event_id"].to_numpy() == b["event_id"].to_numpy()).all():
        raise ValueError("the feature services' test splits differ: re-materialize training_set")


def _markdown(rows: dict[str, dict[str, float]], services: dict[str, str] | None = None) -> str:
    """Metrics by model; a model's column names its feature service when known."""
    names = list(next(iter(rows.values())))
    services = services or {}
    heads = [f"{w} ({services[w]})" if w in services else w for w in rows]
    lines = ["| metric | " + " | ".join(heads) + " |", "|---" * (len(rows) + 1) + "|"]
    for m in names:
        lines.append(f"| {m} | " + " | ".join(f"{rows[w][m]:.4f}" for w in rows) + " |")
    return "\n".join(lines)
