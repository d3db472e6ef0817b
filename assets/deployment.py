"""`seldon_deployment`: the SeldonDeployment manifest (main = champion, canary = a challenger
that passed evaluation) applied to the configured target. The canary controller re-runs it
with an action (step | promote | rollback) and the figures behind the decision, so every
rollout step is a materialization with its reason in the asset's history.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource types of
# the decorated functions from their annotations at definition time.
import json
import os

import dagster as dg

from resources.mlflow_registry import CHAMPION, MlflowRegistry
from resources.seldon_target import SeldonTarget


class DeploymentConfig(dg.Config):
    action: str = "render"  # render | step | promote | rollback
    canary_version: str = ""  # the version the decision is about (stale decisions are ignored)
    canary_weight: int = -1  # -1: the first step
    steps: list[int] | None = None  # None: the target's canary policy (seldon_target.canary.steps)
    reason: str = "champion and passed challenger from the registry"
    figures: str = "{}"  # JSON: the numbers behind the decision


def plan(registry: MlflowRegistry, config: DeploymentConfig, steps: list[int]) -> dict:
    """Decide the predictors (and move aliases for promote / rollback). Returns the plan."""
    champion = registry.version_for_alias(CHAMPION)
    if champion is None:
        raise ValueError(f"no version of {registry.model_name} is {CHAMPION!r} yet: train and evaluate first")
    champ = str(champion.version)
    challenger = registry.passed_challenger(champ)
    canary = str(challenger.version) if challenger else None
    stale = bool(config.canary_version) and config.canary_version != canary
    action = "render" if stale else config.action
    weight = config.canary_weight if config.canary_weight >= 0 else steps[0]
    if action == "promote" and canary:
        registry.make_champion(canary)
        registry.mark_rollout(canary, "promoted")
        champ, canary, weight = canary, None, 0
    elif action == "rollback" and canary:
        registry.mark_evaluated(canary, passed=False, reason=f"canary: {config.reason}")
        registry.mark_rollout(canary, "rolled back")
        registry.drop_challenger()
        weight = 0
    return {"action": action, "stale": stale, "champion": champ, "canary": canary, "canary_weight": weight}


def model_location(registry: MlflowRegistry, target: SeldonTarget, version: str) -> dict:
    """Where the predictors of `target` read a version's model: `mf.Predictor` fields (model_uri, ...).

    local: a folder on this machine (the target's copy, downloaded from the registry once).
    kubernetes: the artifact's own URI in MLflow's artifact store (s3://…/serving), which the
    predictor downloads when it starts; the step pod's disk is not reachable from there.
    """
    from seldon import manifest as mf

    if target.kind != "kubernetes":
        found = sorted(target.model_dir(version).rglob("feature_schema.json"))
        artifact = found[0].parent if found else registry.serving_artifact(version, target.model_dir(version))
        return {"model_uri": str(artifact.resolve())}
    uri = registry.serving_uri(version)
    if not uri.startswith("s3://"):
        raise ValueError(
            f"model {registry.model_name} v{version} is stored at {uri}, which a predictor in the cluster "
            "cannot read: MLflow's artifact root (DRIFTLINE_MLFLOW_ARTIFACTS) must be an s3:// location"
        )
    lake = target.lake
    # MLflow's own setting names the store its artifacts are in; else the lake's (the same store, usually)
    endpoint = os.environ.get("MLFLOW_S3_ENDPOINT_URL") or (lake.s3_endpoint_url if lake else None) or ""
    return {
        "model_uri": uri,
        "s3_endpoint_url": endpoint,
        "s3_region": (lake.s3_region if lake else None) or "",
        "credentials_secret": mf.MODEL_STORE_SECRET,
    }


@dg.asset(group_name="deployment", deps=["model_evaluation"], kinds={"seldon", "kubernetes"})
def seldon_deployment(
    context: dg.AssetExecutionContext,
    config: DeploymentConfig,
    mlflow_registry: MlflowRegistry,
    seldon_target: SeldonTarget,
) -> dg.MaterializeResult:
    """Renders the SeldonDeployment (canary split when a challenger passed) and applies it."""
    from seldon import manifest as mf

    target = seldon_target
    steps = config.steps or target.canary.steps
    p = plan(mlflow_registry, config, steps)
    predictors = []
    for name, version, weight in (
        ("main", p["champion"], 100 - p["canary_weight"] if p["canary"] else 100),
        ("canary", p["canary"], p["canary_weight"]),
    ):
        if version is None:
            continue
        interface = mlflow_registry.serving_interface(version, mf.DEFAULT_INTERFACE)
        predictors.append(
            mf.Predictor(
                name,
                mlflow_registry.model_name,
                version,
                traffic=weight,
                interface=interface,
                feast_url=target.feast_url,
                **model_location(mlflow_registry, target, version),
            )
        )
    rollout = {
        "action": p["action"],
        "champion": p["champion"],
        "canary": p["canary"],
        "canary_weight": p["canary_weight"],
        "steps": list(steps),
        "reason": config.reason,
    }
    manifest = mf.render(target.deployment_name, target.namespace, predictors, target.image, rollout)
    applied = target.apply(manifest)
    summary = f"{p['action']}: main v{p['champion']}" + (
        f", canary v{p['canary']} at {p['canary_weight']}%" if p["canary"] else ""
    )
    context.log.info(f"{summary} ({config.reason})")
    return dg.MaterializeResult(
        metadata={
            "action": p["action"],
            "reason": config.reason,
            "summary": summary,
            "stale_decision_ignored": p["stale"],
            "champion_version": p["champion"],
            "canary_version": p["canary"] or "none",
            "canary_weight": p["canary_weight"],
            "figures": dg.MetadataValue.json(json.loads(config.figures or "{}")),
            "traffic": dg.MetadataValue.json({x.name: x.traffic for x in predictors}),
            "model_uris": dg.MetadataValue.json({x.name: mf.model_uri(x.model_uri) for x in predictors}),
            "target": dg.MetadataValue.json(applied),
            "manifest": dg.MetadataValue.json(manifest),
        }
    )
