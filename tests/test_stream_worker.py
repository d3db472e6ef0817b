"""The stream feature worker end to end, on the real broker and a real Feast sqlite online store:
every published transaction is in its user's online state exactly once (event_id sets equal,
no id twice) across a `kill -9` of the worker mid-stream and a broker restart, with two workers
sharing the partitions, when one worker's share is taken over by another from the offsets and
the online store, and after a bootstrap from the lake's raw_transactions.

The broker is shared by the machine: only `rabbitmqctl stop_app` / `start_app` (never the node)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from driftline import settings
from resources.synthetic import SyntheticWorld, WorldConfig
from streaming.offsets import OffsetStore, PartitionOwned
from streaming.producer import day_events, publish_stream
from streaming.rabbitmq import RabbitMQBus
from streaming.worker import parse_partitions, parse_share
from testkit.worlds import SMALL_WORLD
from tests.stream_helpers import applied_feast_repo, broker_restart, publish_in_background, wait_for

DAY = dt.date(2026, 10, 20)
RATE = 100.0  # events/s: the day (~640 events) takes ~7 s, long enough to crash things under it


# ---------------------------------------------------------------------------- without a broker
def test_shares_split_the_partitions_and_bad_ones_are_refused():
    assert parse_share("0/2", 4) == [0, 2] and parse_share("1/2", 4) == [1, 3]
    assert sorted(parse_share("0/3", 8) + parse_share("1/3", 8) + parse_share("2/3", 8)) == list(range(8))
    assert parse_partitions("3, 1", 4) == [1, 3]
    for bad in ("2", "a/b", "2/2"):
        with pytest.raises(ValueError):
            parse_share(bad, 4)
    for bad in ("4", "x", ""):
        with pytest.raises(ValueError):
            parse_partitions(bad, 4)


def test_offsets_are_durable_per_partition_and_owned_by_one(tmp_path: Path):
    a, b = OffsetStore(tmp_path, "p"), OffsetStore(tmp_path, "p")
    assert a.read("transactions", 0) is None
    a.write("transactions", 0, 42)
    assert b.read("transactions", 0) == 42 and b.read("transactions", 1) is None
    a.lock([("transactions", 0)], "a")
    with pytest.raises(PartitionOwned, match=r"p\.transactions\.0"):
        b.lock([("transactions", 1), ("transactions", 0)], "b")
    b.lock([("transactions", 1)], "b")  # b released what it had taken when it failed
    a.unlock()
    b.lock([("transactions", 0)], "b")
    b.unlock()


# ---------------------------------------------------------------------------- on the broker
@pytest.fixture
def feast_repo(tmp_path: Path) -> Path:
    return applied_feast_repo(tmp_path)


class Workers:
    """`driftline stream worker` subprocesses of one test, their logs under tmp_path."""

    def __init__(self, tmp_path: Path, url: str, prefix: str, partitions: int, repo: Path):
        self.tmp, self.url, self.prefix, self.partitions, self.repo = tmp_path, url, prefix, partitions, repo
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *owned: str) -> subprocess.Popen:
        cmd = [
            sys.executable, "-m", "driftline.cli", "stream", "--broker-url", self.url,
            "--partitions", str(self.partitions), "--prefix", self.prefix, "worker", *owned,
            "--feast-repo", str(self.repo), "--offsets-dir", str(self.tmp / "offsets"),
            "--lake", str(self.tmp / "lake"), "--name", name, "--flush-ms", "100", "--max-batch-messages", "4",
        ]  # fmt: skip
        with open(self.tmp / f"{name}.log", "a") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def _served(repo: Path, users) -> dict[int, list[str]]:
    from streaming.velocity_store import VelocityStore

    return {u: s.event_ids for u, s in VelocityStore(repo).read(users).items()}


def _expected(events) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for e in events:
        out[e["user_id"]].append(e["event_id"])
    return dict(out)


def _assert_each_once(served: dict[int, list[str]], expected: dict[int, list[str]]) -> None:
    assert set(served) == set(expected)
    for u, ids in served.items():
        assert len(ids) == len(set(ids)), f"user {u}: an event counted twice"
        assert set(ids) == set(expected[u]), f"user {u}: served {sorted(ids)} != published {sorted(expected[u])}"


def _committed(tmp_path: Path, prefix: str, partitions: int) -> int:
    offsets = OffsetStore(tmp_path / "offsets", prefix)
    return sum(offsets.read("transactions", p) or 0 for p in range(partitions))


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_worker_counts_each_event_once_across_a_kill_and_a_broker_restart(tmp_path: Path, feast_repo: Path):
    url = settings.get("DRIFTLINE_BROKER_URL") or ""
    prefix, partitions = f"test-{uuid.uuid4().hex[:8]}", 2
    bus = RabbitMQBus(url, partitions, prefix)
    bus.ensure_topology()
    items = day_events(SyntheticWorld(WorldConfig(**SMALL_WORLD)), DAY)
    tx = [e for t, e in items if t == "transactions"]
    expected = _expected(tx)
    workers = Workers(tmp_path, url, prefix, partitions, feast_repo)
    worker = workers.start("w")
    try:
        publisher, errors = publish_in_background(url, prefix, partitions, items, RATE)
        wait_for(lambda: _committed(tmp_path, prefix, partitions) > 0, 120, "the worker's first committed batch")
        os.kill(worker.pid, signal.SIGKILL)  # mid-stream: the producer keeps publishing
        worker.wait(timeout=30)
        committed_at_kill = _committed(tmp_path, prefix, partitions)
        workers.start("w")
        wait_for(lambda: workers.log("w").count(" consuming ") == 2, 120, "the restarted worker consuming")
        broker_restart()
        publisher.join(timeout=180)
        assert not publisher.is_alive() and not errors, errors
        bus.publish_messages("transactions", [(1, b'{"version": 9}')])  # -> dead letter, with its reason
        wait_for(lambda: _settled(feast_repo, expected), 180, "every published transaction in the online store")
        wait_for(lambda: bus.read_dead_letters(timeout_s=0.5) != [], 60, "the dead letter")
        dead = bus.read_dead_letters()
    finally:
        workers.stop_all()
        bus.delete_topology()
        bus.close()
        print(workers.log("w"))
    _assert_each_once(_served(feast_repo, expected), expected)
    assert committed_at_kill > 0
    assert "resuming from the offsets" in workers.log("w")  # it went through the broker outage
    assert [r["reason"] for r in dead] == ["unsupported schema version 9 (this consumer reads 1)"]
    assert dead[0]["consumer"] == "w" and dead[0]["partition"] == 1


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_two_workers_share_the_partitions_and_a_share_is_taken_over(tmp_path: Path, feast_repo: Path):
    """The lake holds the first day (bootstrap); the stream repeats its last 50 events (a
    producer's retry after the lake had them) and carries the next day. Two workers each own
    half of four partitions; one is killed and its share rebuilt by a third worker."""
    from resources.lake import Lake
    from streaming.sink import _to_arrow

    url = settings.get("DRIFTLINE_BROKER_URL") or ""
    prefix, partitions = f"test-{uuid.uuid4().hex[:8]}", 4
    bus = RabbitMQBus(url, partitions, prefix)
    bus.ensure_topology()
    world = SyntheticWorld(WorldConfig(**SMALL_WORLD))
    first = [e for t, e in day_events(world, DAY) if t == "transactions"]
    second = [e for t, e in day_events(world, DAY + dt.timedelta(days=1)) if t == "transactions"]
    lake_rows = [e | {"event_ts": dt.datetime.fromisoformat(e["event_ts"].removesuffix("Z"))} for e in first]
    Lake(root=str(tmp_path / "lake")).write_partition(
        "raw_transactions", DAY.isoformat(), _to_arrow("transactions", lake_rows, "test", 0, 0)
    )
    expected = _expected(first + second)
    half = len(second) // 2
    stream_a = [("transactions", e) for e in first[-50:] + second[:half]]
    stream_b = [("transactions", e) for e in second[half:]]
    workers = Workers(tmp_path, url, prefix, partitions, feast_repo)
    try:
        workers.start("a", "--share", "0/2")
        b = workers.start("b", "--share", "1/2")
        publish_stream(bus, stream_a)
        seen_a = _expected(first + second[:half])
        wait_for(lambda: _settled(feast_repo, seen_a), 180, "both shares' events in the online store")
        intruder = workers.start("intruder", "--partitions", "1")  # b owns partition 1
        assert intruder.wait(timeout=120) != 0
        assert "owned by another running consumer" in workers.log("intruder")
        os.kill(b.pid, signal.SIGKILL)
        b.wait(timeout=30)
        workers.start("c", "--partitions", "1,3")  # b's share, rebuilt from the offsets + online store
        publish_stream(bus, stream_b)
        wait_for(lambda: _settled(feast_repo, expected), 180, "every event after the takeover")
    finally:
        workers.stop_all()
        bus.delete_topology()
        bus.close()
        for name in ("a", "b", "c"):
            print(workers.log(name))
    _assert_each_once(_served(feast_repo, expected), expected)
    assert "partitions [0, 2] of 4" in workers.log("a") and "partitions [1, 3] of 4" in workers.log("b")
    booted = re.compile(r"bootstrapped (\d+) events")
    assert all(booted.search(workers.log(n)) for n in ("a", "b"))
    assert sum(int(booted.findall(workers.log(n))[0]) for n in ("a", "b")) == len(first)
    assert not booted.search(workers.log("c"))  # c resumed from b's offsets, not from the lake
    assert "transactions.1': 0" not in workers.log("c")


def _settled(repo: Path, expected: dict[int, list[str]]) -> bool:
    served = _served(repo, expected)
    return set(served) == set(expected) and all(set(served[u]) == set(expected[u]) for u in expected)
