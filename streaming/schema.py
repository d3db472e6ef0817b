"""The wire format of the event streams, version 1: what any producer must send and what every
consumer validates before it uses a message. Standard library only.

One message is a JSON object (UTF-8) carrying a micro-batch of events of one topic:

    {"version": 1, "topic": "transactions", "producer": "generator", "sent_at": "2026-10-01T12:00:00Z",
     "events": [{"event_id": "tx…", "event_ts": "2026-10-01T11:59:58.123456Z", "user_id": 41, ...}, ...]}

Events carry exactly the columns of the lake's raw contracts (`assets/contracts.py`; a test
keeps the two equal), with JSON types: `string` a string, `int` an integer, `float` a number,
`bool` true/false, `timestamp` an ISO-8601 string with a UTC offset (`Z` or `+00:00`). Only
types are checked here; value rules (positive amount, known currency, ...) stay with the lake's
contract, which quarantines a failing row with its reason, so the lake keeps every event.

A message that cannot be read (not JSON, unknown version, wrong topic, no events) is dead-
lettered whole; an event with a wrong shape is dead-lettered alone, with its reason, and the
rest of its message is used.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from assets.contracts import LABELS, TRANSACTIONS

SCHEMA_VERSION = 1
MAX_EVENTS_PER_MESSAGE = 10_000
MAX_EVENT_ID_LENGTH = 128
CONTENT_TYPE = "application/json"

# topic -> field -> kind: the lake contracts' columns, so a message carries exactly what the raw
# tables hold (one home: assets/contracts.py; schema v1 is these columns).
TOPICS: dict[str, dict[str, str]] = {
    "transactions": dict(TRANSACTIONS.columns),
    "labels": dict(LABELS.columns),
}
OPTIONAL: dict[str, frozenset[str]] = {"transactions": frozenset(), "labels": frozenset({"reason_code"})}
PARTITION_KEY = "user_id"
# The timestamp whose UTC day is the event's lake partition (the contracts' partition_column).
DAY_FIELD = {"transactions": "event_ts", "labels": "label_ts"}


class MessageError(ValueError):
    """The whole message is unusable; the text is the dead-letter reason."""


@dataclass(frozen=True)
class BadEvent:
    index: int
    reason: str
    event: object


@dataclass(frozen=True)
class Decoded:
    """A message's usable events (timestamps parsed to naive UTC datetimes) and its bad ones."""

    topic: str
    producer: str
    events: list[dict]
    bad: list[BadEvent]


def check_topic(topic: str) -> None:
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; expected one of {sorted(TOPICS)}")


def format_ts(value: dt.datetime) -> str:
    """ISO-8601 with microseconds and `Z`; a naive datetime is taken as UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def encode(topic: str, events: Sequence[Mapping], producer: str, sent_at: dt.datetime | None = None) -> bytes:
    """One message of `events` (JSON-ready dicts: timestamps already ISO strings, see format_ts)."""
    check_topic(topic)
    if not 0 < len(events) <= MAX_EVENTS_PER_MESSAGE:
        raise ValueError(f"a message carries 1..{MAX_EVENTS_PER_MESSAGE} events, got {len(events)}")
    envelope = {
        "version": SCHEMA_VERSION,
        "topic": topic,
        "producer": producer,
        "sent_at": format_ts(sent_at or dt.datetime.now(dt.UTC)),
        "events": list(events),
    }
    return json.dumps(envelope, separators=(",", ":"), allow_nan=False).encode()


def _parse_ts(value: object) -> dt.datetime | str:
    """A naive UTC datetime, or the reason it is not one."""
    if not isinstance(value, str):
        return "not an ISO-8601 string"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return f"not ISO-8601: {value[:40]!r}"
    if parsed.tzinfo is None:
        return "no UTC offset (append Z)"
    return parsed.astimezone(dt.UTC).replace(tzinfo=None)


def _check_event(topic: str, event: object) -> dict | str:
    """The event with parsed timestamps, or why it is unusable."""
    if not isinstance(event, dict):
        return "event is not a JSON object"
    fields, optional = TOPICS[topic], OPTIONAL[topic]
    extra = sorted(set(event) - set(fields))
    if extra:
        return f"unexpected field {', '.join(map(str, extra))}"
    out = {}
    for name, kind in fields.items():
        value = event.get(name)
        if value is None:
            if name in optional:
                out[name] = None
                continue
            return f"missing {name}"
        if kind == "timestamp":
            parsed = _parse_ts(value)
            if isinstance(parsed, str):
                return f"{name} {parsed}"
            value = parsed
        elif kind == "string":
            if not isinstance(value, str) or not value:
                return f"{name} is not a non-empty string"
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{name} is not an integer"
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                return f"{name} is not a finite number"
            value = float(value)
        elif kind == "bool" and not isinstance(value, bool):
            return f"{name} is not true/false"
        out[name] = value
    if len(out["event_id"]) > MAX_EVENT_ID_LENGTH:
        return f"event_id longer than {MAX_EVENT_ID_LENGTH} characters"
    return out


def decode(body: bytes, expected_topic: str) -> Decoded:
    """Validate one message from the queue of `expected_topic`. Raises MessageError when the
    whole message is unusable; per-event problems come back in `bad`."""
    try:
        envelope = json.loads(body.decode("utf-8"))  # not json's UTF-16/32 detection: v1 is UTF-8
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MessageError(f"not UTF-8 JSON: {err}") from err
    if not isinstance(envelope, dict):
        raise MessageError("message is not a JSON object")
    version = envelope.get("version")
    if version != SCHEMA_VERSION:
        raise MessageError(f"unsupported schema version {version!r} (this consumer reads {SCHEMA_VERSION})")
    topic = envelope.get("topic")
    if topic != expected_topic:
        raise MessageError(f"topic {topic!r} on the {expected_topic!r} stream")
    events = envelope.get("events")
    if not isinstance(events, list) or not events:
        raise MessageError("`events` is not a non-empty list")
    if len(events) > MAX_EVENTS_PER_MESSAGE:
        raise MessageError(f"{len(events)} events in one message (at most {MAX_EVENTS_PER_MESSAGE})")
    producer = envelope.get("producer")
    good, bad = [], []
    for i, event in enumerate(events):
        checked = _check_event(expected_topic, event)
        if isinstance(checked, str):
            bad.append(BadEvent(i, checked, event))
        else:
            good.append(checked)
    return Decoded(topic=expected_topic, producer=producer if isinstance(producer, str) else "", events=good, bad=bad)
