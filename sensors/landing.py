"""Landing-zone sensor: requests the raw partition whose landing files are new or changed.

The cursor maps `stream/day` to a fingerprint of that day's files (names, sizes, mtimes), so
a re-delivered or appended file re-ingests its day (idempotently), and an unchanged folder
requests nothing. Run keys carry the fingerprint, so a daemon restart cannot duplicate runs.
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from assets.partitions import START_DATE
from resources.event_source import EventSource, LandingFolderEventSource

STREAM_ASSETS = {"transactions": "raw_transactions", "labels": "raw_labels"}


def fingerprint(entries: list) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()[:16]


def landing_requests(source: LandingFolderEventSource, cursor: dict[str, str], today: dt.date):
    """(run requests, new cursor, skipped days with the reason) for the current landing folder."""
    requests, skipped, new_cursor = [], {}, dict(cursor)
    for stream, asset in STREAM_ASSETS.items():
        for day, entries in source.inventory(stream).items():
            key, fp = f"{stream}/{day}", fingerprint(entries)
            if cursor.get(key) == fp:
                continue
            if day < START_DATE or dt.date.fromisoformat(day) > today:
                skipped[key] = f"outside the partitions {START_DATE}..{today.isoformat()}"
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"landing/{key}/{fp}",
                    partition_key=day,
                    asset_selection=[dg.AssetKey(asset)],
                    tags={"driftline/trigger": "landing", "driftline/files": str(len(entries))},
                )
            )
            new_cursor[key] = fp
    return requests, new_cursor, skipped


def build_landing_sensor(default_status: dg.DefaultSensorStatus) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        minimum_interval_seconds=30,
        default_status=default_status,
        asset_selection=dg.AssetSelection.assets(*STREAM_ASSETS.values()),
        description="Ingests days whose files in the landing folder are new or changed.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, event_source: EventSource):
        if not isinstance(event_source, LandingFolderEventSource):
            return dg.SkipReason(f"event source is {event_source.describe()}, not a landing folder")
        cursor = json.loads(context.cursor) if context.cursor else {}
        requests, new_cursor, skipped = landing_requests(event_source, cursor, dt.date.today())
        for key, why in skipped.items():
            context.log.warning(f"landing {key} ignored: {why}")
        context.update_cursor(json.dumps(new_cursor, sort_keys=True))
        if not requests:
            return dg.SkipReason("no new or changed landing files")
        return requests

    return landing_sensor
