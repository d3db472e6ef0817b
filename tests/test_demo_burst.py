"""The demo's card-testing burst on a small real setup: RabbitMQ, the stream worker started as the
demo starts it (driftline/stream_service.py), a Feast repo with its sqlite online store. The card's
served `user_txn_count_1h` reaches the burst size within seconds of the last payment and the v2
model's score rises with it; the daily snapshot (no snapshot here: nothing) stays put.

The models are hand-set logistic FraudNets (no training run): v2 weighs `user_txn_count_1h`,
v1 weighs the snapshot's `user_txn_count_24h`, so a rising score means the count reached it."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from driftline import settings, spec
from driftline.demo_burst import BURST_SIZE, COUNT_1H, COUNT_24H, OnlineScorer, burst_events, run_burst, timeline_lines


def _logistic_artifact(directory: Path, service: str, features: list[str], weighed: str) -> Path:
    """A FraudNet without hidden layers whose logit is 0.4 * `weighed` - 4 (all else weighs 0)."""
    import torch

    from ml.export import export_artifact
    from ml.network import FraudNet
    from seldon.artifact import CategoricalFeature, FeatureSchema, NumericFeature

    cats = [CategoricalFeature(name, vocab) for name, vocab in (("category", ["electronics"]), ("channel", ["ecom"]))]
    nums = [NumericFeature(name, "identity", 0.0, 1.0, 0.0) for name in ["amount", *features]]
    schema = FeatureSchema("driftline-fraud", service[-1], cats, nums, feature_service=service)
    net = FraudNet([c.cardinality for c in cats], len(nums), hidden=())
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        linear = net.mlp[0]
        assert isinstance(linear, torch.nn.Linear)
        linear.weight[0, 1 + features.index(weighed)] = 0.4
        linear.bias[0] = -4.0
    return export_artifact(net, schema, directory)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    from resources.feast_store import FeastStore
    from resources.lake import Lake

    data = tmp_path / "data"
    FeastStore(lake=Lake(root=str(data / "lake")), repo_dir=str(data / "feast")).apply()
    return data


def test_without_a_broker_the_worker_is_not_started_and_the_demo_says_why(tmp_path: Path):
    from driftline.loop import _start_stream_worker
    from driftline.stream_service import WorkerNotStarted, start_stream_worker
    from seldon.runtime import free_port

    closed = {"DRIFTLINE_DATA_DIR": str(tmp_path), "DRIFTLINE_BROKER_URL": f"amqp://127.0.0.1:{free_port()}/%2F"}
    with pytest.raises(WorkerNotStarted, match="unreachable"):
        start_stream_worker(closed)
    lines: list[str] = []
    assert _start_stream_worker(closed, lines.append) is None
    assert "unreachable" in lines[0] and "going on without the streaming part" in lines[0]


@pytest.mark.rabbitmq
def test_without_a_feast_repo_the_worker_is_not_started(tmp_path: Path):
    from driftline.stream_service import WorkerNotStarted, start_stream_worker

    with pytest.raises(WorkerNotStarted, match="no Feast repo"):
        start_stream_worker({"DRIFTLINE_DATA_DIR": str(tmp_path)})  # `make dev` on a fresh checkout


@pytest.mark.rabbitmq
def test_the_burst_is_served_within_seconds_and_the_v2_score_rises(data_dir: Path, tmp_path: Path):
    from driftline.stream_service import start_stream_worker
    from streaming.bus import open_bus

    v1_features = [f for f in spec.SERVED_FEATURES if f not in (spec.USER_LAST_TXN_EPOCH_S, spec.USER_LAST_COUNTRY)]
    v2 = OnlineScorer(
        _logistic_artifact(tmp_path / "v2", spec.FEATURE_SERVICE_V2, spec.SERVED_FEATURES_V2, COUNT_1H),
        data_dir / "feast",
    )
    v1 = OnlineScorer(
        _logistic_artifact(tmp_path / "v1", spec.FEATURE_SERVICE, v1_features, COUNT_24H), data_dir / "feast"
    )
    prefix = f"test-burst-{uuid.uuid4().hex[:8]}"
    env = {"DRIFTLINE_DATA_DIR": str(data_dir)}
    bus = open_bus(settings.get("DRIFTLINE_BROKER_URL"), prefix=prefix)
    bus.ensure_topology()
    worker = start_stream_worker(env, prefix=prefix, wait_s=120)
    try:
        start = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        events = burst_events(41, 7, start)
        result = run_burst(bus, events, v2, v1)
    finally:
        worker.stop()
        bus.delete_topology()
        bus.close()
    print("\n".join(timeline_lines(result, v2, v1)))
    counts = [r.v2_count_1h or 0 for r in result.rows]
    assert counts[0] == 0 and counts == sorted(counts), counts
    assert all(c <= r.index - 1 for c, r in zip(counts, result.rows, strict=True))  # the payment itself excluded
    assert counts[-1] >= BURST_SIZE // 2, counts  # the worker kept up within a few payments (0.25 s apart)
    assert result.settled_count_1h == BURST_SIZE and result.settled_after_s < 3.0, result
    assert result.rows[0].v2_score < 0.05 and result.settled_score > 0.95, result
    assert {r.v1_count_24h for r in result.rows} == {None}  # no daily snapshot loaded: it never changes
    assert len({round(r.v1_score or 0, 6) for r in result.rows}) == 1
    assert "consuming" in worker.log()
