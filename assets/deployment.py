"""`seldon_deployment`: the SeldonDeployment manifest (main = champion, canary = a challenger
that passed evaluation) applied to the configured target. The canary controller re-runs it
with an action (step | promote | rollback) and the figures behind the decision, so every
rollout step is a materialization with its reason in the asset's history.
"""


import json

import dagster as dg

from resources.mlflow_registry import CHALLENGER, CHAMPION, MlflowRegistry
from resources.seldon_target import SeldonTarget

STATUS_TAG = "driftline.evaluation"  # set by model_evaluation: passed | rejected
ROLLOUT_TAG = "driftline.rollout"
INTERFACE_TAG = "driftline.serving_interface"  # optional: the component class a version is served with
DEFAULT_STEPS = [10, 25, 50, 100]


class DeploymentConfig(dg.Config):
    action: str = "render"  # render | step | promote | rollback
    canary_version: str = ""  # the version the decision is about (stale decisions are ignored)
    canary_weight: int = -1  # -1: the first step
    steps: list[int] = DEFAULT_STEPS
    reason: str = "champion and passed challenger from the registry"
    figures: str = "{}"  # JSON: the numbers behind the decision


def _passed_challenger(registry: MlflowRegistry, champion: str | None):
    version = registry.version_for_alias(CHALLENGER)
    if version is None or str(version.version) == champion:
        return None
    return version if version.tags.get(STATUS_TAG) == "passed" else None


def plan(registry: MlflowRegistry, config: DeploymentConfig) -> dict:
    """Decide the predictors (and move aliases for promote / rollback). Returns the plan."""
    champion = registry.version_for_alias(CHAMPION)
    if champion is None:
        raise ValueError(f"no version of {registry.model_name} is {CHAMPION!r} yet: train and evaluate first")
    champ = str(champion.version)
    challenger = _passed_challenger(registry, champ)
    canary = str(challenger.version) if challenger else None
    stale = bool(config.canary_version) and config.canary_version != canary
    action = "render" if stale else config.action
    weight = config.canary_weight if config.canary_weight >= 0 else config.steps[0]
    client = registry.client()
    if action == "promote" and canary:
        registry.set_alias(CHAMPION, canary)
        registry.delete_alias(CHALLENGER)
        client.set_model_version_tag(registry.model_name, canary, ROLLOUT_TAG, "promoted")
        champ, canary, weight = canary, None, 0
    elif action == "rollback" and canary:
        client.set_model_version_tag(registry.model_name, canary, STATUS_TAG, "rejected")
        client.set_model_version_tag(registry.model_name, canary, f"{STATUS_TAG}.reason", f"canary: {config.reason}")
        client.set_model_version_tag(registry.model_name, canary, ROLLOUT_TAG, "rolled back")
        registry.delete_alias(CHALLENGER)
        weight = 0
    return {"action": action, "stale": stale, "champion": champ, "canary": canary, "canary_weight": weight}


@dg.asset(group_name="deployment", deps=["model_evaluation"], kinds={"seldon", "kubernetes"})
def seldon_deployment(context: dg.AssetExecutionContext, config: DeploymentConfig, mlflow_registry: MlflowRegistry,
                      seldon_target: SeldonTarget) -> dg.MaterializeResult:
    """Renders the SeldonDeployment (canary split when a challenger passed) and applies it."""
    from seldon import manifest as mf

    p = plan(mlflow_registry, config)
    target = seldon_target
    predictors = []
    for name, version, weight in (("main", p["champion"], 100 - p["canary_weight"] if p["canary"] else 100),
                                  ("canary", p["canary"], p["canary_weight"])):
        if version is None:
            continue
        found = sorted(target.model_dir(version).rglob("feature_schema.json"))
        artifact = found[0].parent if found else mlflow_registry.serving_artifact(version, target.model_dir(version))
        interface = mlflow_registry.version_tags(version).get(INTERFACE_TAG, mf.DEFAULT_INTERFACE)
        predictors.append(mf.Predictor(name, mlflow_registry.model_name, version, str(artifact.resolve()), weight,
                                       interface=interface, feast_url=target.feast_url))
    rollout = {"action": p["action"], "champion": p["champion"], "canary": p["canary"],
               "canary_weight": p["canary_weight"], "steps": list(config.steps), "reason": config.reason}
    manifest = mf.render(target.deployment_name, target.namespace, predictors, target.image, rollout)
    applied = target.apply(manifest)
    summary = f"{p['action']}: main v{p['champion']}" + (f", canary v{p['canary']} at {p['canary_weight']}%"
                                                          if p["canary"] else "")
    context.log.info(f"{summary} ({config.reason})")
    return dg.MaterializeResult(metadata={
        "action": p["action"], "reason": config.reason, "summary": summary,
        "stale_decision_ignored": p["stale"],
        "champion_version": p["champion"], "canary_version": p["canary"] or "none",
        "canary_weight": p["canary_weight"],
        "figures": dg.MetadataValue.json(json.loads(config.figures or "{}")),
        "traffic": dg.MetadataValue.json({x.name: x.traffic for x in predictors}),
        "target": dg.MetadataValue.json(applied),
        "manifest": dg.MetadataValue.json(manifest),
    })
