"""The DuckDB feature engine against an obviously-correct reference (docs/features.md).

The reference below loops over rows and filters each user's / merchant's events by hand,
so it can be read against the spec line by line. A small synthetic world (with a high
fraud rate, so chargebacks exist) is extended with hand-placed edge cases: events at the
same instant, events exactly on window boundaries, chargebacks labelled exactly at a
row's timestamp or for transactions exactly as old as the merchant window. The pandas and
Polars baselines of the benchmark are checked too, so the benchmark compares correct
implementations.
Windows, names and types come from driftline.spec, so the reference follows a change there.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from bench.compare import compare_features
from bench.features_pandas import compute_features_pandas
from bench.features_polars import compute_features_polars
from driftline import spec
from driftline.spec import COLUMNS, FEATURE_COLUMNS
from resources.lake import Lake
from resources.synthetic import SyntheticWorld, WorldConfig

DAY0 = dt.date(2024, 3, 4)
N_DAYS = 10
# Rows of days 2..8: days 0-1 are history only, day 9 is in the files but after `end`.
START = dt.datetime(2024, 3, 6)
END = dt.datetime(2024, 3, 13)

US_PER_S = spec.US_PER_SECOND
WINDOWS = {w.suffix: w.micros for w in spec.USER_WINDOWS}


# --------------------------------------------------------------------------- reference
def _us(series: pd.Series) -> list[int]:
    return pd.to_datetime(series).astype("datetime64[us]").astype("int64").tolist()


def reference_features(
    transactions: pd.DataFrame, labels: pd.DataFrame, start: dt.datetime, end: dt.datetime
) -> pd.DataFrame:
    """Brute force, straight from docs/features.md: for every row, scan all events."""
    events = transactions.to_dict("records")
    for e, ts in zip(events, _us(transactions["event_ts"]), strict=True):
        e["ts"] = ts
    chargebacks = [
        (m, ev, lab)
        for m, ev, lab in zip(labels["merchant_id"], _us(labels["event_ts"]), _us(labels["label_ts"]), strict=True)
    ]
    by_user, by_merchant = defaultdict(list), defaultdict(list)
    for e in events:
        by_user[e["user_id"]].append(e)
        by_merchant[e["merchant_id"]].append(e)

    start_us, end_us = _us(pd.Series([start, end]))
    lookback, distinct, new_merchant, mean, merchant = (
        w.micros for w in (spec.LOOKBACK, spec.DISTINCT_MERCHANTS, spec.NEW_MERCHANT, spec.USER_MEAN, spec.MERCHANT)
    )
    rows = []
    for e in events:
        t = e["ts"]
        if not start_us <= t < end_us:
            continue
        when = pd.Timestamp(t, unit="us")
        past = [p for p in by_user[e["user_id"]] if t - lookback <= p["ts"] < t]
        row = {c: e[c] for c in ("event_id", "user_id", "merchant_id", "amount", "category", "country", "channel")}
        row["event_ts"] = when
        row[spec.HOUR_OF_DAY] = when.hour
        row[spec.DAY_OF_WEEK] = when.isoweekday()
        for window in spec.USER_WINDOWS:
            in_window = [p for p in past if p["ts"] >= t - window.micros]
            row[spec.user_txn_count(window)] = len(in_window)
            row[spec.user_amount_sum(window)] = sum(p["amount"] for p in in_window)
        latest = max(past, key=lambda p: (p["ts"], p["event_id"])) if past else None
        row[spec.SECONDS_SINCE_PREV_TXN] = (t - latest["ts"]) / US_PER_S if latest else None
        for_mean = [p["amount"] for p in past if p["ts"] >= t - mean]
        row[spec.AMOUNT_TO_USER_MEAN] = e["amount"] / (sum(for_mean) / len(for_mean)) if for_mean else None
        row[spec.USER_DISTINCT_MERCHANTS] = len({p["merchant_id"] for p in past if p["ts"] >= t - distinct})
        row[spec.IS_NEW_MERCHANT] = int(
            not any(p["merchant_id"] == e["merchant_id"] for p in past if p["ts"] >= t - new_merchant)
        )
        row[spec.COUNTRY_CHANGED] = int(latest is not None and latest["country"] != e["country"])
        n_merchant = sum(1 for p in by_merchant[e["merchant_id"]] if t - merchant <= p["ts"] < t)
        n_cb = sum(1 for m, ev, lab in chargebacks if m == e["merchant_id"] and lab < t and ev >= t - merchant)
        row[spec.MERCHANT_TXN_COUNT] = n_merchant
        row[spec.MERCHANT_CB_COUNT] = n_cb
        row[spec.MERCHANT_CB_RATE] = n_cb / max(n_merchant, 1)
        rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({c: t for c, t in FEATURE_COLUMNS.items() if t in ("int32", "int64")})


# --------------------------------------------------------------------------- data
def _add_tx(tx: pd.DataFrame, like: pd.Series, event_id: str, ts: pd.Timestamp, **changes) -> pd.DataFrame:
    row = like.to_dict() | {"event_id": event_id, "event_ts": ts} | changes
    return pd.concat([tx, pd.DataFrame([row])], ignore_index=True)


def _add_label(labels: pd.DataFrame, merchant_id: int, event_ts, label_ts, event_id: str) -> pd.DataFrame:
    row = {
        "event_id": event_id,
        "event_ts": event_ts,
        "user_id": 0,
        "merchant_id": merchant_id,
        "label_ts": label_ts,
        "is_fraud": True,
        "reason_code": "10.4-card-absent",
    }
    return pd.concat([labels, pd.DataFrame([row])], ignore_index=True)


def _pick(tx: pd.DataFrame, day: int, nth: int = 0) -> pd.Series:
    """A transaction of world day `day` (well inside the day, deterministic)."""
    lo = pd.Timestamp(DAY0 + dt.timedelta(days=day)) + pd.Timedelta(hours=10)
    return tx[tx["event_ts"] >= lo].iloc[nth]


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Small world plus hand-placed edge cases; (transactions, labels) over all days."""
    w = SyntheticWorld(WorldConfig(seed=11, n_users=50, n_merchants=30, events_per_day=400, fraud_rate=0.04))
    days = [DAY0 + dt.timedelta(days=i) for i in range(N_DAYS)]
    tx = pd.concat([w.transactions(d) for d in days], ignore_index=True)
    labels = pd.concat([w.labels(d) for d in days], ignore_index=True)
    assert len(labels) > 20

    # Same instant: a second payment of the same user at the same merchant and time.
    a = _pick(tx, 4)
    tx = _add_tx(tx, a, "edge_same_instant", a["event_ts"], amount=777.0)
    # Exact window edges (included, since windows are [t - w, t)): each user window before b.
    b = _pick(tx, 8, 3)
    for name, w_us in WINDOWS.items():
        tx = _add_tx(
            tx,
            b,
            f"edge_{name}_before",
            b["event_ts"] - pd.Timedelta(microseconds=w_us),
            merchant_id=int((b["merchant_id"] + 1) % 30),
            amount=1000.0,
            country="US",
        )
    # Chargebacks at the edges: labelled exactly at t, and for payments exactly the merchant window old.
    c = _pick(tx, 6, 5)
    t = c["event_ts"]
    width = pd.Timedelta(spec.MERCHANT.timedelta)
    labels = _add_label(labels, c["merchant_id"], t - pd.Timedelta(days=3), t, "edge_cb_at_t")  # not yet known
    labels = _add_label(
        labels, c["merchant_id"], t - width, t - pd.Timedelta(days=1), "edge_cb_window"
    )  # exactly the window old: counts
    labels = _add_label(
        labels, c["merchant_id"], t - width - pd.Timedelta(microseconds=1), t - pd.Timedelta(days=1), "edge_cb_older"
    )  # a microsecond older: does not
    return tx.sort_values(["event_ts", "event_id"], ignore_index=True), labels


def _write_lake(root, tx: pd.DataFrame, labels: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Partition transactions by event_ts date and labels by label_ts date, like the pipeline."""
    lake = Lake(root=str(root))
    tx_files, label_files = [], []
    for date, part in tx.groupby(tx["event_ts"].dt.date):
        tx_files.append(
            str(
                lake.write_partition("transactions", date.isoformat(), pa.Table.from_pandas(part, preserve_index=False))
            )
        )
    for date, part in labels.groupby(labels["label_ts"].dt.date):
        label_files.append(
            str(lake.write_partition("labels", date.isoformat(), pa.Table.from_pandas(part, preserve_index=False)))
        )
    return tx_files, label_files


def run_duckdb(root, tx: pd.DataFrame, labels: pd.DataFrame, start=START, end=END) -> pa.Table:
    from resources.engines.duckdb_features import compute_transaction_features

    tx_files, label_files = _write_lake(root, tx, labels)
    with duckdb.connect() as con:
        return compute_transaction_features(con, tx_files, label_files, start, end)


def run_engine(engine: str, root, tx, labels, start=START, end=END) -> pd.DataFrame:
    if engine == "duckdb":
        return run_duckdb(root, tx, labels, start, end).to_pandas()
    if engine == "pandas":
        return compute_features_pandas(tx, labels, start, end)
    import polars as pl

    return compute_features_polars(pl.from_pandas(tx), pl.from_pandas(labels), start, end).to_pandas()


@pytest.fixture(scope="module")
def reference(world: tuple[pd.DataFrame, pd.DataFrame]) -> pd.DataFrame:
    return reference_features(*world, START, END)


@pytest.fixture(scope="module")
def duckdb_result(world, tmp_path_factory) -> pa.Table:
    return run_duckdb(tmp_path_factory.mktemp("lake"), *world)


# --------------------------------------------------------------------------- tests
def test_reference_sees_the_edge_cases(reference):
    """Guards the fixture: the hand-placed cases must land inside [START, END)."""
    ref = reference.set_index("event_id")
    assert "edge_same_instant" in ref.index and f"edge_{spec.USER_WINDOWS[0].suffix}_before" in ref.index
    assert ref[spec.MERCHANT_CB_COUNT].gt(0).any()
    assert ref[spec.SECONDS_SINCE_PREV_TXN].isna().any() and ref[spec.COUNTRY_CHANGED].eq(1).any()


def test_duckdb_schema_matches_spec(duckdb_result):
    assert duckdb_result.column_names == COLUMNS, "column order differs from docs/features.md: " + ", ".join(
        f"#{i} {got} (spec {want})"
        for i, (got, want) in enumerate(zip(duckdb_result.column_names, COLUMNS, strict=False))
        if got != want
    )
    for field in duckdb_result.schema:
        want = FEATURE_COLUMNS[field.name]
        ok = {
            "string": pa.types.is_string(field.type) or pa.types.is_large_string(field.type),
            "timestamp": pa.types.is_timestamp(field.type),
            "int64": field.type == pa.int64(),
            "int32": field.type == pa.int32(),
            "double": field.type == pa.float64(),
        }[want]
        assert ok, f"{field.name}: {field.type}, spec says {want}"


def test_duckdb_rows_are_the_window(duckdb_result, reference):
    got = set(duckdb_result.column("event_id").to_pylist())
    assert got == set(reference["event_id"]), (
        f"missing {sorted(set(reference['event_id']) - got)[:5]}, extra {sorted(got - set(reference['event_id']))[:5]}"
    )


@pytest.mark.parametrize("column", COLUMNS[1:])
def test_duckdb_matches_reference(duckdb_result, reference, column):
    problems = compare_features(reference, duckdb_result, ("reference", "duckdb"), columns=["event_id", column])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("engine", ["pandas", "polars"])
def test_bench_baselines_match_reference(world, reference, engine, tmp_path):
    got = run_engine(engine, tmp_path, *world)
    problems = compare_features(reference, got, ("reference", engine))
    assert not problems, "\n".join(problems)


def test_pandas_polars_duckdb_agree(world, duckdb_result, tmp_path):
    pandas_result = run_engine("pandas", tmp_path, *world)
    polars_result = run_engine("polars", tmp_path, *world)
    # Values only: column order is test_duckdb_schema_matches_spec's business.
    problems = compare_features(
        duckdb_result, pandas_result, ("duckdb", "pandas"), check_order=False
    ) + compare_features(duckdb_result, polars_result, ("duckdb", "polars"), check_order=False)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("engine", ["duckdb", "pandas", "polars"])
def test_point_in_time(world, engine, tmp_path):
    """A huge payment (and a chargeback labelled) at instant T changes no row at or before
    T: not the rows before it, not the existing payment at exactly T."""
    tx, labels = world
    x = _pick(tx, 5, 7)
    big = _add_tx(tx, x, "edge_future", x["event_ts"], amount=1e9, country="US")
    big_labels = _add_label(labels, x["merchant_id"], x["event_ts"] - pd.Timedelta(days=1), x["event_ts"], "cb_future")
    before = run_engine(engine, tmp_path / "a", tx, labels).set_index("event_id")
    after = run_engine(engine, tmp_path / "b", big, big_labels).set_index("event_id")
    assert "edge_future" in after.index
    after = after.drop(index="edge_future")
    assert set(before.index) == set(after.index)
    until_t = before.index[before["event_ts"] <= x["event_ts"]]
    assert x["event_id"] in until_t
    problems = compare_features(
        before.loc[until_t].reset_index(),
        after.loc[until_t].reset_index(),
        ("without", "with future event"),
        check_order=False,
    )
    assert not problems, "\n".join(problems)
    later = before.index.difference(until_t)
    user_later = later[before.loc[later, "user_id"] == x["user_id"]]
    longest = spec.user_amount_sum(spec.USER_WINDOWS[-1])
    assert (after.loc[user_later, longest] > before.loc[user_later, longest]).any(), (
        "the injected payment should show up in later rows"
    )


@pytest.mark.parametrize("ids", ["raw", "wide", "huge"])
def test_duckdb_independent_of_row_order_and_id_width(world, reference, ids, tmp_path):
    """Files whose rows are not in time order (a landing folder's), and ids too sparse to bucket
    by directly ("wide": re-numbered densely; "huge": beyond 2**40), give the reference's values."""
    tx, labels = world
    scale = {"raw": (1, 0), "wide": (70_001, 0), "huge": (1_000_003, 2**40)}[ids]

    def remap(s: pd.Series) -> pd.Series:
        return s * scale[0] + scale[1]

    shuffled = tx.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled = shuffled.assign(user_id=remap(shuffled["user_id"]), merchant_id=remap(shuffled["merchant_id"]))
    got = run_duckdb(tmp_path, shuffled, labels.assign(merchant_id=remap(labels["merchant_id"]))).to_pandas()
    got = got.assign(
        user_id=(got["user_id"] - scale[1]) // scale[0], merchant_id=(got["merchant_id"] - scale[1]) // scale[0]
    )
    problems = compare_features(reference, got, ("reference", f"duckdb, shuffled rows, {ids} ids"), check_order=False)
    assert not problems, "\n".join(problems)


def test_duckdb_windows_apart_from_the_lookback(
    world: tuple[pd.DataFrame, pd.DataFrame], reference, tmp_path, monkeypatch
):
    """The kernel walks the new-merchant window, the mean's and the lookback with one pointer
    while they are equal (the spec today) and apart otherwise: shorter ones take that way.
    (Only the lengths change here; the column names keep their import-time suffixes.)"""
    monkeypatch.setattr(spec, "NEW_MERCHANT", spec.days(2))
    monkeypatch.setattr(spec, "USER_MEAN", spec.days(5))
    shorter = reference_features(*world, START, END)
    for column in (spec.IS_NEW_MERCHANT, spec.AMOUNT_TO_USER_MEAN):
        assert (shorter[column] != reference[column]).any(), column
    got = run_duckdb(tmp_path, *world)
    problems = compare_features(
        shorter,
        got,
        ("reference", "duckdb"),
        columns=["event_id", spec.IS_NEW_MERCHANT, spec.AMOUNT_TO_USER_MEAN, spec.SECONDS_SINCE_PREV_TXN],
    )
    assert not problems, "\n".join(problems)


def test_bucket_order_is_a_stable_sort_by_key():
    import numpy as np

    from resources.engines import window_kernels as wk

    rng = np.random.default_rng(1)
    keys = rng.integers(0, 3 * 2**16, 10_000)
    order, starts = wk.bucket_order(keys, 3 * 2**16, np.zeros(0, np.int64))
    assert (order == np.argsort(keys, kind="stable")).all()
    assert (starts[1:] - starts[:-1] == np.bincount(keys, minlength=3 * 2**16)).all()
    base = rng.permutation(len(keys))  # "within a key, keep base's order"
    order, _ = wk.bucket_order(keys, 3 * 2**16, base)
    assert (order == base[np.argsort(keys[base], kind="stable")]).all()
