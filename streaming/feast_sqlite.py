"""One feature view's table in Feast's sqlite online store, written and read directly.

Feast's `online_write_batch` for sqlite runs one `INSERT ... ON CONFLICT` per feature per row;
at stream rates that loop, not sqlite, is the cost. This module writes the very rows Feast
writes (same table, key and value bytes, timestamps) with one `executemany` per micro-batch,
and reads a batch of entity keys with one `SELECT`. Everything Feast-specific comes from the
installed Feast: the table name (`_table_id`), the entity key layout (checked against
`serialize_entity_key` when opened) and the `Value` protos the caller serializes; so Feast's
own reads (`get_online_features`, `feast serve`) and seldon.online see exactly what they would
have seen after a `push`. Only the plain sqlite store is handled (`supported`): with
`vector_enabled` or `enable_openai_compatible_store` Feast writes extra columns, so the caller
takes Feast's own write path instead.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path

CACHE_KIB = 256 * 1024  # sqlite's page cache for the writer: the table's index pages stay in memory
READ_CHUNK = 5_000  # entity keys per SELECT (below sqlite's bound-variable limit of 32,766)
_EPOCH = dt.datetime(1970, 1, 1)
_INT64_VALUE = struct.Struct("<IIq")  # (ValueType.INT64, 8, value): a v3 entity key's value part


def supported(config) -> bool:
    """Whether `config` (a Feast RepoConfig) has a plain sqlite online store this module writes."""
    online = config.online_store
    kind = str(getattr(online, "type", ""))
    return (
        (kind == "sqlite" or kind.endswith("SqliteOnlineStore"))
        and not getattr(online, "vector_enabled", False)
        and not getattr(online, "enable_openai_compatible_store", False)
    )


def sqlite_ts(epoch_us: int) -> int:
    """A UTC time as Feast's sqlite store keeps `event_ts` / `created_ts`: Feast registers a
    sqlite3 adapter that stores a datetime as `int(naive_utc.timestamp())` (whole seconds; read
    back with `datetime.fromtimestamp`), so the same expression is used here."""
    return int((_EPOCH + dt.timedelta(microseconds=epoch_us)).timestamp())


class FeastSqliteTable:
    """The online table of `view` (a Feast FeatureView) of the FeatureStore `store`, with one
    INT64 join key (`join_key`)."""

    def __init__(self, store, view, join_key: str):
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.sqlite import _table_id
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value, ValueType

        config = store.config
        if not supported(config):
            raise ValueError(f"online store {config.online_store.type!r} is not a plain sqlite store")
        versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))
        self.table = _table_id(config.project, view, versioning)
        path = Path(config.online_store.path)
        self.path = path if path.is_absolute() or not config.repo_path else Path(config.repo_path) / path
        self._version = config.entity_key_serialization_version
        self._join_key = join_key

        def feast_key(value: int) -> bytes:
            key = EntityKey(join_keys=[join_key], entity_values=[Value(int64_val=value)])
            return serialize_entity_key(key, entity_key_serialization_version=self._version)

        self._feast_key = feast_key
        self._int64 = int(ValueType.INT64)
        # The key is a fixed prefix (count, name) + the value part; taken from Feast itself and
        # kept only if it reproduces Feast's bytes (else every key goes through Feast).
        suffix = _INT64_VALUE.pack(ValueType.INT64, 8, 0)
        sample = feast_key(0)
        self._prefix: bytes | None = sample[: -len(suffix)] if sample.endswith(suffix) else None
        if self._prefix is not None and any(
            self.entity_key(v) != feast_key(v) for v in (1, -1, 2**62, -(2**63), 123_456_789)
        ):
            self._prefix = None
        self._conn: sqlite3.Connection | None = None

    def entity_key(self, value: int) -> bytes:
        """Feast's `serialize_entity_key` of {join_key: value} (INT64)."""
        if self._prefix is None:
            return self._feast_key(value)
        return self._prefix + _INT64_VALUE.pack(self._int64, 8, value)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # this connection's page cache
        return self._conn

    def upsert(self, rows: list[tuple]) -> None:
        """Rows of (entity_key, feature_name, value bytes, value_text, event_ts, created_ts),
        written in one transaction (Feast's upsert, one statement for the batch)."""
        sql = (
            f'INSERT INTO "{self.table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
        )
        with self.conn:
            self.conn.executemany(sql, sorted(rows))  # in key order: each index page touched once

    def read(self, keys: Sequence[bytes]) -> dict[bytes, dict[str, bytes]]:
        """{entity key: {feature name: value bytes}} of the keys that have a row."""
        out: dict[bytes, dict[str, bytes]] = {}
        for b in range(0, len(keys), READ_CHUNK):
            chunk = keys[b : b + READ_CHUNK]
            rows = self.conn.execute(
                f'SELECT entity_key, feature_name, value FROM "{self.table}" '
                f"WHERE entity_key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for key, name, value in rows:
                out.setdefault(key, {})[name] = value
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
