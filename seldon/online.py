"""Raw transactions -> feature columns, with the user's online features from `feast serve`.

The Feast feature server computes the on-demand features from the same request fields the
training join used, so the raw path and batch scoring see identical inputs (no skew).
"""

from __future__ import annotations

import datetime as dt

ENTITY_KEYS = ("user_id", "merchant_id")
FEATURE_SERVICE = "fraud_model_v1"
REQUIRED = ("user_id", "merchant_id", "amount", "country")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


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
    ts = ts.replace(tzinfo=dt.timezone.utc) if ts.tzinfo is None else ts.astimezone(dt.timezone.utc)
    return (ts - _EPOCH) / dt.timedelta(seconds=1)


def transactions(json_data) -> list[dict]:
    """Accept one transaction, a list of them, or {"transactions": [...]}."""
    if isinstance(json_data, dict) and "transactions" in json_data:
        json_data = json_data["transactions"]
    rows = [json_data] if isinstance(json_data, dict) else json_data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest("jsonData must be a transaction object, a list of them or {\"transactions\": [...]}")
    return rows


def request_entities(rows: list[dict]) -> dict[str, list]:
    """Entity keys and request fields, validated, as the feature server wants them."""
    out: dict[str, list] = {k: [] for k in (*ENTITY_KEYS, "amount", "event_epoch_s", "country")}
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row] + ([] if "event_epoch_s" in row or "event_ts" in row
                                                           else ["event_ts"])
        if missing:
            raise BadRequest(f"transaction {i} lacks {missing}")
        for key in ENTITY_KEYS:
            if isinstance(row[key], bool) or not isinstance(row[key], int):
                raise BadRequest(f"transaction {i}: {key} must be an integer")
            out[key].append(row[key])
        amount = row["amount"]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount != amount \
                or amount in (float("inf"), float("-inf")):
            raise BadRequest(f"transaction {i}: amount must be a finite number")
        out["amount"].append(float(amount))
        out["event_epoch_s"].append(epoch_seconds(row.get("event_epoch_s", row.get("event_ts"))))
        country = row["country"]
        if country is not None and not isinstance(country, str):
            raise BadRequest(f"transaction {i}: country must be a string")
        out["country"].append(country)
    return out


class FeatureServerClient:
    """A keep-alive HTTP client of `feast serve` (one per worker process)."""

    def __init__(self, url: str, timeout_s: float = 2.0):
        import requests

        self.url = url.rstrip("/") + "/get-online-features"
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def features(self, entities: dict[str, list]) -> dict[str, list]:
        import requests

        body = {"feature_service": FEATURE_SERVICE, "entities": entities}
        try:
            resp = self.session.post(self.url, json=body, timeout=self.timeout_s)
        except requests.RequestException as err:
            raise Unavailable(f"feature server unreachable: {type(err).__name__}") from None
        if resp.status_code != 200:
            raise Unavailable(f"feature server answered {resp.status_code}: {resp.text[:200]}")
        payload = resp.json()
        names = payload["metadata"]["feature_names"]
        return {name: result["values"] for name, result in zip(names, payload["results"])}


def raw_columns(rows: list[dict], served: dict[str, list], feature_names: list[str]) -> dict[str, list]:
    """Model columns: request-time fields from the transaction, the rest from the feature server."""
    columns = {}
    for name in feature_names:
        if name in served and name not in ("amount", "country"):
            columns[name] = served[name]
        else:
            columns[name] = [row.get(name) for row in rows]
    return columns
