"""The lake sink's commit protocol without a broker: files land where and as the landing source
reads them, a batch that never committed is removed and written again, redelivered events are
not written twice. (The live path, with kill -9 and a broker restart: test_stream_conservation.)"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from assets.contracts import LABELS, TRANSACTIONS, split_valid
from resources.event_source import LandingFolderEventSource
from resources.synthetic import SyntheticWorld, WorldConfig
from streaming import schema
from streaming.bus import Delivery
from streaming.producer import day_events
from streaming.rabbitmq import RabbitMQBus
from streaming.sink import LakeSink, landed_ids
from testkit.worlds import SMALL_WORLD

DAY = dt.date(2026, 10, 20)
PARTITIONS = 2


def _bus() -> RabbitMQBus:
    """Never connects here: without dead letters or a consumer the sink needs only names."""
    return RabbitMQBus("amqp://unused", PARTITIONS, "t")


def _deliveries(items, batch_events=25) -> list[Delivery]:
    bus, out, offsets = _bus(), [], {}
    for topic in schema.TOPICS:
        events = [e for t, e in items if t == topic]
        for p, body in bus.messages_for(topic, events, "test", batch_events):
            offset = offsets.setdefault((topic, p), 0)
            offsets[(topic, p)] += 1
            out.append(Delivery(topic, p, offset, body, receipt=len(out) + 1))
    return out


@pytest.fixture(scope="module")
def items():
    return day_events(SyntheticWorld(WorldConfig(**SMALL_WORLD)), DAY)


def test_landed_files_are_what_the_landing_source_ingests(tmp_path, items):
    sink = LakeSink(_bus(), tmp_path)
    sink.recover()
    sink.add(_deliveries(items))
    sink.flush(None)
    source = LandingFolderEventSource(path=str(tmp_path))
    tx = split_valid(source.read("transactions", DAY), TRANSACTIONS, DAY)
    labels = split_valid(source.read("labels", DAY), LABELS, DAY)
    assert tx.counts["quarantined_rows"] == 0 and labels.counts["quarantined_rows"] == 0
    assert sorted(tx.valid["event_id"]) == sorted(e["event_id"] for t, e in items if t == "transactions")
    assert len(labels.valid) == sum(t == "labels" for t, _ in items)
    names = [f.name for f in source.files("transactions", DAY)]
    assert names and all(re.fullmatch(r"t\.p[01]\.\d{12}-\d{12}\.parquet", n) for n in names)
    per_partition = {p: sum(d.topic == "transactions" and d.partition == p for d in _deliveries(items)) for p in (0, 1)}
    assert {p: sink.read_checkpoint("transactions", p) for p in (0, 1)} == per_partition  # next offset to read


def test_a_batch_that_never_committed_is_rewritten_once(tmp_path, items, monkeypatch):
    deliveries = _deliveries(items)
    first, second = deliveries[: len(deliveries) // 2], deliveries[len(deliveries) // 2 :]
    sink = LakeSink(_bus(), tmp_path)
    sink.recover()
    sink.add(first)
    sink.flush(None)
    committed = len(landed_ids(tmp_path, "transactions"))

    def crash(*_args):
        raise KeyboardInterrupt("killed between the files and the checkpoint")

    sink.add(second)
    monkeypatch.setattr(sink, "_write_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        sink.flush(None)
    assert len(landed_ids(tmp_path, "transactions")) > committed  # the uncommitted files are there
    (tmp_path / "transactions" / f"date={DAY}" / ".t.p0.000000000099-000000000099.parquet.tmp").write_text("torn")

    restarted = LakeSink(_bus(), tmp_path)
    positions = restarted.recover()
    assert len(landed_ids(tmp_path, "transactions")) == committed  # rolled back to the checkpoints
    assert not list(tmp_path.glob("*/date=*/.*.tmp"))
    replay = [d for d in deliveries if d.offset >= positions[(d.topic, d.partition)]]
    restarted.add(replay)
    restarted.flush(None)
    ids = landed_ids(tmp_path, "transactions")
    assert len(ids) == len(set(ids)) == sum(t == "transactions" for t, _ in items)


def test_redelivered_events_are_not_written_twice_across_restarts(tmp_path, items):
    deliveries = _deliveries(items)
    sink = LakeSink(_bus(), tmp_path)
    sink.recover()
    sink.add(deliveries)
    sink.flush(None)
    # a producer retried after a lost confirm: the same events again, at later offsets
    again = [Delivery(d.topic, d.partition, d.offset + 1000, d.body, d.receipt + 1000) for d in deliveries[:5]]
    restarted = LakeSink(_bus(), tmp_path)
    restarted.recover()
    restarted.add(again)
    restarted.flush(None)
    assert restarted.stats.duplicates_skipped == sum(len(schema.decode(d.body, d.topic).events) for d in again)
    for topic in schema.TOPICS:
        ids = landed_ids(tmp_path, topic)
        assert len(ids) == len(set(ids))
    assert restarted.read_checkpoint(again[0].topic, again[0].partition) > 1000


def test_a_second_sink_cannot_take_an_owned_partition(tmp_path):
    def lock(sink: LakeSink) -> None:
        sink.offsets.lock(sink.streams, sink.name)

    one = LakeSink(_bus(), tmp_path, partitions=[0])
    lock(one)
    try:
        with pytest.raises(RuntimeError, match="owned by another running consumer"):
            lock(LakeSink(_bus(), tmp_path, partitions=[1, 0]))
        other = LakeSink(_bus(), tmp_path, partitions=[1])
        lock(other)  # a disjoint share is fine
        other.offsets.unlock()
    finally:
        one.offsets.unlock()
