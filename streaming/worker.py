"""The stream feature worker: keeps every user's recent transactions in the online store, fresh
within a second, so the online path can finish the velocity windows for the request's own time
(driftline/velocity.py, docs/streaming.md).

One micro-batch (at most `max_batch_messages`, or whatever arrived within `flush_s`):

1. the deliveries of the owned `transactions` partitions are decoded (schema v1); a delivery
   below its partition's committed offset is a redelivery and skipped; unusable messages and
   events are dead-lettered with their reason (before anything is committed);
2. the events are grouped by user; each user's state comes from the in-memory cache, else from
   the online store (`VelocityStore.read`: a new owner of a partition rebuilds from there);
3. `velocity.apply` adds the events (idempotent on `event_id`), and the users that changed are
   written in one `VelocityStore.push`, the rows of the push source `user_recent_push` (on
   Feast's sqlite store one upsert into Feast's own table, else Feast's online write; see
   streaming/velocity_store.py): from then on they are servable;
4. only then each partition's next offset is written (streaming/offsets.py), and the deliveries
   acknowledged.

At-least-once, counted once: a crash after the push and before the offsets replays the batch,
which `apply` finds already applied (same event_ids). A failure anywhere in a batch drops the
batch's users from the cache, so their state is read again from the store, never from a half-
applied copy. A broker outage (`rabbitmqctl stop_app`) is waited out and consumption resumes
from the committed offsets. Labels are not consumed: the user view has no use for them (the
merchant's chargeback state stays the daily snapshot's).

A partition that was never committed is bootstrapped from the lake's `raw_transactions` (the
last `spec.LOOKBACK` days: what "previous transaction" can look back to), then read from the
stream's first retained offset; events in both are applied once (`event_id`).
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from driftline import spec, velocity
from driftline.velocity import RecentEvents
from streaming.bus import Consumer, Delivery, EventBus
from streaming.consumer_loop import ConsumerLoop, ConsumerStats, DeadLetter, decode
from streaming.offsets import OffsetStore
from streaming.partitioning import owned_partitions, partition_for

log = logging.getLogger("driftline.worker")

TOPIC = "transactions"
# The worker's heap is mostly its state cache (lists in dataclasses, no reference cycles); at
# Python's default thresholds (700, 10, 10) the collector rescans it so often that it costs
# about as much as applying the events. Rarer collections, same memory (nothing cyclic to free).
GC_THRESHOLDS = (100_000, 50, 1_000)
MIN_POLL_S = 0.01  # the shortest poll: time for the client to read what the broker sent
_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)


class StateStore(Protocol):
    """What the worker needs of the online store (streaming.velocity_store.VelocityStore)."""

    def read(self, user_ids: Iterable[int]) -> Mapping[int, RecentEvents]: ...

    def push(self, states: Mapping[int, RecentEvents]) -> None: ...


def parse_share(text: str, partitions: int) -> list[int]:
    """`i/n` -> the partitions member i of n owns (p mod n == i)."""
    try:
        member, members = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--share wants i/n (e.g. 0/2), got {text!r}") from None
    return owned_partitions(partitions, member, members)


def parse_partitions(text: str, partitions: int) -> list[int]:
    """`0,2,5` -> [0, 2, 5], each checked against the partition count."""
    try:
        owned = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--partitions wants a comma-separated list of numbers, got {text!r}") from None
    bad = [p for p in owned if not 0 <= p < partitions]
    if not owned or bad:
        raise ValueError(f"--partitions {text!r}: each must be in 0..{partitions - 1}")
    return owned


@dataclass
class WorkerStats(ConsumerStats):
    events_applied: int = 0
    duplicates: int = 0  # events already in their user's state (replays, producer retries)
    late_events: int = 0  # older than the user's newest event minus spec.ALLOWED_LATENESS
    users_pushed: int = 0
    bootstrapped_events: int = 0
    last_push_at: float = 0.0  # wall clock of the last push (benchmarks)
    # event-to-servable seconds (push done minus event_ts), per event: only with track_latency
    latencies: list[float] = field(default_factory=list, repr=False)


def lake_filesystem(lake_root: str):
    """(pyarrow filesystem, path) of a lake root: a path, file:// or an object-store URL. The
    worker reads the lake with pyarrow alone (no Dagster import in a long-running consumer)."""
    import pyarrow.fs as pafs

    if "://" not in lake_root:
        return pafs.LocalFileSystem(), str(Path(lake_root).resolve())
    return pafs.FileSystem.from_uri(lake_root)


def lake_days(fs, table_dir: str) -> list[str]:
    """The `date=` partitions of a lake table, sorted ([] when it has none)."""
    import pyarrow.fs as pafs

    entries = fs.get_file_info(pafs.FileSelector(table_dir, allow_not_found=True))
    names = [e.base_name for e in entries if e.type == pafs.FileType.Directory]
    return sorted(n.removeprefix("date=") for n in names if n.startswith("date="))


def read_day(fs, folder: str):
    """One day's Parquet files of a lake table, the columns the worker applies."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    files = sorted(
        e.path
        for e in fs.get_file_info(pafs.FileSelector(folder))
        if e.type == pafs.FileType.File and e.base_name.endswith(".parquet")
    )
    cols = ["event_id", "event_ts", "user_id", "merchant_id", "amount", "country"]
    return pa.concat_tables([pq.read_table(f, columns=cols, filesystem=fs) for f in files]) if files else None


class StreamWorker(ConsumerLoop):
    log = log
    stats: WorkerStats

    def __init__(
        self,
        bus: EventBus,
        store: StateStore,
        offsets: OffsetStore,
        partitions: Iterable[int] | None = None,
        name: str = "stream-worker",
        max_batch_messages: int = 200,
        flush_s: float = 0.2,
        cache_users: int = 500_000,
        lake_root: str | None = None,
        track_latency: bool = False,
    ):
        self.bus, self.store, self.offsets = bus, store, offsets
        self.partitions = sorted(set(range(bus.partitions) if partitions is None else partitions))
        self.streams = [(TOPIC, p) for p in self.partitions]
        self.name = name
        self.max_batch_messages, self.flush_s = max_batch_messages, flush_s
        self.cache_users = cache_users
        self.lake_root = lake_root
        self.track_latency = track_latency
        self.stats = WorkerStats()
        self._cache: OrderedDict[int, RecentEvents] = OrderedDict()
        self._next: dict[int, int] = {}
        self._last_batch_s = 0.0  # how long the last micro-batch took (poll_once)

    # ------------------------------------------------------------------ state
    def _states(self, users: Iterable[int]) -> dict[int, RecentEvents | None]:
        """Each user's state: the cache, else the online store (one read for all the misses)."""
        out: dict[int, RecentEvents | None] = {}
        missing = []
        for u in users:
            state = self._cache.get(u)
            if state is None:
                missing.append(u)
            else:
                self._cache.move_to_end(u)
                out[u] = state
        if missing:
            stored = self.store.read(missing)
            for u in missing:
                out[u] = stored.get(u)
        return out

    def _remember(self, states: Mapping[int, RecentEvents]) -> None:
        for u, state in states.items():
            self._cache[u] = state
            self._cache.move_to_end(u)
        while len(self._cache) > self.cache_users:
            self._cache.popitem(last=False)

    def _apply(self, by_user: Mapping[int, list[dict]]) -> dict[int, RecentEvents]:
        """Apply each user's events; returns the users whose state changed. On any error the
        users are dropped from the cache (their in-place states may be half-applied)."""
        try:
            states = self._states(by_user)
            changed: dict[int, RecentEvents] = {}
            for u, events in by_user.items():
                state = states[u]
                newest = state.newest_us if state is not None else None
                if newest is not None:
                    horizon = newest - spec.ALLOWED_LATENESS_US
                    self.stats.late_events += sum(e["event_us"] < horizon for e in events)
                state, new = velocity.apply(state, events)
                self.stats.duplicates += len(events) - new
                self.stats.events_applied += new
                if new:
                    changed[u] = state
            return changed
        except BaseException:
            for u in by_user:
                self._cache.pop(u, None)
            raise

    # ------------------------------------------------------------------ bootstrap
    def recover(self) -> dict[tuple[str, int], int]:
        """Positions to read from; partitions never committed are bootstrapped first."""
        self._next.clear()
        fresh = []
        for p in self.partitions:
            nxt = self.offsets.read(TOPIC, p)
            if nxt is None:
                fresh.append(p)
                nxt = 0
            self._next[p] = nxt
        if fresh:
            n = self.bootstrap(fresh)
            for p in fresh:  # even with nothing in the lake: bootstrapped, read the stream from 0
                self.offsets.write(TOPIC, p, 0, bootstrapped_events=n)
        return {(TOPIC, p): nxt for p, nxt in self._next.items()}

    def bootstrap(self, partitions: Sequence[int]) -> int:
        """Apply the lake's raw_transactions of the last spec.LOOKBACK days (up to its newest
        day) for the users of `partitions`; returns the events applied. Idempotent."""
        if not self.lake_root:
            return 0
        fs, root = lake_filesystem(self.lake_root)
        table_dir = f"{root.rstrip('/')}/raw_transactions"
        days = lake_days(fs, table_dir)
        if not days:
            log.info("%s: no raw_transactions under %s: starting from the stream alone", self.name, self.lake_root)
            return 0
        newest = dt.date.fromisoformat(days[-1])
        first = (newest - dt.timedelta(days=spec.LOOKBACK_DAYS)).isoformat()
        wanted = set(partitions)
        applied = 0
        for day in (d for d in days if d >= first):
            table = read_day(fs, f"{table_dir}/date={day}")
            if table is None:
                continue
            by_user: dict[int, list[dict]] = defaultdict(list)
            for e in table.to_pylist():
                if partition_for(e["user_id"], self.bus.partitions) in wanted:
                    e["event_us"] = velocity.epoch_us(e["event_ts"])
                    by_user[e["user_id"]].append(e)
            before = self.stats.events_applied
            changed = self._apply(by_user)
            if changed:
                self.store.push(changed)
                self._remember(changed)
            applied += self.stats.events_applied - before
        self.stats.bootstrapped_events += applied
        log.info("%s: bootstrapped %d events of partitions %s from %s", self.name, applied, list(partitions), table_dir)
        return applied

    # ------------------------------------------------------------------ one micro-batch
    def process(self, deliveries: Sequence[Delivery], consumer: Consumer | None) -> None:
        """One micro-batch: decode, dead-letter, apply, push, commit offsets, acknowledge."""
        if not deliveries:
            return
        by_user: dict[int, list[dict]] = defaultdict(list)
        dead: list[DeadLetter] = []
        last: dict[int, int] = {}
        for d in deliveries:
            if d.offset < self._next[d.partition]:
                continue  # redelivered below the committed offset: already applied
            last[d.partition] = d.offset
            self.stats.messages += 1
            decoded = decode(d, self.name, self.offsets.stream(d.topic, d.partition))
            dead.extend(decoded.dead)
            self.stats.dead_letter_events += decoded.bad_events
            for e in decoded.events:
                e["event_us"] = (e["event_ts"] - _EPOCH) // _US
                by_user[e["user_id"]].append(e)
        for record, message_id in dead:
            self.bus.dead_letter(record, message_id)
        self.stats.dead_letter_messages += len(dead)
        changed = self._apply(by_user)
        if changed:
            try:
                self.store.push(changed)
            except BaseException:
                for u in changed:
                    self._cache.pop(u, None)
                raise
            self._remember(changed)
            self.stats.users_pushed += len(changed)
        now = time.time()
        self.stats.last_push_at = now
        if self.track_latency:
            now_us = int(now * 1_000_000)
            self.stats.latencies.extend((now_us - e["event_us"]) / 1e6 for es in by_user.values() for e in es)
        for p, offset in sorted(last.items()):
            self.offsets.write(TOPIC, p, offset + 1)
            self._next[p] = offset + 1
        self.stats.batches += 1
        if consumer is not None:
            consumer.ack(deliveries)

    # ------------------------------------------------------------------ the loop
    def poll_once(self, consumer: Consumer) -> bool:
        """One micro-batch every `flush_s` (or as soon as `max_batch_messages` are in): the time
        the previous batch took is taken off the wait, so an event waits at most about
        `flush_s` plus its own batch's work, not also the previous batch's."""
        wait = max(MIN_POLL_S, self.flush_s - self._last_batch_s)
        got = consumer.poll(self.max_batch_messages, wait)
        started = time.monotonic()
        if got:
            self.process(got, consumer)
        self._last_batch_s = time.monotonic() - started
        return bool(got)

    def run(self, stop: threading.Event | None = None, idle_exit_s: float | None = None) -> WorkerStats:
        """Consume until `stop` is set or, with `idle_exit_s`, until no message came for that
        long. Broker outages are waited out; positions are re-read from the offsets
        (streaming.consumer_loop). Runs with `GC_THRESHOLDS` (restored on return)."""
        before = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            self.run_loop(stop, idle_exit_s)
        finally:
            gc.set_threshold(*before)
        return self.stats


def default_paths(feast_repo: str | None, offsets_dir: str | None, lake: str | None) -> tuple[str, str, str]:
    """The Feast repo, offsets folder and bootstrap lake of this profile (DRIFTLINE_ENV)."""
    from driftline import settings

    s = settings.load()
    feast_repo = feast_repo or f"{s.data_dir}/feast"
    offsets_dir = offsets_dir or settings.get("DRIFTLINE_STREAM_OFFSETS_DIR") or f"{s.data_dir}/stream/offsets"
    lake = lake or (s.lake_url if s.env == "k8s" else f"{s.data_dir}/lake")
    return feast_repo, offsets_dir, lake


def run_worker(
    broker_url: str | None = None,
    partitions: int | None = None,
    prefix: str = "driftline",
    share: str | None = None,
    owned: str | None = None,
    feast_repo: str | None = None,
    offsets_dir: str | None = None,
    lake: str | None = None,
    name: str | None = None,
    flush_ms: float | None = None,
    max_batch_messages: int = 200,
    idle_exit_s: float | None = None,
    bootstrap: bool = True,
) -> int:
    """`driftline stream worker`: run until SIGTERM / Ctrl-C (the current batch is finished)."""
    import signal

    from driftline import settings
    from streaming.bus import open_bus
    from streaming.velocity_store import VelocityStore

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    feast_repo, offsets_dir, lake = default_paths(feast_repo, offsets_dir, lake)
    flush_s = float(flush_ms if flush_ms is not None else settings.get("DRIFTLINE_STREAM_FLUSH_MS") or 200) / 1000
    with open_bus(broker_url, partitions, prefix) as bus:
        bus.ensure_topology()
        mine = (
            parse_partitions(owned, bus.partitions)
            if owned
            else parse_share(share, bus.partitions)
            if share
            else list(range(bus.partitions))
        )
        name = name or f"stream-worker-{'-'.join(map(str, mine))}"
        worker = StreamWorker(
            bus,
            VelocityStore(feast_repo),
            OffsetStore(offsets_dir, bus.prefix),
            mine,
            name=name,
            max_batch_messages=max_batch_messages,
            flush_s=flush_s,
            lake_root=lake if bootstrap else None,
        )
        print(f"{name}: partitions {mine} of {bus.partitions} -> {feast_repo} (offsets {offsets_dir})", flush=True)
        stats = worker.run(stop, idle_exit_s=idle_exit_s)
        print(f"{name} stopped: {stats}", flush=True)
    return 0
