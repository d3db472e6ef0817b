"""What the lake sink (streaming/sink.py) and the stream feature worker (streaming/worker.py)
share as consumers of the event bus: decoding a delivery with its unusable parts turned into
dead-letter records (never dropped), and the consume loop that owns the partitions' locks,
resumes from the committed offsets (streaming/offsets.py) and waits out broker outages.

A consumer subclasses `ConsumerLoop` and supplies `recover` (positions to read from, after
discarding anything uncommitted), `poll_once` (one poll and whatever it commits), and
optionally `drain` (commit what is pending when stopping) and `reset` (drop what is pending
after an outage: it is read again from the offsets).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

from streaming import schema
from streaming.bus import BrokerUnavailable, Consumer, Delivery, EventBus, TopologyError
from streaming.offsets import OffsetStore

DeadLetter = tuple[dict, str]  # (record, message id) for EventBus.dead_letter
# After an outage the broker accepts connections a moment before its stream queues are back
# ("home node ... of durable queue ... is down or inaccessible"): for this long after the last
# outage a missing stream is waited out as the outage itself; otherwise it is a setup error.
TOPOLOGY_GRACE_S = 60.0
# Part of the line "<name> consuming {positions}" a consumer logs once it has resumed from its
# offsets and reads the streams: `driftline.stream_service` waits for it to call a worker ready.
CONSUMING = " consuming {"


@dataclass
class Decoded:
    """A delivery's usable events and the dead letters for the rest."""

    events: list[dict] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    bad_events: int = 0


def dead_letter(consumer: str, stream: str, d: Delivery, reason: str, **extra) -> DeadLetter:
    """The dead-letter record of (part of) delivery `d`, and its idempotent message id."""
    record = {
        "version": 1,
        "reason": reason,
        "consumer": consumer,
        "topic": d.topic,
        "partition": d.partition,
        "offset": d.offset,
        "stream": stream,
        "received_at": schema.format_ts(dt.datetime.now(dt.UTC)),
        **extra,
    }
    return record, f"{consumer}/{stream}/{d.offset}"


def decode(d: Delivery, consumer: str, stream: str) -> Decoded:
    """Schema v1 decoding: an unusable message is one dead letter (its body kept, as text or
    base64); a message with unusable events gives its good events and one dead letter listing
    the bad ones with their reasons."""
    try:
        decoded = schema.decode(d.body, d.topic)
    except schema.MessageError as err:
        try:
            message = {"message": d.body.decode()}
        except UnicodeDecodeError:
            message = {"message_base64": base64.b64encode(d.body).decode()}
        return Decoded(dead=[dead_letter(consumer, stream, d, str(err), **message)])
    out = Decoded(events=decoded.events, bad_events=len(decoded.bad))
    if decoded.bad:
        out.dead.append(
            dead_letter(
                consumer,
                stream,
                d,
                f"{len(decoded.bad)} of {len(decoded.bad) + len(decoded.events)} events unusable",
                producer=decoded.producer,
                events=[{"index": b.index, "reason": b.reason, "event": b.event} for b in decoded.bad],
            )
        )
    return out


@dataclass
class ConsumerStats:
    """What every consumer counts (each adds its own)."""

    messages: int = 0
    dead_letter_messages: int = 0
    dead_letter_events: int = 0
    batches: int = 0
    restarts: int = 0  # broker outages waited out


class ConsumerLoop:
    """The consume loop of a consumer owning `streams` ((topic, partition) pairs) of `bus`,
    with its offsets (and partition locks) in `offsets`."""

    bus: EventBus
    offsets: OffsetStore
    streams: list[tuple[str, int]]
    name: str
    max_batch_messages: int
    log: logging.Logger
    stats: ConsumerStats

    def recover(self) -> dict[tuple[str, int], int]:
        """Positions to read from, per (topic, partition)."""
        raise NotImplementedError

    def poll_once(self, consumer: Consumer) -> bool:
        """Poll once and handle what came; whether anything did."""
        raise NotImplementedError

    def drain(self, consumer: Consumer) -> None:
        """Commit what is pending (the loop is stopping)."""

    def reset(self) -> None:
        """Drop what is pending (the broker went away: it is read again from the offsets)."""

    def run_loop(self, stop: threading.Event | None = None, idle_exit_s: float | None = None) -> None:
        """Consume until `stop` is set (then `drain`) or, with `idle_exit_s`, until no message
        came for that long. Broker outages are waited out (and streams missing just after one,
        TOPOLOGY_GRACE_S); positions are re-read (`recover`)."""
        stop = stop or threading.Event()
        self.offsets.lock(self.streams, self.name)
        backoff = 0.5
        outage_at = -TOPOLOGY_GRACE_S - 1.0  # monotonic time of the last outage (none yet)
        try:
            while not stop.is_set():
                consumer = None
                try:
                    positions = self.recover()
                    consumer = self.bus.consumer(positions, prefetch=max(2 * self.max_batch_messages, 100))
                    self.log.info("%s consuming %s", self.name, {f"{t}.{p}": o for (t, p), o in positions.items()})
                    backoff = 0.5
                    idle_since = time.monotonic()
                    while not stop.is_set():
                        if self.poll_once(consumer):
                            idle_since = time.monotonic()
                        elif idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                            stop.set()
                    self.drain(consumer)
                except (BrokerUnavailable, TopologyError) as err:
                    if isinstance(err, TopologyError) and time.monotonic() - outage_at > TOPOLOGY_GRACE_S:
                        raise
                    if isinstance(err, BrokerUnavailable):
                        outage_at = time.monotonic()
                    self.stats.restarts += 1
                    self.log.warning("%s: broker unavailable (%s); resuming from the offsets", self.name, err)
                    self.reset()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                finally:
                    if consumer is not None:
                        consumer.close()
        finally:
            self.offsets.unlock()
