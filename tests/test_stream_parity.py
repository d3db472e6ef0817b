"""Exact parity of the fresh features (issue 16, point 3): what the online path serves for a
transaction as of its own timestamp equals `transaction_features` for it.

A generated world (resources/synthetic) with eight days of history and one replayed day, plus
injected card-testing bursts (twenty small payments in two minutes, some at the same instant).
The replayed day arrives out of order: each event is delayed by up to spec.ALLOWED_LATENESS,
and some are sent twice. Events go in arrival order through `velocity.apply` and
`VelocityStore.push` into a real Feast sqlite online store; each transaction is read through
`seldon.online` (the in-process reader, service fraud_model_v2) at its own time t, once the
arrival clock has passed t + lateness (so every event with ts < t has arrived), and compared
with the DuckDB engine's transaction_features over the same days: counts exactly, sums and
times within 1e-9 relative.
"""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftline import spec, velocity
from tests.stream_helpers import applied_feast_repo

DAY = dt.date(2026, 10, 9)
HISTORY_DAYS = 8  # 7-day windows and "previous transaction" populated on the replayed day
BURSTS = 12
DUPLICATES = 0.05
LATE_SHARE = 0.5  # share of the day's events that arrive late (within the allowed lateness)


def _world() -> pd.DataFrame:
    from resources.synthetic.config import WorldConfig
    from resources.synthetic.generator import SyntheticWorld

    world = SyntheticWorld(WorldConfig(seed=16, n_users=150, n_merchants=60, events_per_day=900))
    days = [DAY - dt.timedelta(days=k) for k in range(HISTORY_DAYS, -1, -1)]
    tx = pd.concat([world.transactions(d) for d in days], ignore_index=True)
    tx["event_ts"] = tx["event_ts"].astype("datetime64[us]")
    return pd.concat([tx, _bursts(tx)], ignore_index=True).sort_values("event_ts", ignore_index=True)


def _bursts(tx: pd.DataFrame) -> pd.DataFrame:
    """Card testing: twenty small payments in two minutes on one card, a few at one instant
    (same country, so "the previous transaction" is the same whichever comes first)."""
    rng = np.random.default_rng(16)
    rows = []
    users = rng.choice(tx["user_id"].unique(), BURSTS, replace=False)
    for b, user in enumerate(users):
        day = DAY if b % 4 else DAY - dt.timedelta(days=1)  # some the day before: in the 24 h / 7 d windows
        start = pd.Timestamp(day) + pd.Timedelta(seconds=int(rng.integers(0, 86_400 - 120)))
        offsets = np.sort(rng.integers(0, 120_000_000, 20))
        offsets[5:8] = offsets[5]  # three at the same instant
        country = str(rng.choice(["DE", "FR", "NL"]))
        for k, off in enumerate(offsets):
            rows.append(
                {
                    "event_id": f"burst{b:02d}_{k:02d}",
                    "event_ts": start + pd.Timedelta(microseconds=int(off)),
                    "user_id": int(user),
                    "merchant_id": int(rng.integers(0, 60)),
                    "amount": round(float(rng.uniform(0.5, 2.0)), 2),
                    "currency": "EUR",
                    "category": "digital",
                    "country": country,
                    "channel": "ecom",
                }
            )
    out = pd.DataFrame(rows)
    out["event_ts"] = out["event_ts"].astype("datetime64[us]")
    return out


def _offline(tmp_path, tx: pd.DataFrame) -> pd.DataFrame:
    """transaction_features of the replayed day by the DuckDB engine, from daily files."""
    from resources.engines.duckdb_features import compute_transaction_features

    files = []
    for day, part in tx.groupby(tx["event_ts"].dt.date):
        path = tmp_path / "lake" / f"transactions_{day}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path)
        files.append(str(path))
    start = dt.datetime.combine(DAY, dt.time())
    with duckdb.connect() as con:
        table = compute_transaction_features(con, files, [], start, start + dt.timedelta(days=1))
    return table.to_pandas().set_index("event_id")


def _arrivals(day: pd.DataFrame) -> pd.DataFrame:
    """The replayed day as the worker sees it: delayed within the lateness, some sent twice."""
    rng = np.random.default_rng(61)
    lateness = spec.ALLOWED_LATENESS_US
    dup = day.sample(frac=DUPLICATES, random_state=3)
    sent = pd.concat([day, dup], ignore_index=True)
    sent["event_us"] = sent["event_ts"].astype("int64")  # datetime64[us]
    late = rng.random(len(sent)) < LATE_SHARE
    delay = np.where(late, rng.integers(0, lateness, len(sent)), 0)
    sent["arrival_us"] = sent["event_us"] + delay
    return sent.sort_values("arrival_us", kind="stable", ignore_index=True)


def _records(frame: pd.DataFrame) -> list[dict]:
    cols = ["event_id", "user_id", "merchant_id", "amount", "country", "event_us"]
    return frame[cols].to_dict("records")


def _apply_and_push(store, states: dict, events: list[dict]) -> None:
    by_user: dict[int, list[dict]] = {}
    for e in events:
        by_user.setdefault(int(e["user_id"]), []).append(e)
    for user, evs in by_user.items():
        states[user], _ = velocity.apply(states.get(user), evs)
    store.push({u: states[u] for u in by_user})


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)


@pytest.fixture(scope="module")
def feast_repo(tmp_path_factory):
    return applied_feast_repo(tmp_path_factory.mktemp("parity"))


def test_online_path_equals_transaction_features(tmp_path, feast_repo):
    from seldon.online import feature_source
    from streaming.velocity_store import VelocityStore

    tx = _world()
    offline = _offline(tmp_path, tx)
    day_start = pd.Timestamp(DAY)
    history, day = tx[tx["event_ts"] < day_start], tx[tx["event_ts"] >= day_start]
    assert len(offline) == len(day) > 800

    store = VelocityStore(feast_repo)
    reader = feature_source(f"file://{feast_repo}", service=spec.FEATURE_SERVICE_V2)
    # Bootstrap: the history as the offline data plane has it, then the day as it arrives.
    history = history.assign(event_us=history["event_ts"].astype("int64"))
    states: dict = {}
    _apply_and_push(store, states, _records(history))
    assert store.read(states) == states

    sent = _arrivals(day)
    # A transaction at t is read once the arrival clock passes t + lateness: all of ts < t is in.
    reads = day.assign(event_us=day["event_ts"].astype("int64")).sort_values("event_us", ignore_index=True)
    read_at = reads["event_us"].to_numpy() + spec.ALLOWED_LATENESS_US
    served: dict[str, dict] = {}
    pending: list[dict] = []
    r = 0
    # Walk arrivals and reads in one timeline: before an arrival at or after a read's point,
    # flush what arrived (apply + push) and serve the read.
    arrivals = sent["arrival_us"].to_numpy()
    events = _records(sent)
    a = 0
    while r < len(reads):
        while a < len(events) and arrivals[a] < read_at[r]:
            pending.append(events[a])
            a += 1
        if pending:
            _apply_and_push(store, states, pending)
            pending = []
        # Every read whose point is reached before the next arrival.
        nxt = arrivals[a] if a < len(events) else np.iinfo(np.int64).max
        batch = []
        while r < len(reads) and read_at[r] <= nxt:
            batch.append(reads.iloc[r])
            r += 1
        entities = {
            "user_id": [int(x["user_id"]) for x in batch],
            "merchant_id": [int(x["merchant_id"]) for x in batch],
            "amount": [float(x["amount"]) for x in batch],
            "event_epoch_s": [int(x["event_us"]) / 1e6 for x in batch],
            "country": [x["country"] for x in batch],
        }
        got = reader.features(entities)
        for i, x in enumerate(batch):
            served[x["event_id"]] = {name: got[name][i] for name in spec.STREAM_FEATURES}

    assert set(served) == set(offline.index)
    wrong = []
    expected_rows = offline[spec.STREAM_FEATURES].astype(object).to_dict("index")
    for event_id, values in served.items():
        expected = expected_rows[event_id]
        for name in spec.STREAM_FEATURES:
            want = expected[name]
            want = None if want is None or (isinstance(want, float) and math.isnan(want)) else want
            ok = values[name] == want if spec.STREAM_FEATURE_TYPES[name] == "Int64" else _same(values[name], want)
            if not ok:
                wrong.append((event_id, name, values[name], want))
    assert not wrong, f"{len(wrong)} served values differ from transaction_features, e.g. {wrong[:5]}"
    # The bursts are visible: some transaction saw 10+ payments of its card in the last hour.
    assert max(v[spec.user_txn_count(spec.USER_SHORT)] for v in served.values()) >= 10  # pyright: ignore[reportArgumentType, reportCallIssue, reportOperatorIssue]
