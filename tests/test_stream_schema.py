"""The wire schema (v1) and the partitioner: what producers written by anyone else rely on."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from assets.contracts import LABELS, TRANSACTIONS
from resources.synthetic import SyntheticWorld, WorldConfig
from resources.synthetic.generator import LABEL_COLUMNS, TRANSACTION_COLUMNS
from streaming import schema
from streaming.partitioning import owned_partitions, partition_for
from streaming.producer import day_events
from testkit.worlds import SMALL_WORLD

DAY = dt.date(2026, 10, 20)


def _tx(**over):
    event = {
        "event_id": "tx1",
        "event_ts": "2026-10-20T10:00:00.5+02:00",
        "user_id": 7,
        "merchant_id": 3,
        "amount": 12,
        "currency": "EUR",
        "category": "grocery",
        "country": "FR",
        "channel": "pos",
    }
    return {k: v for k, v in (event | over).items() if v is not ...}


def test_the_wire_fields_are_the_lake_contracts():
    for topic, contract, columns in (
        ("transactions", TRANSACTIONS, TRANSACTION_COLUMNS),
        ("labels", LABELS, LABEL_COLUMNS),
    ):
        assert schema.TOPICS[topic] == contract.columns
        assert list(schema.TOPICS[topic]) == columns
        assert schema.OPTIONAL[topic] == contract.optional
        assert schema.DAY_FIELD[topic] == contract.partition_column


def test_generator_events_round_trip():
    items = day_events(SyntheticWorld(WorldConfig(**SMALL_WORLD)), DAY)
    world = SyntheticWorld(WorldConfig(**SMALL_WORLD))
    assert {t for t, _ in items} == {"transactions", "labels"}
    for topic in schema.TOPICS:
        events = [e for t, e in items if t == topic]
        decoded = schema.decode(schema.encode(topic, events[:50], "test"), topic)
        assert decoded.bad == [] and len(decoded.events) == min(50, len(events))
        frame = world.transactions(DAY) if topic == "transactions" else world.labels(DAY)
        first = frame.iloc[0]
        got = decoded.events[0]
        assert got["event_id"] == first["event_id"]
        assert got[schema.DAY_FIELD[topic]] == first[schema.DAY_FIELD[topic]].to_pydatetime()


def test_a_timestamp_with_an_offset_becomes_naive_utc():
    decoded = schema.decode(schema.encode("transactions", [_tx()], "p"), "transactions")
    assert decoded.events[0]["event_ts"] == dt.datetime(2026, 10, 20, 8, 0, 0, 500000)
    assert decoded.events[0]["amount"] == 12.0 and isinstance(decoded.events[0]["amount"], float)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": 2, "topic": "transactions", "events": [{}]}', "unsupported schema version 2"),
        (b'{"version": 1, "topic": "labels", "events": [{}]}', "topic 'labels' on the 'transactions' stream"),
        (b'{"version": 1, "topic": "transactions", "events": []}', "not a non-empty list"),
    ],
)
def test_unusable_messages_name_the_reason(body, reason):
    with pytest.raises(schema.MessageError, match=reason):
        schema.decode(body, "transactions")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_tx(event_id=...), "missing event_id"),
        (_tx(extra=1), "unexpected field extra"),
        (_tx(user_id=True), "user_id is not an integer"),
        (_tx(user_id="7"), "user_id is not an integer"),
        (_tx(amount="12"), "amount is not a finite number"),
        (_tx(event_ts="2026-10-20T10:00:00"), "event_ts no UTC offset (append Z)"),
        (_tx(event_ts="yesterday"), "event_ts not ISO-8601"),
        (_tx(currency=""), "currency is not a non-empty string"),
        (_tx(event_id="x" * 129), "event_id longer than 128"),
        ("not an object", "event is not a JSON object"),
    ],
)
def test_a_bad_event_is_set_aside_with_its_reason_and_the_rest_is_used(event, reason):
    body = json.dumps({"version": 1, "topic": "transactions", "events": [_tx(event_id="ok"), event]}).encode()
    decoded = schema.decode(body, "transactions")
    assert [e["event_id"] for e in decoded.events] == ["ok"]
    assert [b.index for b in decoded.bad] == [1] and reason in decoded.bad[0].reason


def test_nan_amounts_are_rejected():
    body = b'{"version":1,"topic":"transactions","events":[' + json.dumps(_tx()).encode()[:-1] + b',"amount":NaN}]}'
    assert "finite" in schema.decode(body, "transactions").bad[0].reason


def test_labels_may_omit_the_reason_code():
    label = {
        "event_id": "tx1",
        "event_ts": "2026-10-01T00:00:00Z",
        "user_id": 1,
        "merchant_id": 2,
        "label_ts": "2026-10-09T00:00:00Z",
        "is_fraud": True,
        "reason_code": None,
    }
    decoded = schema.decode(schema.encode("labels", [label], "p"), "labels")
    assert decoded.bad == [] and decoded.events[0]["reason_code"] is None
    assert (
        "is_fraud is not true/false"
        in schema.decode(schema.encode("labels", [label | {"is_fraud": 1}], "p"), "labels").bad[0].reason
    )


def test_partitioning_is_stable_across_processes():
    keys = list(range(200)) + ["abc"]
    here = [partition_for(k, 8) for k in keys]
    assert partition_for(41, 8) == 2 and partition_for(0, 4) == 1  # CRC-32 of "41" / "0": fixed forever
    code = f"from streaming.partitioning import partition_for; print([partition_for(k, 8) for k in {keys!r}])"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            env=os.environ | {"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
        )
        assert json.loads(out.stdout) == here
    assert len(set(here)) == 8  # spread over every partition


def test_every_partition_has_exactly_one_owner():
    for members in (1, 2, 3, 5):
        owned = [p for m in range(members) for p in owned_partitions(8, m, members)]
        assert sorted(owned) == list(range(8))
    with pytest.raises(ValueError, match=r"member must be in 0\.\.1"):
        owned_partitions(8, 2, 2)
