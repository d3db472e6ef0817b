"""driftline.velocity (recent events, read-time windows) and the v2 read paths built on it:
the Feast on-demand view's UDF, the push routes of streaming.velocity_store and seldon.online's
decoding of Feast's list values. tests/test_stream_parity.py holds the end-to-end parity."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pandas as pd
import pytest

from driftline import spec, velocity
from driftline.velocity import RecentEvents, apply, features_at
from tests.stream_helpers import applied_feast_repo, udf_names

ROOT = Path(__file__).resolve().parents[1]
H = 3_600_000_000  # one hour in micros
T0 = 1_790_000_000_000_000


def ev(event_id: str, us: int, amount: float = 1.0, merchant: int = 1, country: str | None = "DE") -> dict:
    return {"event_id": event_id, "event_us": us, "amount": amount, "merchant_id": merchant, "country": country}


def test_empty_state_serves_zeros_and_no_previous():
    out = features_at(None, T0, "DE")
    assert list(out) == spec.STREAM_FEATURES
    assert out[spec.user_txn_count(spec.USER_SHORT)] == 0
    assert out[spec.user_amount_sum(spec.USER_LONG)] == 0.0
    assert out[spec.SECONDS_SINCE_PREV_TXN] is None and out[spec.COUNTRY_CHANGED] == 0


def test_windows_are_half_open_and_exclude_the_same_instant():
    state, n = apply(None, [ev("a", T0 - H, 2.5), ev("b", T0 - H + 1, 1.25, 2), ev("c", T0, 9.0, 3, "FR")])
    assert n == 3
    out = features_at(state, T0, "FR")
    # [t - 1h, t): "a" at exactly t - 1h is in, "c" at t is not (same instant, as the engines).
    assert out[spec.user_txn_count(spec.USER_SHORT)] == 2
    assert out[spec.user_amount_sum(spec.USER_SHORT)] == 3.75
    assert out[spec.USER_DISTINCT_MERCHANTS] == 2
    assert out[spec.SECONDS_SINCE_PREV_TXN] == (H - 1) / 1e6
    assert out[spec.COUNTRY_CHANGED] == 1  # previous ("b", DE) vs the request's FR
    later = features_at(state, T0 + 1, "FR")
    assert later[spec.user_txn_count(spec.USER_SHORT)] == 2  # "a" left, "c" came in
    assert later[spec.COUNTRY_CHANGED] == 0


def test_apply_is_idempotent_and_order_free():
    rng = random.Random(4)
    events = [
        ev(f"e{i}", T0 + rng.randrange(0, 48 * H), round(rng.uniform(1, 50), 2), rng.randrange(9)) for i in range(60)
    ]
    once, n = apply(None, sorted(events, key=lambda e: e["event_us"]))
    assert n == 60
    shuffled = events[:]
    rng.shuffle(shuffled)
    again = None
    for k in range(0, 60, 7):  # micro-batches, out of order, each also replayed
        again, _ = apply(again, shuffled[k : k + 7])
        again, dup = apply(again, shuffled[k : k + 7])
        assert dup == 0
    assert again is not None
    assert again.event_us == once.event_us and sorted(again.event_ids) == sorted(once.event_ids)
    for t in range(T0, T0 + 50 * H, H // 3):
        assert features_at(again, t, "DE") == features_at(once, t, "DE")


def test_eviction_keeps_the_retention_and_the_latest_evicted_event():
    old = [ev("old1", T0, country="IT"), ev("old2", T0 + H, country="ES")]
    state, _ = apply(None, old)
    newest = T0 + H + spec.RECENT_RETENTION_US + 5
    state, n = apply(state, [ev("new", newest, country="DE")])
    assert n == 1 and state.event_ids == ["new"]
    assert (state.evicted_us, state.evicted_country) == (T0 + H, "ES")
    # The previous transaction of a read just before "new" is the evicted one (within 30 d).
    out = features_at(state, newest, "DE")
    assert out[spec.SECONDS_SINCE_PREV_TXN] == (newest - T0 - H) / 1e6 and out[spec.COUNTRY_CHANGED] == 1
    assert out[spec.user_txn_count(spec.USER_LONG)] == 0
    # A replay of an evicted event changes nothing; a read beyond the look-back sees no previous.
    state, n = apply(state, [old[0], old[1]])
    assert n == 0 and (state.evicted_us, state.evicted_country) == (T0 + H, "ES")
    assert features_at(state, newest + spec.LOOKBACK.micros + 1, "DE")[spec.SECONDS_SINCE_PREV_TXN] is None


def test_late_events_are_applied_when_they_arrive():
    state, _ = apply(None, [ev("a", T0 + 2 * H)])
    late = T0 + 2 * H - spec.ALLOWED_LATENESS_US - 1  # later than the allowed lateness
    before = features_at(state, T0 + 2 * H, "DE")[spec.user_txn_count(spec.USER_SHORT)]
    assert isinstance(before, int)
    state, n = apply(state, [ev("late", late, 4.0)])
    assert n == 1 and state.event_ids == ["late", "a"]
    assert features_at(state, T0 + 2 * H, "DE")[spec.user_txn_count(spec.USER_SHORT)] == before + 1
    # Older than the whole retention: only "previous transaction" can still see it.
    state, n = apply(state, [ev("ancient", T0 - spec.RECENT_RETENTION_US, country="PT")])
    assert n == 1 and "ancient" not in state.event_ids and state.evicted_country == "PT"


def test_event_ts_datetimes_are_accepted():
    import datetime as dt

    state, _ = apply(None, [{"event_id": "x", "event_ts": dt.datetime(2026, 10, 1, 12), "amount": 3, "merchant_id": 2}])
    assert state.event_us == [velocity.epoch_us(dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC))]
    assert state.countries == [None]


def test_row_round_trip():
    state = RecentEvents(["a", "b"], [T0, T0 + 1], [1.5, 2.25], [3, 4], ["DE", None], None, None)
    row = velocity.to_row(state)
    assert set(row) == set(spec.USER_RECENT_FIELDS)
    assert velocity.from_row(row) == state
    state.evicted_us, state.evicted_country = T0 - 5, "FR"
    assert velocity.from_row(velocity.to_row(state)) == state
    assert velocity.from_row(dict.fromkeys(spec.USER_RECENT_FIELDS)) is None


def test_feast_udf_names_are_the_spec():
    reads, writes = udf_names(ROOT / "resources" / "feast_repo" / "fresh.py", spec.ON_DEMAND_VIEW_V2)
    assert writes == set(spec.ON_DEMAND_FEATURES_V2)
    assert reads <= set(spec.REQUEST_FIELDS) | set(spec.USER_RECENT_FIELDS) | set(spec.USER_STATE_FEATURES), reads


def test_feast_udf_equals_features_at():
    """The UDF's literal windows and semantics are features_at's, on random states."""
    from resources.feast_repo.fresh import fraud_stream_features

    rng = random.Random(9)
    rows, expected = [], []
    for u in range(40):
        events = [
            ev(f"{u}-{i}", T0 + rng.randrange(-9 * 24 * H, 0), round(rng.uniform(0.1, 99), 2), rng.randrange(6))
            for i in range(rng.randrange(0, 30))
        ]
        state, _ = apply(None, events) if events else (RecentEvents(), 0)
        if u % 5 == 0:
            state.evicted_us, state.evicted_country = T0 - 20 * 24 * H, "IT"
        t = T0 - rng.randrange(0, 2 * H)
        country = rng.choice(["DE", "FR", None])
        rows.append(
            {
                **velocity.to_row(state),
                "event_epoch_s": t / 1e6,
                "country": country,
                "amount": 5.0,
                "user_mean_amount_30d": 2.5,
            }
        )
        expected.append(features_at(state, t, country))
    out = fraud_stream_features(pd.DataFrame(rows))
    for i, want in enumerate(expected):
        for name, value in want.items():
            got = out[name].iloc[i]
            assert pd.isna(got) if value is None else got == value, (i, name, got, value)
    assert (out[spec.AMOUNT_TO_USER_MEAN] == 2.0).all()


@pytest.fixture(scope="module")
def feast_repo(tmp_path_factory):
    return applied_feast_repo(tmp_path_factory.mktemp("velocity"))


def _states(n_users: int) -> dict[int, RecentEvents]:
    rng = random.Random(2)
    states = {}
    for u in range(n_users):
        events = [
            ev(
                f"{u}-{i}",
                T0 - rng.randrange(0, 8 * 24 * H),
                round(rng.uniform(0.1, 99), 2),
                rng.randrange(50),
                rng.choice(["DE", "FR"]),
            )
            for i in range(rng.randrange(1, 40))
        ]
        states[u], _ = apply(None, events)
    states[0].evicted_us, states[0].evicted_country = T0 - 25 * 24 * H, "IT"
    return states


def test_push_routes_write_the_same_rows(feast_repo):
    """Feast's push, the provider's write and the direct sqlite upsert leave the same bytes in
    Feast's table (key, value, value_text, event_ts): Feast's own reads cannot tell them apart."""
    import sqlite3

    from streaming.feast_sqlite import FeastSqliteTable
    from streaming.velocity_store import VelocityStore

    states = _states(30)
    states[1].countries[0] = None  # a null country, and a user with nothing but the evicted marker
    states[2] = RecentEvents(evicted_us=T0 - 9 * 24 * H, evicted_country="PT")
    written = {}
    for route in ("push", "protos", "sqlite"):
        store = VelocityStore(feast_repo, route=route)
        table = FeastSqliteTable(store.store, store.view, "user_id")
        with sqlite3.connect(table.path) as conn:
            conn.execute(f'DELETE FROM "{table.table}"')
        store.push(states)
        assert store.read([*states, 10_000]) == states  # users without a row are left out
        with sqlite3.connect(table.path) as conn:
            written[route] = conn.execute(
                f'SELECT entity_key, feature_name, value, value_text, event_ts FROM "{table.table}" ORDER BY 1, 2'
            ).fetchall()
        assert len(written[route]) == 30 * len(spec.USER_RECENT_FIELDS)
    assert written["sqlite"] == written["protos"] == written["push"]
    assert VelocityStore(feast_repo).route == "sqlite"  # "auto" on a sqlite online store
    with pytest.raises(ValueError, match="route"):
        VelocityStore(feast_repo, route="kafka")


def test_sqlite_route_rewrites_the_evicted_marker_only_when_it_moves(feast_repo):
    """After a read, the sqlite route skips the two evicted rows of users whose marker did not
    change; Feast's own read (the provider's online_read) still sees every user's state."""
    from streaming.velocity_store import VelocityStore

    states = {100 + u: s for u, s in _states(20).items()}
    store = VelocityStore(feast_repo, route="sqlite")
    assert store.read(states) == {}  # none stored yet
    store.push(states)
    feast = VelocityStore(feast_repo, route="protos")
    assert feast.read(states) == states
    first = next(iter(states))
    states[first], _ = apply(states[first], [ev("later", T0 + 40 * 24 * H, country="NL")])  # evicts all
    store.push(states)
    assert feast.read(states) == states and states[first].evicted_us is not None
    assert VelocityStore(feast_repo, route="sqlite").read(states) == states


def test_entity_keys_are_feasts(feast_repo):
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from streaming.velocity_store import VelocityStore

    store = VelocityStore(feast_repo, route="sqlite")
    assert store._table is not None
    for user_id in (0, 7, -3, 2**40, 2**63 - 1):
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=user_id)])
        assert store._table.entity_key(user_id) == serialize_entity_key(key, entity_key_serialization_version=3)


def test_feast_service_v2_equals_the_in_process_reader(feast_repo):
    """Feast's own read (the on-demand view rehydrated from source, as `feast serve` runs it)
    and seldon.online's sqlite reader serve the same v2 features."""
    from feast import FeatureStore

    from seldon.online import feature_source
    from streaming.velocity_store import VelocityStore

    states = _states(30)
    VelocityStore(feast_repo).push(states)
    rng = random.Random(5)
    entities = {
        "user_id": [*range(30), 99_999],
        "merchant_id": [1] * 31,
        "amount": [10.0] * 31,
        "event_epoch_s": [(T0 + rng.randrange(-H, H)) / 1e6 for _ in range(31)],
        "country": [rng.choice(["DE", "FR", None]) for _ in range(31)],
    }
    mine = feature_source(f"file://{feast_repo}", service=spec.FEATURE_SERVICE_V2).features(entities)
    fs = FeatureStore(repo_path=str(feast_repo))
    rows = [dict(zip(entities, values, strict=True)) for values in zip(*entities.values(), strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = fs.get_online_features(
            features=fs.get_feature_service(spec.FEATURE_SERVICE_V2), entity_rows=rows
        ).to_dict()
    assert set(spec.SERVED_FEATURES_V2) <= set(theirs)
    for name in spec.SERVED_FEATURES_V2:
        assert mine[name] == theirs[name], name
    assert mine[spec.user_txn_count(spec.USER_LONG)][0] > 0


def test_the_default_service_is_still_v1(feast_repo):
    from seldon.online import FeatureServerClient, OnlineStoreReader, feature_source

    reader = feature_source(f"file://{feast_repo}")
    assert isinstance(reader, OnlineStoreReader) and reader.service == spec.FEATURE_SERVICE
    assert isinstance(feature_source("http://localhost:6566", spec.FEATURE_SERVICE_V2), FeatureServerClient)
    with pytest.raises(ValueError, match="unknown feature service"):
        feature_source(f"file://{feast_repo}", service="fraud_model_v9")


def test_decode_feast_list_values():
    from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList, Value

    from seldon.online import decode_value

    cases = [
        (Value(string_list_val=StringList(val=["a", "", "ünï"])), ["a", "", "ünï"]),
        (Value(int64_list_val=Int64List(val=[0, -1, 2**62, -(2**63)])), [0, -1, 2**62, -(2**63)]),
        (Value(double_list_val=DoubleList(val=[0.1, -2.5, 1e300])), [0.1, -2.5, 1e300]),
        (Value(int64_list_val=Int64List(val=[])), []),
        (Value(int64_val=-7), -7),
        (Value(), None),
    ]
    for value, want in cases:
        assert decode_value(value.SerializeToString()) == want


def test_feast_serve_answers_service_v2_like_the_in_process_reader(feast_repo):
    """The `http://` online path: `feast serve` of the repo, asked for fraud_model_v2."""
    import socket
    import subprocess
    import sys
    import time

    from seldon.online import Unavailable, feature_source
    from streaming.velocity_store import VelocityStore

    VelocityStore(feast_repo).push(_states(5))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feast_cli = Path(sys.executable).with_name("feast")
    server = subprocess.Popen(
        [str(feast_cli), "-c", str(feast_repo), "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    entities = {
        "user_id": [0, 1, 4, 77],
        "merchant_id": [1, 2, 3, 4],
        "amount": [5.0, 1.0, 2.0, 3.0],
        "event_epoch_s": [T0 / 1e6, (T0 - H) / 1e6, (T0 + 5) / 1e6, T0 / 1e6],
        "country": ["DE", None, "FR", "DE"],
    }
    try:
        client = feature_source(f"http://127.0.0.1:{port}", service=spec.FEATURE_SERVICE_V2)
        deadline = time.monotonic() + 120
        while True:
            try:
                served = client.features(entities)
                break
            except Unavailable:
                assert server.poll() is None and time.monotonic() < deadline, "feast serve did not come up"
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(30)
    mine = feature_source(f"file://{feast_repo}", service=spec.FEATURE_SERVICE_V2).features(entities)
    for name in spec.SERVED_FEATURES_V2:
        assert served[name] == mine[name], name
