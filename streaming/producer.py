"""The synthetic generator as a producer: a day's transactions and chargebacks, in time order,
published at a chosen rate in micro-batches (one message per partition holds up to
`batch_events` events and waits at most `linger_s` before it is sent)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streaming import schema
from streaming.bus import DEFAULT_BATCH_EVENTS, EventBus
from streaming.partitioning import partition_for

PRODUCER = "driftline-generator"


def _records(frame, ts_columns: tuple[str, ...]) -> list[dict]:
    out = frame.copy()
    for c in ts_columns:
        out[c] = out[c].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return out.to_dict("records")


def day_events(world, day: dt.date) -> list[tuple[str, dict]]:
    """(topic, event) of one day in arrival order: transactions by event_ts, chargebacks by
    label_ts (a label arrives when the chargeback does). `world`: a SyntheticWorld."""
    import numpy as np

    tx, labels = world.transactions(day), world.labels(day)
    when = np.concatenate([tx["event_ts"].to_numpy(), labels["label_ts"].to_numpy()])
    items = [("transactions", e) for e in _records(tx, ("event_ts",))]
    items += [("labels", e) for e in _records(labels, ("event_ts", "label_ts"))]
    for _, e in items:
        if e.get("reason_code") is not None and not isinstance(e["reason_code"], str):
            e["reason_code"] = None  # pandas' missing value as JSON null
    return [items[i] for i in np.argsort(when, kind="stable")]


@dataclass
class PublishStats:
    events: int = 0
    messages: int = 0
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def publish_stream(
    bus: EventBus,
    items: Iterable[tuple[str, Mapping]],
    rate: float = 0.0,
    batch_events: int = DEFAULT_BATCH_EVENTS,
    linger_s: float = 0.2,
    producer: str = PRODUCER,
) -> PublishStats:
    """Publish (topic, event) items; `rate` events/s (0: as fast as the broker confirms)."""
    stats = PublishStats()
    buffers: dict[tuple[str, int], list[Mapping]] = {}
    oldest: float | None = None
    start = time.monotonic()

    def send(key: tuple[str, int]) -> None:
        events = buffers.pop(key)
        bus.publish_messages(key[0], [(key[1], schema.encode(key[0], events, producer))])
        stats.messages += 1
        stats.events += len(events)

    def send_all() -> None:
        nonlocal oldest
        for key in list(buffers):
            send(key)
        oldest = None

    for i, (topic, event) in enumerate(items):
        if rate > 0:
            ahead = start + i / rate - time.monotonic()
            if ahead > 0.005:
                if oldest is not None and time.monotonic() + ahead - oldest >= linger_s:
                    send_all()
                    ahead = start + i / rate - time.monotonic()
                if ahead > 0:
                    bus.sleep(ahead)
        key = (topic, partition_for(event[schema.PARTITION_KEY], bus.partitions))
        buffers.setdefault(key, []).append(event)
        oldest = oldest or time.monotonic()
        if len(buffers[key]) >= batch_events:
            send(key)
            if not buffers:
                oldest = None
        elif time.monotonic() - oldest >= linger_s:
            send_all()
    send_all()
    stats.seconds = time.monotonic() - start
    return stats
