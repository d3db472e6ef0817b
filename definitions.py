"""The Dagster code location: assets, checks, jobs, sensors and the resources of the
environment (DRIFTLINE_ENV). Heavy libraries are imported inside asset bodies only."""

from __future__ import annotations

import dagster as dg

from assets import features, ingestion
from resources import LandingFolderEventSource, resources_for_env
from sensors.landing import build_landing_sensor

RESOURCES = resources_for_env()

data_plane_assets = dg.load_assets_from_modules([ingestion, features])

data_plane_job = dg.define_asset_job(
    "data_plane_job",
    selection=dg.AssetSelection.groups("ingestion", "features"),
    description="Raw events of a day, validated, and their point-in-time features.",
)

landing_sensor = build_landing_sensor(
    dg.DefaultSensorStatus.RUNNING if isinstance(RESOURCES["event_source"], LandingFolderEventSource)
    else dg.DefaultSensorStatus.STOPPED
)

defs = dg.Definitions(
    assets=data_plane_assets,
    asset_checks=dg.load_asset_checks_from_modules([ingestion, features]),
    jobs=[data_plane_job],
    sensors=[landing_sensor],
    resources=RESOURCES,
)
