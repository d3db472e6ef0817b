"""Benchmark data: a synthetic lake generated once and reused across runs.

Generating 5M events takes a while, so the lake is cached under `data/bench/lake` with a
`params.json`; a run with the same parameters reuses it, other parameters rebuild it.
Only pandas/pyarrow are imported here so that benchmark subprocesses stay light; the
`Lake` resource (which pulls in Dagster) is imported lazily when writing.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_ROOT = "data/bench/lake"
TX_TABLE, LABEL_TABLE = "transactions", "labels"


@dataclass(frozen=True)
class BenchParams:
    events_per_day: int = 170_000
    days: int = 30
    first_day: str = "2024-01-01"
    seed: int = 7
    n_users: int = 60_000
    n_merchants: int = 8_000
    fraud_rate: float = 0.004

    @property
    def dates(self) -> list[str]:
        d0 = dt.date.fromisoformat(self.first_day)
        return [(d0 + dt.timedelta(days=i)).isoformat() for i in range(self.days)]

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.first_day)

    @property
    def end(self) -> dt.datetime:
        return self.start + dt.timedelta(days=self.days)


def write_world(root: str, params: BenchParams) -> None:
    """Write transactions and labels of every day as lake partitions (label partitions
    hold chargebacks whose label_ts falls on that day)."""
    import pyarrow as pa

    from resources.lake import Lake
    from resources.synthetic import SyntheticWorld, WorldConfig

    world = SyntheticWorld(
        WorldConfig(
            seed=params.seed,
            n_users=params.n_users,
            n_merchants=params.n_merchants,
            events_per_day=params.events_per_day,
            fraud_rate=params.fraud_rate,
        )
    )
    lake = Lake(root=root)
    for date in params.dates:
        day = dt.date.fromisoformat(date)
        lake.write_partition(TX_TABLE, date, pa.Table.from_pandas(world.transactions(day), preserve_index=False))
        lake.write_partition(LABEL_TABLE, date, pa.Table.from_pandas(world.labels(day), preserve_index=False))


def ensure_lake(root: str, params: BenchParams) -> bool:
    """Generate the lake unless it already holds data for exactly these parameters.
    Returns True when it (re)generated."""
    path = Path(root)
    marker = path / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == asdict(params):
        return False
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    write_world(root, params)
    marker.write_text(json.dumps(asdict(params), indent=2))
    return True


def partition_files(root: str, table: str) -> list[str]:
    return sorted(glob.glob(str(Path(root).resolve() / table / "date=*" / "*.parquet")))
