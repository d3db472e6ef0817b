"""The daily partitioning shared by every event-time asset, and date helpers."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

# First day of data. Override with DRIFTLINE_START_DATE (YYYY-MM-DD) for other datasets.
START_DATE = os.environ.get("DRIFTLINE_START_DATE", "2026-10-01")

# end_offset=1: today is a partition too (served traffic and its drift report arrive during the day).
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1)

# Features look back this many days of raw events (the longest window is 30 d).
LOOKBACK_DAYS = 30


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
