"""The lake sink: consumes the transaction and label streams and writes their events, in
micro-batches, as Parquet files into the landing zone that `landing_sensor` ingests.

Layout (what `LandingFolderEventSource` reads): `<landing>/<topic>/date=YYYY-MM-DD/<file>.parquet`
with the day of `event_ts` (transactions) or `label_ts` (labels), in UTC, and exactly the raw
contract's columns. A file holds one partition's events of one batch:
`<prefix>.p<partition>.<first offset>-<last offset>.parquet`.

Exactly-once into the lake, on at-least-once delivery:
- a file is written as a hidden temp file, fsynced and renamed (readers never see half a file);
- the partition's checkpoint (`<landing>/_offsets/<stream>.json`, next offset to read) is
  written the same way after every file of the batch is durable, and only then are the
  deliveries acknowledged;
- on start (and after a broker outage) a partition's files whose first offset is not below its
  checkpoint are from a batch that never committed: they are deleted and the batch is read
  again from the checkpoint;
- an `event_id` already in the partition's files of that day is skipped (a producer's retry
  stores the same event twice in the stream); ids of a day are loaded from its files on demand.
A partition's state lives in the landing zone, so any sink instance can take a partition over
(an exclusive lock file keeps two from writing the same partition at once).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streaming import schema
from streaming.bus import Consumer, Delivery, EventBus
from streaming.consumer_loop import ConsumerLoop, ConsumerStats, DeadLetter, decode
from streaming.offsets import OffsetStore, write_atomic

log = logging.getLogger("driftline.sink")

OFFSETS_DIR = "_offsets"
_SEEN_DAYS_KEPT = 64  # (partition, day) id sets kept in memory; older ones are reloaded on demand


@dataclass
class _Pending:
    """One partition's part of the batch being built."""

    first: int
    last: int = -1
    events: list[dict] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


@dataclass
class SinkStats(ConsumerStats):
    events_written: int = 0
    duplicates_skipped: int = 0
    files: int = 0


class LakeSink(ConsumerLoop):
    log = log
    stats: SinkStats

    def __init__(
        self,
        bus: EventBus,
        landing_dir: str | Path,
        partitions: Iterable[int] | None = None,
        topics: Sequence[str] = tuple(schema.TOPICS),
        name: str = "lake-sink",
        max_batch_messages: int = 500,
        flush_s: float = 10.0,
    ):
        for t in topics:
            schema.check_topic(t)
        self.bus, self.landing = bus, Path(landing_dir)
        self.partitions = sorted(set(range(bus.partitions) if partitions is None else partitions))
        self.streams = [(t, p) for t in topics for p in self.partitions]
        self.name = name
        self.max_batch_messages, self.flush_s = max_batch_messages, flush_s
        self.stats = SinkStats()
        self._file_re = re.compile(rf"^{re.escape(bus.prefix)}\.p(\d+)\.(\d+)-(\d+)\.parquet$")
        self._next: dict[tuple[str, int], int] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._deliveries: list[Delivery] = []
        self._dead: list[DeadLetter] = []
        self._batch_started: float | None = None
        self._seen: OrderedDict[tuple[str, int, str], set[str]] = OrderedDict()
        self.offsets = OffsetStore(self.landing / OFFSETS_DIR, bus.prefix)  # checkpoints and locks

    # ------------------------------------------------------------------ state on disk
    def stream_name(self, topic: str, p: int) -> str:
        return self.offsets.stream(topic, p)

    def read_checkpoint(self, topic: str, p: int) -> int:
        return self.offsets.read(topic, p) or 0

    def _write_checkpoint(self, topic: str, p: int, next_offset: int) -> None:
        self.offsets.write(topic, p, next_offset)

    def _partition_files(self, topic: str, p: int, day: str | None = None) -> list[tuple[Path, int]]:
        """(file, first offset) of partition p's files, in one day's folder or in all."""
        root = self.landing / topic
        folders = [root / f"date={day}"] if day else sorted(root.glob("date=*"))
        out = []
        for folder in folders:
            if not folder.is_dir():
                continue
            for f in folder.iterdir():
                m = self._file_re.match(f.name)
                if m and int(m.group(1)) == p:
                    out.append((f, int(m.group(2))))
        return out

    def recover(self) -> dict[tuple[str, int], int]:
        """Positions to read from; files of batches that never committed are removed."""
        self._discard_batch()
        self._seen.clear()
        for topic, p in self.streams:
            nxt = self.read_checkpoint(topic, p)
            for f, first in self._partition_files(topic, p):
                if first >= nxt:
                    log.warning("removing %s: its batch never committed (checkpoint %d)", f, nxt)
                    f.unlink()
            for stale in (self.landing / topic).glob(f"date=*/.{self.bus.prefix}.p{p}.*.tmp"):
                stale.unlink()
            self._next[(topic, p)] = nxt
        return dict(self._next)

    def _seen_ids(self, topic: str, p: int, day: str) -> set[str]:
        key = (topic, p, day)
        if key in self._seen:
            self._seen.move_to_end(key)
            return self._seen[key]
        import pyarrow.parquet as pq

        ids: set[str] = set()
        for f, _ in self._partition_files(topic, p, day):
            ids.update(pq.read_table(f, columns=["event_id"]).column("event_id").to_pylist())
        self._seen[key] = ids
        while len(self._seen) > _SEEN_DAYS_KEPT:
            self._seen.popitem(last=False)
        return ids

    # ------------------------------------------------------------------ batching
    def _discard_batch(self) -> None:
        self._pending.clear()
        self._deliveries.clear()
        self._dead.clear()
        self._batch_started = None

    def add(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            key = (d.topic, d.partition)
            self._deliveries.append(d)  # acknowledged with the batch, whatever becomes of it
            if d.offset < self._next[key]:
                continue  # redelivered below the checkpoint: already in the lake
            if self._batch_started is None:
                self._batch_started = time.monotonic()
            self.stats.messages += 1
            pending = self._pending.setdefault(key, _Pending(first=d.offset))
            pending.last = d.offset
            decoded = decode(d, self.name, self.stream_name(d.topic, d.partition))
            self._dead.extend(decoded.dead)
            self.stats.dead_letter_events += decoded.bad_events
            day_field = schema.DAY_FIELD[d.topic]
            for event in decoded.events:
                eid = event["event_id"]
                day = event[day_field].date().isoformat()
                if eid in pending.ids or eid in self._seen_ids(d.topic, d.partition, day):
                    self.stats.duplicates_skipped += 1
                    continue
                pending.ids.add(eid)
                pending.events.append(event)

    def due(self) -> bool:
        if len(self._deliveries) >= self.max_batch_messages:
            return True
        return self._batch_started is not None and time.monotonic() - self._batch_started >= self.flush_s

    def flush(self, consumer: Consumer | None) -> None:
        """Commit the batch: dead letters, then files, then checkpoints, then acknowledgements."""
        if not self._deliveries:
            return
        for record, message_id in self._dead:
            self.bus.dead_letter(record, message_id)
        self.stats.dead_letter_messages += len(self._dead)
        for (topic, p), pending in self._pending.items():
            by_day: dict[str, list[dict]] = defaultdict(list)
            for event in pending.events:
                by_day[event[schema.DAY_FIELD[topic]].date().isoformat()].append(event)
            for day, events in sorted(by_day.items()):
                name = f"{self.bus.prefix}.p{p}.{pending.first:012d}-{pending.last:012d}.parquet"
                target = self.landing / topic / f"date={day}" / name
                table = _to_arrow(topic, events, self.stream_name(topic, p), pending.first, pending.last)
                write_atomic(target, partial_write(table))
                self.stats.files += 1
        for (topic, p), pending in self._pending.items():
            self._write_checkpoint(topic, p, pending.last + 1)
            self._next[(topic, p)] = pending.last + 1
            for event in pending.events:
                self._seen_ids(topic, p, event[schema.DAY_FIELD[topic]].date().isoformat()).add(event["event_id"])
            self.stats.events_written += len(pending.events)
        self.stats.batches += 1
        deliveries = list(self._deliveries)
        self._discard_batch()
        if consumer is not None:
            consumer.ack(deliveries)

    # ------------------------------------------------------------------ the loop
    def poll_once(self, consumer: Consumer) -> bool:
        got = consumer.poll(self.max_batch_messages - len(self._deliveries), 0.2)
        self.add(got)
        if self.due():
            self.flush(consumer)
        return bool(got)

    def drain(self, consumer: Consumer) -> None:
        self.flush(consumer)

    def reset(self) -> None:
        self._discard_batch()

    def run(self, stop=None, idle_exit_s: float | None = None) -> SinkStats:
        """Consume until `stop` is set (then flush and return) or, with `idle_exit_s`, until no
        message came for that long (streaming.consumer_loop)."""
        self.run_loop(stop, idle_exit_s)
        return self.stats


_ARROW_TYPES = {"string": "string", "int": "int64", "float": "float64", "bool": "bool_"}


def _to_arrow(topic: str, events: list[dict], stream: str, first: int, last: int):
    """The raw contract's columns and storage types (assets/ingestion.py storage_schema)."""
    import pyarrow as pa

    columns = {}
    fields = []
    for name, kind in schema.TOPICS[topic].items():
        typ = pa.timestamp("us") if kind == "timestamp" else getattr(pa, _ARROW_TYPES[kind])()
        fields.append(pa.field(name, typ))
        columns[name] = pa.array([e[name] for e in events], type=typ)
    meta = {
        "driftline.stream": stream,
        "driftline.first_offset": str(first),
        "driftline.last_offset": str(last),
        "driftline.schema_version": str(schema.SCHEMA_VERSION),
    }
    return pa.table(columns, schema=pa.schema(fields, metadata=meta))


def partial_write(table):
    import pyarrow.parquet as pq

    def write(path: Path) -> None:
        pq.write_table(table, path, compression="zstd")

    return write


def landed_ids(landing_dir: str | Path, topic: str) -> list[str]:
    """Every event_id in the landing zone's files of `topic`, duplicates kept (for checks)."""
    import pyarrow.parquet as pq

    out: list[str] = []
    for f in sorted(Path(landing_dir, topic).glob("date=*/*.parquet")):
        with contextlib.suppress(FileNotFoundError):  # a file a recovering sink just removed
            out.extend(pq.read_table(f, columns=["event_id"]).column("event_id").to_pylist())
    return out
