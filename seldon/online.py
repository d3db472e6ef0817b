"""Raw transactions -> feature columns, with the user's online features from the Feast online store.

Two ways to the same online store, chosen by the graph parameter `feast_url`:
- `http(s)://host:port`: the Feast feature server (`feast serve`, `/get-online-features` of
  the model's service, `fraud_model_v1` or `fraud_model_v2`), which also computes the
  on-demand features;
- `file:///path/to/feast/repo` (a repo whose `feature_store.yaml` has a sqlite online store):
  `OnlineStoreReader` reads Feast's own sqlite tables in-process (the rows `feast serve` would
  read, decoded the same way) and computes the on-demand features with `on_demand`, a numpy
  transcription of the repo's pandas UDF. No HTTP hop and no pandas per request: well under a
  millisecond instead of the feature server's ~20 ms (docs/serving.md). tests/test_serving_skew.py
  holds both ways to batch scoring of the training frame.

For `fraud_model_v2` the reader also decodes each user's recent events (the `user_recent`
view's arrays) and finishes the velocity windows for the request's time with
`driftline.velocity.features_at`, as the v2 on-demand view does (tests/test_stream_parity.py).
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import struct
import threading
from pathlib import Path

import numpy as np

from driftline import spec, velocity
from driftline.spec import ENTITY_KEYS, FEATURE_SERVICE, FEATURE_SERVICE_V2

REQUIRED = (*ENTITY_KEYS, "amount", "country")
SERVICES = (FEATURE_SERVICE, FEATURE_SERVICE_V2)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class BadRequest(ValueError):
    """Caller error: answered with HTTP 400 and this message."""


class Unavailable(RuntimeError):
    """A dependency (the feature server) failed: answered with HTTP 503."""


def epoch_seconds(value) -> float:
    """Same number as resources.feast_repo.schema.epoch_seconds (naive means UTC)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRequest(f"event_ts must be an ISO timestamp, got {type(value).__name__}")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"event_ts {value[:40]!r} is not an ISO timestamp") from None
    ts = ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
    return (ts - _EPOCH) / dt.timedelta(seconds=1)


def transactions(json_data) -> list[dict]:
    """Accept one transaction, a list of them, or {"transactions": [...]}."""
    if isinstance(json_data, dict) and "transactions" in json_data:
        json_data = json_data["transactions"]
    rows = [json_data] if isinstance(json_data, dict) else json_data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest('jsonData must be a transaction object, a list of them or {"transactions": [...]}')
    return rows


def request_entities(rows: list[dict]) -> dict[str, list]:
    """Entity keys and request fields, validated, as the feature server wants them."""
    out: dict[str, list] = {k: [] for k in (*ENTITY_KEYS, *spec.REQUEST_FIELDS)}
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row] + (
            [] if "event_epoch_s" in row or "event_ts" in row else ["event_ts"]
        )
        if missing:
            raise BadRequest(f"transaction {i} lacks {missing}")
        for key in ENTITY_KEYS:
            if isinstance(row[key], bool) or not isinstance(row[key], int):
                raise BadRequest(f"transaction {i}: {key} must be an integer")
            out[key].append(row[key])
        amount = row["amount"]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
            raise BadRequest(f"transaction {i}: amount must be a finite number")
        out["amount"].append(float(amount))
        out["event_epoch_s"].append(epoch_seconds(row.get("event_epoch_s", row.get("event_ts"))))
        country = row["country"]
        if country is not None and not isinstance(country, str):
            raise BadRequest(f"transaction {i}: country must be a string")
        out["country"].append(country)
    return out


def feature_source(url: str, service: str = FEATURE_SERVICE):
    """The online-features client of `service` for a `feast_url` graph parameter."""
    if service not in SERVICES:
        raise ValueError(f"unknown feature service {service!r}; expected one of {list(SERVICES)}")
    if url.startswith(("http://", "https://")):
        return FeatureServerClient(url, service=service)
    return OnlineStoreReader(url.removeprefix("file://"), service=service)


class FeatureServerClient:
    """A keep-alive HTTP client of `feast serve` (one per worker process)."""

    def __init__(self, url: str, timeout_s: float = 2.0, service: str = FEATURE_SERVICE):
        import requests

        self.service = service
        self.url = url.rstrip("/") + "/get-online-features"
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def features(self, entities: dict[str, list]) -> dict[str, list]:
        import requests

        body = {"feature_service": self.service, "entities": entities}
        try:
            resp = self.session.post(self.url, json=body, timeout=self.timeout_s)
        except requests.RequestException as err:
            raise Unavailable(f"feature server unreachable: {type(err).__name__}") from None
        if resp.status_code != 200:
            raise Unavailable(f"feature server answered {resp.status_code}: {resp.text[:200]}")
        payload = resp.json()
        names = payload["metadata"]["feature_names"]
        return {name: result["values"] for name, result in zip(names, payload["results"], strict=False)}

    def warm_up(self):
        """One lookup at load: the server's first request (ODFV rehydration, registry) is slow."""
        self.features({"user_id": [0], "merchant_id": [0], "amount": [1.0], "event_epoch_s": [0.0], "country": [None]})


def raw_columns(rows: list[dict], served: dict[str, list], feature_names: list[str]) -> dict[str, list]:
    """Model columns: request-time fields from the transaction, the rest from the feature server."""
    columns = {}
    for name in feature_names:
        if name in served and name not in ("amount", "country"):
            columns[name] = served[name]
        else:
            columns[name] = [row.get(name) for row in rows]
    return columns


# ------------------------------------------------------------------ the online store, read in-process
_STRING, _INT64 = 2, 4  # feast ValueType of the entity key's name and value (serialization version 3)


def entity_key(join_key: str, value: int) -> bytes:
    """feast.infra.key_encoding_utils.serialize_entity_key, version 3, one INT64 join key."""
    name = join_key.encode()
    return struct.pack("<III", 1, _STRING, len(name)) + name + struct.pack("<IIq", _INT64, 8, value)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        b = buf[i]
        i += 1
        out |= (b & 0x7F) << shift
        if b < 0x80:
            return out, i
        shift += 7


_STRING_LIST, _INT64_LIST, _DOUBLE_LIST = 12, 14, 15


def _list(buf: bytes, field: int) -> list:
    """The body of a StringList / Int64List / DoubleList (`repeated ... val = 1`, numbers packed
    or not) -> Python list."""
    out: list = []
    i, end = 0, len(buf)
    while i < end:
        key, i = _varint(buf, i)
        if key >> 3 != 1:
            raise ValueError(f"unsupported feast list (inner field {key >> 3})")
        wire = key & 7
        if wire == 2:
            n, i = _varint(buf, i)
            chunk, i = buf[i : i + n], i + n
            if field == _STRING_LIST:
                out.append(chunk.decode())
            elif field == _DOUBLE_LIST:
                out.extend(struct.unpack(f"<{n // 8}d", chunk))
            else:
                j = 0
                while j < n:
                    raw, j = _varint(chunk, j)
                    out.append(raw - (1 << 64) if raw >= 1 << 63 else raw)
        elif wire == 0 and field == _INT64_LIST:
            raw, i = _varint(buf, i)
            out.append(raw - (1 << 64) if raw >= 1 << 63 else raw)
        elif wire == 1 and field == _DOUBLE_LIST:
            out.append(struct.unpack_from("<d", buf, i)[0])
            i += 8
        else:
            raise ValueError(f"unsupported feast list (wire type {wire})")
    return out


def decode_value(buf: bytes):
    """A serialized feast.types.Value -> Python value (None when null / unset; a list for the
    string, int64 and double lists).

    Field numbers of feast/protos/feast/types/Value.proto: 2 string, 3 int32, 4 int64, 5 double,
    6 float, 7 bool, 12 string list, 14 int64 list, 15 double list, 19 null.
    """
    if not buf:
        return None
    key, i = _varint(buf, 0)
    field, wire = key >> 3, key & 7
    if wire == 2 and field in (_STRING_LIST, _INT64_LIST, _DOUBLE_LIST):
        n, i = _varint(buf, i)
        return _list(buf[i : i + n], field)
    if wire == 0:
        raw, _ = _varint(buf, i)
        if field in (3, 4):
            return raw - (1 << 64) if raw >= 1 << 63 else raw
        if field == 7:
            return bool(raw)
        if field == 19:
            return None
    elif wire == 1 and field == 5:
        return struct.unpack_from("<d", buf, i)[0]
    elif wire == 5 and field == 6:
        return struct.unpack_from("<f", buf, i)[0]
    elif wire == 2 and field == 2:
        n, i = _varint(buf, i)
        return buf[i : i + n].decode()
    raise ValueError(f"unsupported feast Value (field {field}, wire type {wire})")


def on_demand(amount, event_epoch_s, country, user_mean_amount_30d, user_last_txn_epoch_s, user_last_country) -> dict:
    """`fraud_request_features` (resources/feast_repo/definitions.py) in numpy, column for column."""

    def num(values):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    amount, mean, epoch, last = num(amount), num(user_mean_amount_30d), num(event_epoch_s), num(user_last_txn_epoch_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = amount / np.where(mean != 0, mean, np.nan)
    # One value per request row in both (the rows' own countries and their users' last ones).
    known = np.array(
        [c is not None and lc is not None for c, lc in zip(country, user_last_country, strict=True)], dtype=bool
    )
    differs = np.array([str(c) != str(lc) for c, lc in zip(country, user_last_country, strict=True)], dtype=bool)
    whole = np.floor(np.where(np.isnan(epoch), 0.0, epoch))
    return {
        spec.AMOUNT_TO_USER_MEAN: _floats(ratio),
        spec.SECONDS_SINCE_LAST_TXN: _floats(epoch - last),
        spec.COUNTRY_CHANGED: (known & differs).astype(np.int64).tolist(),
        spec.HOUR_OF_DAY: ((whole // 3600) % 24).astype(np.int64).tolist(),
        spec.DAY_OF_WEEK: (((whole // 86400) + 3) % 7 + 1).astype(np.int64).tolist(),
    }


def _floats(arr) -> list:
    return [None if math.isnan(v) else v for v in arr.tolist()]


class OnlineStoreReader:
    """Feast's sqlite online store of this repo, read the way Feast reads it (no TTL online, as Feast)."""

    def __init__(self, repo: str, timeout_s: float = 2.0, service: str = FEATURE_SERVICE):
        import yaml

        self.repo = Path(repo)
        config_path = self.repo / "feature_store.yaml" if self.repo.is_dir() else self.repo
        config = yaml.safe_load(config_path.read_text())
        store = config.get("online_store") or {}
        if store.get("type", "sqlite") != "sqlite":
            raise ValueError(
                f"{config_path}: online store {store.get('type')!r} is not sqlite; use feast serve (http://)"
            )
        if int(config.get("entity_key_serialization_version", 3)) != 3:
            raise ValueError(f"{config_path}: entity_key_serialization_version must be 3")
        path = Path(store.get("path", "data/online_store.db"))
        self.path = path if path.is_absolute() else config_path.parent / path
        project = config["project"]
        self.service = service
        self.views = [
            (f"{project}_{spec.USER_STATE_VIEW}", "user_id", list(spec.USER_STATE_FEATURES)),
            (f"{project}_{spec.MERCHANT_STATE_VIEW}", "merchant_id", list(spec.MERCHANT_STATE_FEATURES)),
        ]
        if service == FEATURE_SERVICE_V2:
            self.views.append((f"{project}_{spec.USER_RECENT_VIEW}", "user_id", list(spec.USER_RECENT_FIELDS)))
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.exists():
                raise Unavailable(f"online store {self.path} does not exist (materialize online_features)")
            conn = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=self.timeout_s, check_same_thread=False
            )
            self._local.conn = conn
        return conn

    def warm_up(self):
        self.features({"user_id": [0], "merchant_id": [0], "amount": [1.0], "event_epoch_s": [0.0], "country": [None]})

    def _read(self, table: str, join_key: str, features: list[str], ids: list[int]) -> dict[str, list]:
        keys = [entity_key(join_key, i) for i in ids]
        unique = list(dict.fromkeys(keys))
        try:
            rows = (
                self._conn()
                .execute(
                    f'SELECT entity_key, feature_name, value FROM "{table}" WHERE entity_key IN '
                    f"({','.join('?' * len(unique))})",
                    unique,
                )
                .fetchall()
            )
        except sqlite3.Error as err:
            self._local.conn = None
            raise Unavailable(f"online store read failed: {err}") from None
        found: dict[bytes, dict] = {}
        for key, name, value in rows:
            found.setdefault(key, {})[name] = value
        out = {}
        for name in features:
            out[name] = [decode_value(v) if (v := found.get(k, {}).get(name)) is not None else None for k in keys]
        return out

    def features(self, entities: dict[str, list]) -> dict[str, list]:
        served: dict[str, list] = {}
        for table, join_key, features in self.views:
            served.update(self._read(table, join_key, features, entities[join_key]))
        served.update(
            on_demand(
                entities["amount"],
                entities["event_epoch_s"],
                entities["country"],
                served[spec.USER_MEAN_AMOUNT],
                served[spec.USER_LAST_TXN_EPOCH_S],
                served[spec.USER_LAST_COUNTRY],
            )
        )
        if self.service == FEATURE_SERVICE_V2:
            served.update(stream_features(served, entities["event_epoch_s"], entities["country"]))
        return served


def stream_features(served: dict[str, list], event_epoch_s: list, country: list) -> dict[str, list]:
    """spec.STREAM_FEATURES per request row from the user's recent events (the `user_recent`
    columns in `served`), for the request's own time: the v2 on-demand view, column for column."""
    out: dict[str, list] = {name: [] for name in spec.STREAM_FEATURES}
    for i, epoch in enumerate(event_epoch_s):
        state = velocity.from_row({name: served[name][i] for name in spec.USER_RECENT_FIELDS})
        t_us = round(epoch * velocity.MICRO_UNITS) if epoch is not None and math.isfinite(epoch) else 0
        for name, value in velocity.features_at(state, t_us, country[i]).items():
            out[name].append(value)
    return out
