"""Users' recent events in Feast's online store: what the stream worker reads and pushes.

`push` writes one row per user of the view `user_recent` (driftline.velocity.to_row), the rows
of the push source `user_recent_push`. Routes into the same online store, same rows, chosen
by `route`:

- `"sqlite"`: for Feast's sqlite online store, the rows written straight into Feast's own
  table with one `executemany` upsert per micro-batch, and read with one `SELECT`
  (streaming/feast_sqlite.py). Feast's `online_write_batch` runs one statement per feature per
  row, which is most of a micro-batch's cost at stream rates (docs/streaming.md has figures).
  The two `evicted_*` rows of a user are rewritten only when they differ from what this store
  last read or wrote for that user (a marker that rarely moves); an absent row reads as null,
  as in Feast;
- `"protos"`: any online store (Redis in production): the rows built as Feast `Value` protos
  and written with the provider's `online_write_batch`, the call `FeatureStore.push` ends in,
  without its DataFrame -> Arrow -> protos round trip; read with the provider's `online_read`;
- `"push"`: `FeatureStore.push(..., to=PushMode.ONLINE)`, Feast's push API exactly as any
  client would call it (reads as `"protos"`);
- `"auto"` (default): `"sqlite"` where the repo's online store is a plain sqlite one, else
  `"protos"`.

Every route leaves the bytes Feast itself would write, so `get_online_features`, `feast serve`
and seldon.online read the same state whichever wrote it (tests/test_velocity.py).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from driftline import spec, velocity
from driftline.velocity import RecentEvents

ROUTES = ("auto", "sqlite", "protos", "push")
READ_BATCH = 500  # entity keys per provider online_read
KNOWN_EVICTED = 1_000_000  # users whose stored evicted marker the sqlite route remembers


class VelocityStore:
    """The `user_recent` rows of the Feast repo at `feast_repo_path` (a folder holding
    feature_store.yaml, with the definitions applied)."""

    def __init__(self, feast_repo_path: str | Path, route: str = "auto"):
        from feast import FeatureStore

        from streaming import feast_sqlite

        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}; got {route!r}")
        self.store = FeatureStore(repo_path=str(feast_repo_path))
        self.view = self.store.get_feature_view(spec.USER_RECENT_VIEW)
        self._provider = self.store._get_provider()  # Feast's own online-store route
        sqlite_ok = feast_sqlite.supported(self.store.config)
        if route == "sqlite" and not sqlite_ok:
            raise ValueError(
                f"route 'sqlite' needs a plain sqlite online store, not {self.store.config.online_store!r}"
            )
        self.route = ("sqlite" if sqlite_ok else "protos") if route == "auto" else route
        self._table = None
        if self.route == "sqlite":
            self._table = feast_sqlite.FeastSqliteTable(self.store, self.view, "user_id")
        # (evicted_us, evicted_country) as this store last read or wrote them, per user: the
        # sqlite route rewrites those two rows only when they change (they rarely do: a user's
        # marker moves on eviction only), two rows in seven fewer. A user not in it gets all seven.
        self._stored_evicted: dict[int, tuple[int | None, str | None]] = {}

    # ------------------------------------------------------------------ read
    def read(self, user_ids: Iterable[int]) -> dict[int, RecentEvents]:
        """The stored state of each user that has one (users without are left out)."""
        ids = list(dict.fromkeys(int(u) for u in user_ids))
        if self._table is not None:
            return self._read_sqlite(ids)
        return self._read_provider(ids)

    def _read_sqlite(self, ids: list[int]) -> dict[int, RecentEvents]:
        from feast.protos.feast.types.Value_pb2 import Value

        assert self._table is not None
        keys = [self._table.entity_key(u) for u in ids]
        rows = self._table.read(keys)
        out: dict[int, RecentEvents] = {}
        value = Value()
        self._forget_evicted(len(ids))
        for user_id, key in zip(ids, keys, strict=True):
            found = rows.get(key)
            if not found:
                self._stored_evicted[user_id] = (None, None)  # absent rows read as nulls
                continue
            decoded = {}
            for name, blob in found.items():
                value.ParseFromString(blob)
                decoded[name] = _python(value)
            state = velocity.from_row(decoded)
            if state is not None:
                out[user_id] = state
            evicted_us, evicted_country = decoded.get("evicted_us"), decoded.get("evicted_country")
            self._stored_evicted[user_id] = (
                None if evicted_us is None else int(evicted_us),  # pyright: ignore[reportArgumentType]
                None if evicted_country in (None, velocity.NO_COUNTRY) else str(evicted_country),
            )
        return out

    def _forget_evicted(self, coming: int) -> None:
        if len(self._stored_evicted) + coming > KNOWN_EVICTED:
            self._stored_evicted.clear()

    def _read_provider(self, ids: list[int]) -> dict[int, RecentEvents]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        out: dict[int, RecentEvents] = {}
        for b in range(0, len(ids), READ_BATCH):
            chunk = ids[b : b + READ_BATCH]
            keys = [EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=u)]) for u in chunk]
            rows = self._provider.online_read(config=self.store.config, table=self.view, entity_keys=keys)
            for user_id, (_, values) in zip(chunk, rows, strict=True):
                if values is None:
                    continue
                state = velocity.from_row({name: _python(v) for name, v in values.items()})
                if state is not None:
                    out[user_id] = state
        return out

    # ------------------------------------------------------------------ write
    def push(self, states: Mapping[int, RecentEvents]) -> None:
        """Write each user's state as one row (replacing the stored one)."""
        if not states:
            return
        if self.route == "push":
            self._push_frame(states)
        elif self.route == "sqlite":
            self._write_sqlite(states)
        else:
            self._write_protos(states)

    def _push_frame(self, states: Mapping[int, RecentEvents]) -> None:
        import pandas as pd
        from feast.data_source import PushMode

        rows = []
        for user_id, state in states.items():
            row: dict[str, Any] = velocity.to_row(state)
            row["user_id"] = int(user_id)
            row[spec.RECENT_TS] = _row_ts(state)
            rows.append(row)
        self.store.push(spec.USER_RECENT_PUSH, pd.DataFrame(rows), to=PushMode.ONLINE)

    def _write_protos(self, states: Mapping[int, RecentEvents]) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        now = dt.datetime.now(dt.UTC)
        data = []
        for user_id, s in states.items():
            key = EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=int(user_id))])
            data.append((key, _values(s), _row_ts(s), now))
        self._provider.online_write_batch(config=self.store.config, table=self.view, data=data, progress=None)

    def _write_sqlite(self, states: Mapping[int, RecentEvents]) -> None:
        """Feast's rows: per user and feature (key, name, Value bytes, value_text, event_ts,
        created_ts), as `online_write_batch` makes them; one upsert for the batch."""
        from streaming.feast_sqlite import sqlite_ts

        assert self._table is not None
        created = sqlite_ts(velocity.epoch_us(dt.datetime.now(dt.UTC)))
        encode = _encoder()
        known = self._stored_evicted
        rows = []
        for user_id, s in states.items():
            key = self._table.entity_key(int(user_id))
            event_ts = sqlite_ts(s.newest_us or 0)
            unchanged = known.get(user_id) == (s.evicted_us, s.evicted_country)
            rows.extend(
                (key, name, value, text, event_ts, created)
                for name, value, text in encode(s)
                if not (unchanged and name in _EVICTED)
            )
        self._table.upsert(rows)
        self._forget_evicted(len(states))
        for user_id, s in states.items():
            known[user_id] = (s.evicted_us, s.evicted_country)


_EVICTED = ("evicted_us", "evicted_country")


def _values(s: RecentEvents) -> dict[str, Any]:
    """The row's Feast `Value` protos, by feature name (spec.USER_RECENT_FIELDS)."""
    from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList, Value

    return {
        "recent_event_ids": Value(string_list_val=StringList(val=s.event_ids)),
        "recent_event_us": Value(int64_list_val=Int64List(val=s.event_us)),
        "recent_amounts": Value(double_list_val=DoubleList(val=s.amounts)),
        "recent_merchants": Value(int64_list_val=Int64List(val=s.merchants)),
        "recent_countries": Value(string_list_val=StringList(val=_countries(s))),
        "evicted_us": Value() if s.evicted_us is None else Value(int64_val=s.evicted_us),
        "evicted_country": Value() if s.evicted_country is None else Value(string_val=s.evicted_country),
    }


@functools.cache
def _encoder():
    """`encode(state)` -> [(feature, serialized Value, value_text)]: the bytes of `_values`'
    protos' SerializeToString (tests/test_velocity.py checks), made with one proto per list
    (its body wrapped in the Value field's tag and length) instead of two, and none for nulls."""
    from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList, Value

    def field(number: int, body: bytes) -> bytes:  # a length-delimited field of Value
        return bytes((number << 3 | 2,)) + _varint(len(body)) + body

    def encode(s: RecentEvents) -> list[tuple[str, bytes, str | None]]:
        countries = _countries(s)
        ev_us, ev_country = s.evicted_us, s.evicted_country
        return [
            ("recent_event_ids", field(12, StringList(val=s.event_ids).SerializeToString()), None),
            ("recent_event_us", field(14, Int64List(val=s.event_us).SerializeToString()), None),
            ("recent_amounts", field(15, DoubleList(val=s.amounts).SerializeToString()), None),
            ("recent_merchants", field(14, Int64List(val=s.merchants).SerializeToString()), None),
            ("recent_countries", field(12, StringList(val=countries).SerializeToString()), None),
            (
                "evicted_us",
                b"" if ev_us is None else Value(int64_val=ev_us).SerializeToString(),
                None if ev_us is None else str(ev_us),
            ),
            (
                "evicted_country",
                b"" if ev_country is None else Value(string_val=ev_country).SerializeToString(),
                ev_country,
            ),
        ]

    return encode


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _countries(state: RecentEvents) -> list[str]:
    return [velocity.NO_COUNTRY if c is None else c for c in state.countries]


_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _row_ts(state: RecentEvents) -> dt.datetime:
    """The row's timestamp: the user's newest event time (UTC)."""
    return _EPOCH_UTC + dt.timedelta(microseconds=state.newest_us or 0)


def _python(value) -> object:
    """A Feast Value proto -> Python (lists for the list kinds, None when unset)."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    inner = getattr(value, kind)
    return list(inner.val) if kind.endswith("_list_val") else inner
