"""Drive the asset graph in-process, as the schedule and sensors would: used by `make demo`
and by tests that need a populated lake, feature store and registry."""

from __future__ import annotations


def pick(assets: list, *names: str) -> list:
    """The assets among `assets` whose keys are `names`."""
    return [a for a in assets if a.key.to_user_string() in names]


def run_data_plane(
    assets: list, resources: dict, days: list[str], instance=None, tags: dict | None = None, on_day=None
):
    """Raw events day by day, features for the range in one run, daily snapshots, then the
    Feast registry and the online store as of the last day."""
    import dagster as dg

    tags = dict(tags or {})
    for day in days:
        result = dg.materialize(
            assets,
            selection=pick(assets, "raw_transactions", "raw_labels"),
            partition_key=day,
            resources=resources,
            instance=instance,
            tags=tags,
        )
        if on_day:
            on_day(day, result)
    dg.materialize(
        assets,
        selection=pick(assets, "transaction_features"),
        resources=resources,
        instance=instance,
        tags={**tags, "dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    for day in days:
        dg.materialize(
            assets,
            selection=pick(assets, "user_state", "merchant_state"),
            partition_key=day,
            resources=resources,
            instance=instance,
            tags=tags,
        )
    return dg.materialize(
        assets,
        selection=pick(assets, "feast_registry", "online_features"),
        partition_key=days[-1],
        resources=resources,
        instance=instance,
        tags=tags,
    )


def run_training(
    assets: list,
    resources: dict,
    instance=None,
    tags: dict | None = None,
    run_config: dict | None = None,
    raise_on_error: bool = False,
):
    """training_set -> fraud_model -> model_evaluation in one run."""
    import dagster as dg

    return dg.materialize(
        assets,
        selection=pick(assets, "training_set", "fraud_model", "model_evaluation"),
        resources=resources,
        instance=instance,
        tags=tags,
        run_config=run_config,
        raise_on_error=raise_on_error,
    )
