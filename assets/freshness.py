"""Freshness checks on the raw and feature assets: each day's partition must land by a deadline,
or the UI (and the checks' history) says which day is late. WARN severity: a late day is worth a
look, not a reason to stop the pipeline.

The checks are evaluated by `freshness_checks_sensor`, switched on with the other automation
(DRIFTLINE_AUTOMATION); `make demo` lands its days itself and leaves it off. Dagster 1.13 marks
these builders superseded by `FreshnessPolicy`, but that needs the instance's preview
`freshness: enabled` switch and shows no check history; the checks are the stable API, so their
SupersessionWarning is silenced here (every Dagster process loading the code would print it).
"""

from __future__ import annotations

import warnings

import dagster as dg

# Raw events of day D land shortly after midnight UTC; features and snapshots follow.
RAW_ASSETS = ["raw_transactions", "raw_labels"]
FEATURE_ASSETS = ["transaction_features", "user_state", "merchant_state"]
RAW_DEADLINE_CRON = "0 2 * * *"  # yesterday's raw partitions by 02:00 UTC
FEATURE_DEADLINE_CRON = "0 4 * * *"  # yesterday's features and snapshots by 04:00 UTC


def freshness_checks() -> list[dg.AssetChecksDefinition]:
    """One check per raw and feature asset: its latest complete daily partition by the deadline."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return [
            *dg.build_time_partition_freshness_checks(assets=RAW_ASSETS, deadline_cron=RAW_DEADLINE_CRON),
            *dg.build_time_partition_freshness_checks(assets=FEATURE_ASSETS, deadline_cron=FEATURE_DEADLINE_CRON),
        ]


def freshness_sensor(
    checks: list[dg.AssetChecksDefinition], default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    """The sensor that evaluates `checks` (it launches no runs of the assets themselves)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(freshness_checks=checks, default_status=default_status)
