"""Device-resident batching, the batch/learning-rate rule and DDP sharding (CPU; the GPU side is
`bench/gpu_check.sh`). Numeric column 0 carries each row's id, so batches say which rows they hold."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.batch_rule import MAX_BATCH, REFERENCE_BATCH, accelerator_kind, plan
from ml.device_data import EvalBatches, TrainBatches, batch_sizes, shard_rows
from ml.lightning_model import TrainConfig, pr_auc_tensor, score, train
from ml.metrics import pr_auc

ROOT = Path(__file__).resolve().parents[1]


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, 5, (n, 2))
    num = rng.standard_normal((n, 4), dtype=np.float32)
    num[:, 0] = np.arange(n, dtype=np.float32)
    y = ((cat[:, 0] == 1) & (num[:, 1] > 0.3)).astype(np.float32)
    return cat, num, y


def _ids(batches) -> list[list[int]]:
    return [b[1][:, 0].long().tolist() for b in batches]


def _flat(batches) -> list[int]:
    return [i for b in _ids(batches) for i in b]


def test_every_row_once_per_epoch_and_the_last_batch_is_partial():
    data = TrainBatches(_rows(1000), batch_size=128, seed=3)
    assert len(data) == 8 and data.sizes == [128] * 7 + [104]
    for epoch in range(3):
        batches = _ids(data.epoch_batches(epoch))
        assert [len(b) for b in batches] == data.sizes
        assert sorted(i for b in batches for i in b) == list(range(1000))


def test_order_follows_seed_and_epoch():
    a, b, c = (TrainBatches(_rows(500), 64, seed) for seed in (1, 1, 2))
    assert _ids(a.epoch_batches(0)) == _ids(b.epoch_batches(0))  # same seed, same epoch: same batches
    assert _ids(a.epoch_batches(0)) != _ids(a.epoch_batches(1))  # a new order every epoch
    assert _ids(a.epoch_batches(0)) != _ids(c.epoch_batches(0))
    epoch = {"now": 1}
    d = TrainBatches(_rows(500), 64, 1, epoch=lambda: epoch["now"])
    assert _ids(d) == _ids(a.epoch_batches(1))  # iter() reads the trainer's epoch


def test_batches_are_the_rows_they_name():
    cat, num, y = _rows(300)
    for c, n, t in TrainBatches((cat, num, y), 50, 0).epoch_batches(0):
        ids = n[:, 0].long().numpy()
        assert np.array_equal(c.numpy(), cat[ids]) and np.array_equal(t.numpy(), y[ids])
        assert c.dtype == torch.int64 and n.dtype == torch.float32 and t.dtype == torch.float32


def test_streamed_chunks_yield_the_resident_batches():
    """Splits too large for the device go over in chunks; on a CPU both orders come from the same
    generator, so the chunked path must give exactly the resident batches."""
    resident = TrainBatches(_rows(1000), 64, 5)
    streamed = TrainBatches(_rows(1000), 64, 5, resident=False, chunk_rows=200)
    assert streamed.chunk_batches == 3
    for epoch in range(2):
        assert _ids(streamed.epoch_batches(epoch)) == _ids(resident.epoch_batches(epoch))


def test_eval_batches_keep_order():
    cat, num, y = _rows(1001)
    data = EvalBatches((cat, num, y), 256)
    assert len(data) == 4
    assert _flat(data) == list(range(1001))


def test_batch_sizes_give_every_rank_the_same_number_of_steps():
    assert batch_sizes(256, 64, 4) == [64] * 4
    assert batch_sizes(257, 64, 5) == [64] * 4 + [1]
    # a shard one row short of another may be a batch short: its widest batch is split
    assert batch_sizes(128, 64, 3) == [32, 32, 64]
    with pytest.raises(ValueError, match="more than"):
        batch_sizes(300, 64, 2)


@pytest.mark.parametrize(("n", "world", "batch"), [(257, 2, 64), (1000, 3, 100), (129, 2, 64), (10, 4, 2)])
def test_shards_cover_every_row_once_with_equal_steps(n, world, batch):
    shards = [shard_rows(n, 9, r, world) for r in range(world)]
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))  # type: ignore[arg-type]
    ranks = [TrainBatches(_rows(n), batch, 9, rank=r, world_size=world) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1  # DDP hangs if one rank runs an extra step
    for epoch in range(2):
        seen = [i for r in ranks for i in _flat(r.epoch_batches(epoch))]
        assert sorted(seen) == list(range(n))
    assert shard_rows(n, 9, 0, 1) is None
    with pytest.raises(ValueError):
        shard_rows(3, 9, 0, 4)


def test_rule_keeps_small_sets_at_the_reference_batch():
    for kind in ("cpu", "gpu"):
        p = plan(90_000, kind, 5e-3)  # the demo's training set: under 128 x 1,024 rows
        assert (p.batch_size, p.learning_rate, p.warmup_steps) == (REFERENCE_BATCH, 5e-3, 0)


def test_rule_scales_batch_and_rate_with_data_and_accelerator():
    gpu = plan(20_000_000, "gpu", 5e-3)
    assert gpu.batch_size == MAX_BATCH["gpu"] == 65_536
    assert gpu.steps_per_epoch == 306 and gpu.warmup_steps == 306  # one epoch of warm-up
    assert gpu.learning_rate == pytest.approx(5e-3 * (65_536 / 512) ** 0.5)
    assert gpu.learning_rate * gpu.warmup_start_factor == pytest.approx(5e-3)  # the warm-up starts at the base rate
    assert plan(20_000_000, "cpu", 5e-3).batch_size == MAX_BATCH["cpu"]
    assert plan(2_000_000, "gpu", 5e-3).batch_size == 8_192  # at least 128 steps an epoch
    forced = plan(1_000, "gpu", 5e-3, batch_size=2048)
    assert forced.batch_size == 2048 and forced.learning_rate == pytest.approx(1e-2)
    ddp = plan(20_000_000, "gpu", 5e-3, world_size=4)
    assert ddp.batch_size * 4 <= 4 * MAX_BATCH["gpu"] and ddp.steps_per_epoch >= 128
    assert accelerator_kind("auto", False) == "cpu" and accelerator_kind("auto", True) == "gpu"
    with pytest.raises(ValueError):
        plan(1, "gpu", 5e-3, world_size=2)


def test_pr_auc_on_the_device_matches_numpy():
    rng = np.random.default_rng(1)
    y = (rng.random(4000) < 0.05).astype(np.float32)
    s = np.round(rng.random(4000), 2).astype(np.float32)  # many ties
    assert float(pr_auc_tensor(torch.from_numpy(y), torch.from_numpy(s))) == pytest.approx(pr_auc(y, s), abs=1e-12)


def _schema(n_num: int = 4):
    from seldon.artifact import CategoricalFeature, FeatureSchema, NumericFeature

    cats = [CategoricalFeature(f"c{k}", [str(v) for v in range(5)]) for k in range(2)]
    nums = [NumericFeature(f"x{k}", "identity", 0.0, 1.0, 0.0) for k in range(n_num)]
    return FeatureSchema(model_name="t", model_version="t", categorical=cats, numeric=nums)


def test_train_with_a_large_batch_warms_up_and_reports_what_it_ran_on():
    cat, num, y = _rows(6000, 1)
    num[:, 0] = 0.0
    splits = {"train": (cat, num, y), "val": tuple(a[:1000] for a in _rows(1000, 2))}
    config = TrainConfig(accelerator="cpu", batch_size=1024, max_epochs=2, patience=5, hidden=(8,))
    result = train(_schema(), splits, config, log=lambda _: None, progress_bar=False)
    assert result.batch_size == 1024 and result.warmup_steps == 6  # one epoch: ceil(6000 / 1024)
    assert result.learning_rate == pytest.approx(5e-3 * 2**0.5)
    meta = result.metadata()
    assert meta["accelerator"] == "CPUAccelerator" and str(meta["device_name"]).startswith("cpu")
    assert meta["batch_size"] == 1024 and meta["epochs"] == 2 and meta["data_on_device"] == "true"
    assert float(meta["epoch_samples_per_s"]) > 0 and float(meta["peak_device_memory_mb"]) > 0
    assert len(result.epoch_seconds) == 2
    scores = score(result.module, cat[:100], num[:100], batch=32)
    assert scores.shape == (100,) and np.isfinite(scores).all()


@pytest.mark.slow  # two processes starting Lightning and gloo: 11 s idle, 50 s on a busy 2-core machine
def test_ddp_on_two_cpu_processes_sees_every_row_once_per_epoch(tmp_path):
    rows, batch = 257, 64  # shards of 129 and 128 rows: the short one splits a batch to keep step counts equal
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ddp_check.py"), str(tmp_path), str(rows), str(batch)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    epochs = len(ranks[0]["epochs"])
    assert epochs == 2 and len(ranks[1]["epochs"]) == epochs
    for e in range(epochs):
        seen = ranks[0]["epochs"][e]["ids"] + ranks[1]["epochs"][e]["ids"]
        assert sorted(seen) == list(range(rows))  # every row exactly once across the ranks
        assert ranks[0]["epochs"][e]["steps"] == ranks[1]["epochs"][e]["steps"] == 3
        assert not set(ranks[0]["epochs"][e]["ids"]) & set(ranks[1]["epochs"][e]["ids"])
    assert ranks[0]["epochs"][0]["ids"] != ranks[0]["epochs"][1]["ids"]  # reshuffled each epoch


# Runs a module as if pandas, Dagster, MLflow... were not installed, as on the GPU machine.
WITHOUT_ORCHESTRATION = """
import runpy, sys
sys.path.insert(0, ".")
HIDDEN = {"pandas", "dagster", "mlflow", "feast", "duckdb", "pyarrow", "polars", "evidently", "pyspark", "sklearn"}
class Hide:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        return None if name.split(".")[0] in HIDDEN else self.inner.find_spec(name, path, target)
    def invalidate_caches(self):
        getattr(self.inner, "invalidate_caches", lambda: None)()
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def _without_orchestration(*argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_ORCHESTRATION, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_gpu_check_needs_only_torch_lightning_and_numpy():
    proc = _without_orchestration("bench.gpu_check", "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--smoke" in proc.stdout


@pytest.mark.slow
def test_gpu_check_smoke_run_without_orchestration_packages():
    proc = _without_orchestration("bench.gpu_check", "--smoke", timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "identical weights: True" in proc.stdout and "max |scripted - eager| = 0 " in proc.stdout
    assert "all checks passed" in proc.stdout and "| cpu" in proc.stdout
