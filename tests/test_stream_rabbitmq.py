"""The RabbitMQ event bus against the live broker: routing by key, order and offsets per
partition, dead letters, and a refused partition-count mismatch."""

from __future__ import annotations

import json
import uuid

import pytest

from driftline import settings
from streaming import schema
from streaming.bus import TopologyError
from streaming.partitioning import partition_for
from streaming.rabbitmq import RabbitMQBus

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def bus():
    bus = RabbitMQBus(settings.get("DRIFTLINE_BROKER_URL") or "", 3, f"test-{uuid.uuid4().hex[:8]}")
    bus.ensure_topology()
    try:
        yield bus
    finally:
        bus.delete_topology()
        bus.close()


def _event(i: int, user: int) -> dict:
    return {
        "event_id": f"e{i}",
        "event_ts": f"2026-10-20T00:00:{i % 60:02d}Z",
        "user_id": user,
        "merchant_id": 1,
        "amount": 1.0 + i,
        "currency": "EUR",
        "category": "grocery",
        "country": "FR",
        "channel": "pos",
    }


def _drain(bus, positions, expect: int) -> list:
    consumer = bus.consumer(positions, prefetch=100)
    got = []
    try:
        while len(got) < expect:
            batch = consumer.poll(100, 5.0)
            assert batch, f"only {len(got)} of {expect} messages came"
            got.extend(batch)
            consumer.ack(batch)
    finally:
        consumer.close()
    return got


def test_events_are_routed_by_key_kept_in_order_and_replayable_from_an_offset(bus):
    events = [_event(i, user=i % 7) for i in range(300)]
    sent = bus.publish("transactions", events, "test", batch_events=10)
    every = {("transactions", p): 0 for p in range(3)}
    got = _drain(bus, every, sent)
    assert len(got) == sent
    seen: dict[int, list[str]] = {}
    for d in got:
        decoded = schema.decode(d.body, "transactions")
        assert {partition_for(e["user_id"], 3) for e in decoded.events} == {d.partition}
        seen.setdefault(d.partition, []).extend(e["event_id"] for e in decoded.events)
    for p, ids in seen.items():  # per partition, in publish order
        assert ids == [e["event_id"] for e in events if partition_for(e["user_id"], 3) == p]
    offsets = sorted(d.offset for d in got if d.partition == 0)
    assert offsets == list(range(len(offsets)))

    tail = _drain(bus, {("transactions", 0): 3}, len(offsets) - 3)  # resume where a checkpoint says
    assert [d.offset for d in tail] == offsets[3:]


def test_dead_letters_are_kept_with_their_reason(bus):
    bus.dead_letter({"reason": "not UTF-8 JSON", "offset": 4}, "sink/x/4")
    bus.dead_letter({"reason": "1 of 2 events unusable", "offset": 5}, "sink/x/5")
    records = bus.read_dead_letters()
    assert [r["reason"] for r in records] == ["not UTF-8 JSON", "1 of 2 events unusable"]
    assert bus.read_dead_letters() == records  # reading does not consume them


def test_a_bus_with_fewer_partitions_than_the_broker_is_refused(bus):
    with pytest.raises(TopologyError, match="configured with 2 partitions"):
        RabbitMQBus(bus.url, 2, bus.prefix).ensure_topology()


def test_publishing_to_a_missing_stream_fails_loudly(bus):
    other = RabbitMQBus(bus.url, 4, bus.prefix, unroutable_grace_s=0.5)  # partition 3 has no stream
    body = json.dumps({"version": 1}).encode()
    with pytest.raises(TopologyError, match="no stream bound"):
        other.publish_messages("transactions", [(3, body)])
    other.close()
