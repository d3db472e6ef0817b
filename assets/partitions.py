"""The daily partitioning shared by every event-time asset, and date helpers."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from driftline import settings, spec

# First day of data (DRIFTLINE_START_DATE). The partitions are part of the definitions, so it
# is read when the code location loads.
START_DATE = settings.load().start_date

# end_offset=1: today is a partition too (served traffic and its drift report arrive during the day).
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1)

# Features look back this many days of raw events (driftline.spec.LOOKBACK covers every window).
LOOKBACK_DAYS = spec.LOOKBACK_DAYS


def parse_day(partition_key: str) -> dt.date:
    try:
        return dt.date.fromisoformat(partition_key)
    except ValueError as err:
        raise ValueError(f"partition key {partition_key!r} is not a YYYY-MM-DD date") from err


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)


def days_back(day: dt.date, n: int) -> list[str]:
    """The ISO dates of `day` and the `n` days before it, oldest first."""
    return [(day - dt.timedelta(days=k)).isoformat() for k in range(n, -1, -1)]
