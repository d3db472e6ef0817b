"""Users' recent events in Feast's online store: what the stream worker reads and pushes.

`push` writes one row per user of the view `user_recent` (driftline.velocity.to_row) through
the push source `user_recent_push`. Two routes into the same online store, same rows:

- `route="push"`: `FeatureStore.push(..., to=PushMode.ONLINE)`, Feast's push API as a client
  would call it (DataFrame -> Arrow -> protos -> the provider's `online_write_batch`);
- `route="protos"` (default): the rows built directly as Feast `Value` protos and written with
  the provider's `online_write_batch`, the call `push` ends in. It skips the DataFrame and
  Arrow round trip, which costs more than the write itself (docs/streaming.md has figures).

`read` uses the provider's `online_read` (the call `get_online_features` makes) for the same
view, without the on-demand and response assembly a feature request needs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from driftline import spec, velocity
from driftline.velocity import RecentEvents

READ_BATCH = 500  # entity keys per online_read (sqlite's bound-variable limit is far above)


class VelocityStore:
    """The `user_recent` rows of the Feast repo at `feast_repo_path` (a folder holding
    feature_store.yaml, with the definitions applied)."""

    def __init__(self, feast_repo_path: str | Path, route: str = "protos"):
        from feast import FeatureStore

        if route not in ("protos", "push"):
            raise ValueError(f"route must be 'protos' or 'push', got {route!r}")
        self.route = route
        self.store = FeatureStore(repo_path=str(feast_repo_path))
        self.view = self.store.get_feature_view(spec.USER_RECENT_VIEW)
        self._provider = self.store._get_provider()  # Feast's own online-store route

    def read(self, user_ids: Iterable[int]) -> dict[int, RecentEvents]:
        """The stored state of each user that has one (users without are left out)."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        ids = list(dict.fromkeys(int(u) for u in user_ids))
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

    def push(self, states: Mapping[int, RecentEvents]) -> None:
        """Write each user's state as one row (replacing the stored one)."""
        if not states:
            return
        if self.route == "push":
            self._push_frame(states)
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
        from feast.protos.feast.types.Value_pb2 import DoubleList, Int64List, StringList, Value

        now = dt.datetime.now(dt.UTC)
        data = []
        for user_id, s in states.items():
            key = EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=int(user_id))])
            values = {
                "recent_event_ids": Value(string_list_val=StringList(val=s.event_ids)),
                "recent_event_us": Value(int64_list_val=Int64List(val=s.event_us)),
                "recent_amounts": Value(double_list_val=DoubleList(val=s.amounts)),
                "recent_merchants": Value(int64_list_val=Int64List(val=s.merchants)),
                "recent_countries": Value(string_list_val=StringList(val=_countries(s))),
                "evicted_us": Value() if s.evicted_us is None else Value(int64_val=s.evicted_us),
                "evicted_country": Value() if s.evicted_country is None else Value(string_val=s.evicted_country),
            }
            data.append((key, values, _row_ts(state=s).to_pydatetime(), now))
        self._provider.online_write_batch(config=self.store.config, table=self.view, data=data, progress=None)


def _countries(state: RecentEvents) -> list[str]:
    return [velocity.NO_COUNTRY if c is None else c for c in state.countries]


def _row_ts(state: RecentEvents):
    """The row's timestamp: the user's newest event time (UTC)."""
    import pandas as pd

    return pd.Timestamp(state.newest_us or 0, unit="us", tz="UTC")


def _python(value) -> object:
    """A Feast Value proto -> Python (lists for the list kinds, None when unset)."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    inner = getattr(value, kind)
    return list(inner.val) if kind.endswith("_list_val") else inner
