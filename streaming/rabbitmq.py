"""The event bus on RabbitMQ stream queues over AMQP 0-9-1 (pika; no plugin needed).

Topology, per topic: a durable direct exchange `<prefix>.<topic>` and one stream queue per
partition, `<prefix>.<topic>.<p>`, bound with routing key `<p>`. Producers publish with
`mandatory` and publisher confirms, so a missing partition or a broker that did not store a
message is an error, never a silent loss. Streams are append-only logs: consumers read from an
offset (`x-stream-offset`) without removing anything, so the lake sink and the feature worker
read the same events independently and a crashed consumer replays from its own checkpoint.
Dead letters go to the stream `<prefix>.dead-letter` (RabbitMQ's own dead-lettering does not
apply to streams, so consumers publish there themselves).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial

import pika
import pika.exceptions as pex
from pika.adapters.blocking_connection import BlockingChannel

from streaming import schema
from streaming.bus import BrokerUnavailable, Consumer, Delivery, EventBus, TopologyError

STREAM_ARGS = {"x-queue-type": "stream", "x-max-age": "7D"}  # retention: a week of replay
# Broker-side refusals that are configuration errors, not outages.
_FATAL_CODES = {403, 404, 406}
_TRANSIENT = (pex.AMQPConnectionError, pex.ChannelWrongStateError, pex.NackError, ConnectionError, OSError)


def _transient(err: BaseException) -> bool:
    if isinstance(err, pex.ChannelClosedByBroker):
        return err.reply_code not in _FATAL_CODES
    return isinstance(err, _TRANSIENT)


class RabbitMQBus(EventBus):
    def __init__(
        self, url: str, partitions: int, prefix: str, retry_s: float = 120.0, unroutable_grace_s: float = 15.0
    ):
        super().__init__(partitions, prefix)
        self.url = url
        self.retry_s = retry_s  # how long publish keeps retrying through an outage
        # A broker that has just restarted restores a stream's binding only once the stream is up
        # again: an unroutable message is sent again for this long before it counts as missing topology.
        self.unroutable_grace_s = unroutable_grace_s
        self._conn: pika.BlockingConnection | None = None
        self._ch: BlockingChannel | None = None

    # ------------------------------------------------------------------ names
    def exchange(self, topic: str) -> str:
        return f"{self.prefix}.{topic}"

    def queue(self, topic: str, partition: int) -> str:
        return f"{self.prefix}.{topic}.{partition}"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead-letter"

    # ------------------------------------------------------------------ connection
    def connect(self) -> pika.BlockingConnection:
        try:
            params = pika.URLParameters(self.url)
            params.connection_attempts = 1
            params.blocked_connection_timeout = 30
            return pika.BlockingConnection(params)
        except pex.AMQPError as err:
            raise BrokerUnavailable(f"cannot connect to the broker: {err!r}") from err

    def _channel(self) -> BlockingChannel:
        if self._ch is None or not self._ch.is_open or self._conn is None or not self._conn.is_open:
            self._drop()
            self._conn = self.connect()
            self._ch = self._conn.channel()
            self._ch.confirm_delivery()
        return self._ch

    def _drop(self) -> None:
        conn, self._conn, self._ch = self._conn, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(pex.AMQPError, OSError):  # already broken: nothing to close cleanly
                conn.close()

    def close(self) -> None:
        self._drop()

    def sleep(self, seconds: float) -> None:
        """Sleep while keeping the connection's heartbeats answered."""
        if self._conn is not None and self._conn.is_open:
            try:
                self._conn.sleep(seconds)
                return
            except pex.AMQPError:
                self._drop()
        time.sleep(seconds)

    # ------------------------------------------------------------------ topology
    def ensure_topology(self) -> None:
        try:
            ch = self._channel()
            for topic in schema.TOPICS:
                ch.exchange_declare(self.exchange(topic), exchange_type="direct", durable=True)
                for p in range(self.partitions):
                    ch.queue_declare(self.queue(topic, p), durable=True, arguments=STREAM_ARGS)
                    ch.queue_bind(self.queue(topic, p), self.exchange(topic), routing_key=str(p))
            ch.queue_declare(self.dead_letter_queue, durable=True, arguments=STREAM_ARGS)
        except pex.ChannelClosedByBroker as err:
            self._drop()
            raise TopologyError(f"declaring the streams under {self.prefix!r} failed: {err.reply_text}") from err
        except pex.AMQPError as err:
            self._drop()
            raise BrokerUnavailable(f"declaring the streams: {err!r}") from err
        for topic in schema.TOPICS:
            extra = self.queue(topic, self.partitions)
            if self._queue_exists(extra):
                raise TopologyError(
                    f"the broker has stream {extra} but this bus is configured with {self.partitions} partitions "
                    "(DRIFTLINE_STREAM_PARTITIONS): events routed there would be missed by consumers"
                )

    def _queue_exists(self, name: str) -> bool:
        conn = self.connect()
        try:
            conn.channel().queue_declare(name, passive=True)
            return True
        except pex.ChannelClosedByBroker as err:
            if err.reply_code == 404:
                return False
            raise
        finally:
            if conn.is_open:
                conn.close()

    def delete_topology(self) -> None:
        self._drop()  # a fresh connection: the held one may have died with a broker restart
        ch = self._channel()
        for topic in schema.TOPICS:
            for p in range(self.partitions):
                ch.queue_delete(self.queue(topic, p))
            ch.exchange_delete(self.exchange(topic))
        ch.queue_delete(self.dead_letter_queue)

    # ------------------------------------------------------------------ publishing
    def _publish_all(self, exchange: str, items: Sequence[tuple[str, bytes, pika.BasicProperties]]) -> None:
        """Publish each (routing key, body, properties) with a confirm; through an outage, reconnect
        and resend from the first unconfirmed message until `retry_s` has passed."""
        i, outage_since, backoff = 0, None, 0.1
        while i < len(items):
            key, body, props = items[i]
            try:
                self._channel().basic_publish(exchange, key, body, props, mandatory=True)
                i, outage_since, backoff = i + 1, None, 0.1
            except (pex.AMQPError, OSError, BrokerUnavailable) as err:
                if not isinstance(err, BrokerUnavailable | pex.UnroutableError) and not _transient(err):
                    raise
                self._drop()
                outage_since = outage_since or time.monotonic()
                if isinstance(err, pex.UnroutableError) and time.monotonic() - outage_since > self.unroutable_grace_s:
                    raise TopologyError(
                        f"no stream bound to {exchange!r} with key {key!r} for {self.unroutable_grace_s:.0f} s: "
                        "run ensure_topology (driftline stream setup)"
                    ) from err
                if time.monotonic() - outage_since > self.retry_s:
                    raise BrokerUnavailable(f"broker unavailable for {self.retry_s:.0f} s: {err!r}") from err
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def publish_messages(self, topic: str, messages: Sequence[tuple[int, bytes]]) -> None:
        schema.check_topic(topic)
        props = pika.BasicProperties(
            content_type=schema.CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            type=topic,
            headers={"schema-version": schema.SCHEMA_VERSION},
        )
        self._publish_all(self.exchange(topic), [(str(p), body, props) for p, body in messages])

    def dead_letter(self, record: Mapping, message_id: str) -> None:
        props = pika.BasicProperties(
            content_type=schema.CONTENT_TYPE, delivery_mode=pika.DeliveryMode.Persistent, message_id=message_id
        )
        body = json.dumps(record, separators=(",", ":"), default=str).encode()
        self._publish_all("", [(self.dead_letter_queue, body, props)])

    def read_dead_letters(self, timeout_s: float = 1.0) -> list[dict]:
        consumer = RabbitMQConsumer(self, prefetch=1000, queues={self.dead_letter_queue: ("dead-letter", 0, 0)})
        try:
            out = []
            while True:
                batch = consumer.poll(1000, timeout_s)
                if not batch:
                    return out
                out.extend(json.loads(d.body) for d in batch)
                consumer.ack(batch)
        finally:
            consumer.close()

    # ------------------------------------------------------------------ consuming
    def consumer(self, positions: Mapping[tuple[str, int], int], prefetch: int) -> RabbitMQConsumer:
        for topic, p in positions:
            schema.check_topic(topic)
            if not 0 <= p < self.partitions:
                raise ValueError(f"partition {p} of {topic} outside 0..{self.partitions - 1}")
        queues = {self.queue(t, p): (t, p, offset) for (t, p), offset in positions.items()}
        return RabbitMQConsumer(self, prefetch, queues)


class RabbitMQConsumer(Consumer):
    """One connection and channel; one AMQP consumer per stream, each from its offset."""

    def __init__(
        self,
        bus: RabbitMQBus,
        prefetch: int,
        queues: Mapping[str, tuple[str, int, int]],
    ):
        """`queues`: stream name -> (topic, partition, first offset wanted)."""
        self._buffer: deque[Delivery] = deque()
        self._conn = bus.connect()
        try:
            self._ch = self._conn.channel()
            self._ch.basic_qos(prefetch_count=prefetch)  # streams need a prefetch; acks return credit
            for queue, (topic, p, offset) in queues.items():
                self._ch.basic_consume(
                    queue,
                    partial(self._on_message, topic, p, offset),
                    auto_ack=False,
                    arguments={"x-stream-offset": int(offset)},
                )
        except pex.ChannelClosedByBroker as err:
            self.close()
            if err.reply_code == 404:
                raise TopologyError(f"a stream is missing: {err.reply_text} (run driftline stream setup)") from err
            raise BrokerUnavailable(f"subscribing: {err!r}") from err
        except (pex.AMQPError, OSError) as err:
            self.close()
            raise BrokerUnavailable(f"subscribing: {err!r}") from err

    def _on_message(self, topic: str, partition: int, start: int, ch, method, props, body: bytes) -> None:
        offset = int((props.headers or {})["x-stream-offset"])
        if offset < start:  # a stream may deliver from the start of the chunk holding `start`
            ch.basic_ack(method.delivery_tag)
            return
        self._buffer.append(Delivery(topic, partition, offset, body, method.delivery_tag))

    def poll(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        try:
            while len(self._buffer) < max_messages:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._conn.process_data_events(time_limit=min(remaining, 0.5))  # pyright: ignore[reportArgumentType]  # pika documents seconds as a float; its annotation says int
        except (pex.AMQPError, OSError) as err:
            raise BrokerUnavailable(f"consuming: {err!r}") from err
        n = min(max_messages, len(self._buffer))
        return [self._buffer.popleft() for _ in range(n)]

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        try:
            self._ch.basic_ack(max(d.receipt for d in deliveries), multiple=True)
        except (pex.AMQPError, OSError) as err:
            raise BrokerUnavailable(f"acknowledging: {err!r}") from err

    def close(self) -> None:
        self._buffer.clear()
        if self._conn.is_open:
            with contextlib.suppress(pex.AMQPError, OSError):  # the connection is already gone
                self._conn.close()
