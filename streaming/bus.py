"""The event bus: publish micro-batches of events partitioned by key, consume partitions from
an offset, acknowledge, dead-letter. Producers and consumers use only this interface, so a
Kafka implementation can sit beside the RabbitMQ one (`open_bus` picks by URL scheme).

Semantics every implementation keeps:
- a topic has `partitions` ordered, replayable partitions; an event goes to
  `partition_for(event[PARTITION_KEY], partitions)`, so one card's events stay in order;
- `publish` returns once the broker has confirmed every message (retrying through a broker
  restart): at-least-once, so a retried message may be stored twice and consumers dedupe on
  `event_id`;
- consumers own their offsets (they store them with what they produce, atomically), ask for
  positions explicitly and acknowledge after their output is durable;
- `dead_letter` stores an unusable message or event with its reason in a replayable topic.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from streaming import schema
from streaming.partitioning import partition_for

DEFAULT_PREFIX = "driftline"
DEFAULT_BATCH_EVENTS = 100  # events per message: ~100x the throughput of one event per message


class BrokerUnavailable(RuntimeError):
    """The broker could not be reached (or stayed away past the retry deadline): transient."""


class TopologyError(RuntimeError):
    """Streams missing or partition counts that disagree: configuration, not transient."""


@dataclass(frozen=True)
class Delivery:
    topic: str
    partition: int
    offset: int
    body: bytes
    receipt: int  # the transport's acknowledgement handle


class Consumer(ABC):
    """Deliveries of the assigned partitions, each from its requested offset, in offset order
    per partition."""

    @abstractmethod
    def poll(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Up to `max_messages` deliveries, waiting at most `timeout_s` for the first ones."""

    @abstractmethod
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge these and every earlier delivery of this consumer."""

    @abstractmethod
    def close(self) -> None: ...


class EventBus(ABC):
    def __init__(self, partitions: int, prefix: str = DEFAULT_PREFIX):
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self.partitions = partitions
        self.prefix = prefix

    @abstractmethod
    def ensure_topology(self) -> None:
        """Create the topics' partitions and the dead-letter topic if missing; raise
        TopologyError if the broker holds more partitions than configured."""

    @abstractmethod
    def publish_messages(self, topic: str, messages: Sequence[tuple[int, bytes]]) -> None:
        """Publish encoded messages to (partition, body), each confirmed by the broker."""

    @abstractmethod
    def consumer(self, positions: Mapping[tuple[str, int], int], prefetch: int) -> Consumer:
        """A consumer of (topic, partition) from each next offset (0 = the beginning)."""

    @abstractmethod
    def dead_letter(self, record: Mapping, message_id: str) -> None:
        """Store a dead-letter record (JSON object), confirmed; `message_id` lets readers dedupe."""

    @abstractmethod
    def read_dead_letters(self, timeout_s: float = 1.0) -> list[dict]:
        """Every dead-letter record kept, oldest first (non-destructive)."""

    @abstractmethod
    def delete_topology(self) -> None:
        """Remove the topics and the dead-letter topic (tests and benchmarks)."""

    @abstractmethod
    def close(self) -> None: ...

    def sleep(self, seconds: float) -> None:
        """Wait between publishes (an implementation keeps its connection alive meanwhile)."""
        time.sleep(seconds)

    def messages_for(
        self, topic: str, events: Iterable[Mapping], producer: str, batch_events: int = DEFAULT_BATCH_EVENTS
    ) -> list[tuple[int, bytes]]:
        """Encoded messages: events grouped by partition (order kept), `batch_events` a message."""
        schema.check_topic(topic)
        by_partition: dict[int, list[Mapping]] = defaultdict(list)
        for event in events:
            by_partition[partition_for(event[schema.PARTITION_KEY], self.partitions)].append(event)
        out = []
        for p, part in sorted(by_partition.items()):
            for i in range(0, len(part), batch_events):
                out.append((p, schema.encode(topic, part[i : i + batch_events], producer)))
        return out

    def publish(
        self, topic: str, events: Iterable[Mapping], producer: str, batch_events: int = DEFAULT_BATCH_EVENTS
    ) -> int:
        """Publish events (JSON-ready dicts) partitioned by key; returns the messages sent."""
        messages = self.messages_for(topic, events, producer, batch_events)
        self.publish_messages(topic, messages)
        return len(messages)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_bus(url: str | None = None, partitions: int | None = None, prefix: str = DEFAULT_PREFIX) -> EventBus:
    """The bus behind DRIFTLINE_BROKER_URL (amqp:// or amqps://: RabbitMQ stream queues)."""
    from driftline import settings

    url = url or settings.get("DRIFTLINE_BROKER_URL") or ""
    partitions = partitions or int(settings.get("DRIFTLINE_STREAM_PARTITIONS") or 1)
    scheme = urlparse(url).scheme
    if scheme in ("amqp", "amqps"):
        from streaming.rabbitmq import RabbitMQBus

        return RabbitMQBus(url, partitions, prefix)
    if scheme == "kafka":
        raise NotImplementedError("a Kafka bus is not built yet: implement streaming.bus.EventBus beside RabbitMQBus")
    raise ValueError(f"DRIFTLINE_BROKER_URL {url!r}: expected an amqp:// or amqps:// URL")
