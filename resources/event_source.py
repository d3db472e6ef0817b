"""Where raw events come from: the synthetic world (default) or a landing folder that a
Kafka/Pulsar sink connector fills with Parquet or CSV files.

Both return the stream's rows for one day as they arrived, unvalidated: validation and
quarantine happen in the ingestion assets, the same way for every source.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache
from pathlib import Path

import dagster as dg
import pandas as pd

from resources.synthetic.config import DEFAULT_WORLD, WorldConfig

STREAMS = ("transactions", "labels")
LANDING_SUFFIXES = (".parquet", ".csv")


class EventSource(dg.ConfigurableResource):
    """Base class: one day of a stream, as raw rows."""

    def read(self, stream: str, day: dt.date) -> pd.DataFrame:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


@lru_cache(maxsize=8)
def _world(config):
    from resources.synthetic import SyntheticWorld

    return SyntheticWorld(config)


class SyntheticEventSource(EventSource):
    """Deterministic generator, seeded per partition. Drift scenarios: none | covariate | concept.
    The fields are WorldConfig's (resources/synthetic/config.py), with its defaults."""

    seed: int = DEFAULT_WORLD.seed
    n_users: int = DEFAULT_WORLD.n_users
    n_merchants: int = DEFAULT_WORLD.n_merchants
    events_per_day: int = DEFAULT_WORLD.events_per_day
    fraud_rate: float = DEFAULT_WORLD.fraud_rate
    drift_scenario: str = DEFAULT_WORLD.drift_scenario
    drift_start: str | None = None  # YYYY-MM-DD; WorldConfig takes it as a date
    drift_ramp_days: int = DEFAULT_WORLD.drift_ramp_days

    def world_config(self) -> WorldConfig:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(WorldConfig)}
        fields["drift_start"] = dt.date.fromisoformat(self.drift_start) if self.drift_start else None
        return WorldConfig(**fields)

    def world(self):
        return _world(self.world_config())

    def read(self, stream: str, day: dt.date) -> pd.DataFrame:
        _check_stream(stream)
        world = self.world()
        return world.transactions(day) if stream == "transactions" else world.labels(day)

    def describe(self) -> str:
        drift = f", drift={self.drift_scenario} from {self.drift_start}" if self.drift_scenario != "none" else ""
        return f"synthetic(seed={self.seed}, {self.events_per_day}/day{drift})"


class LandingFolderEventSource(EventSource):
    """Files under `<path>/<stream>/date=YYYY-MM-DD/*.parquet|*.csv`, the layout of a sink
    connector with a daily time-based partitioner. CSV is read as text, so values that do not
    parse reach validation (and the quarantine) instead of failing the read."""

    path: str = "data/landing"

    def partition_dir(self, stream: str, day: dt.date) -> Path:
        return Path(self.path) / stream / f"date={day.isoformat()}"

    def files(self, stream: str, day: dt.date) -> list[Path]:
        folder = self.partition_dir(stream, day)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix in LANDING_SUFFIXES and not p.name.startswith("."))

    def read(self, stream: str, day: dt.date) -> pd.DataFrame:
        _check_stream(stream)
        files = self.files(stream, day)
        if not files:
            raise FileNotFoundError(
                f"no landing files for {stream} on {day.isoformat()} under {self.partition_dir(stream, day)}"
            )
        frames = []
        for f in files:
            try:
                frames.append(pd.read_csv(f, dtype=str) if f.suffix == ".csv" else pd.read_parquet(f))
            except Exception as err:  # a corrupt file must name itself, not crash the run anonymously
                raise ValueError(f"cannot read landing file {f}: {err}") from err
        return pd.concat(frames, ignore_index=True, sort=False)

    def inventory(self, stream: str) -> dict[str, list[tuple[str, int, int]]]:
        """Per landed day: (file name, size, mtime ns), for change detection by the sensor."""
        root = Path(self.path) / stream
        out: dict[str, list[tuple[str, int, int]]] = {}
        if not root.is_dir():
            return out
        for folder in sorted(root.glob("date=*")):
            day = folder.name.removeprefix("date=")
            try:
                dt.date.fromisoformat(day)
            except ValueError:
                continue
            entries = []
            for f in sorted(folder.iterdir()):
                if f.suffix in LANDING_SUFFIXES and not f.name.startswith("."):
                    st = f.stat()
                    entries.append((f.name, st.st_size, st.st_mtime_ns))
            if entries:
                out[day] = entries
        return out

    def describe(self) -> str:
        return f"landing({self.path})"


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; expected one of {STREAMS}")
