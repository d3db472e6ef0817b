"""Model quality under the batch/learning-rate rule against today's small-batch model.

Trains today's model (batch 512, rate 5e-3, no warm-up) and the rule's model for a GPU (and for
a CPU where that differs) on the same splits, and prints the test PR-AUC of each with its
bootstrap standard error: the rule holds when its PR-AUC is within one standard error of
today's. Same device for all rows (the CPU here: fp32; on a GPU, bf16), so only the batch and
rate differ.

Usage: .venv/bin/python -m bench.train_quality --rows 2000000 [--max-epochs 8]
       .venv/bin/python -m bench.train_quality --pipeline-root data/bench/train   (after `make bench-train`)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ml.batch_rule import plan
from ml.lightning_model import TrainConfig, score, train
from ml.metrics import pr_auc


def bootstrap_se(y: np.ndarray, s: np.ndarray, reps: int = 200, seed: int = 0) -> float:
    """Standard deviation of PR-AUC over test rows resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = [pr_auc(y[idx], s[idx]) for idx in (rng.integers(0, len(y), len(y)) for _ in range(reps))]
    return float(np.nanstd(values, ddof=1))


def compare(schema, splits, label: str, accelerator: str, max_epochs: int, extra_batches=(), log=print) -> list[str]:
    n = len(splits["train"][2])
    runs = {"today (512, 5e-3, no warm-up)": 512}
    runs["GPU rule"] = plan(n, "gpu", 5e-3).batch_size
    cpu = plan(n, "cpu", 5e-3).batch_size
    if cpu != runs["GPU rule"]:
        runs["CPU rule"] = cpu
    for b in extra_batches:
        runs[f"forced {b:,} (rule's rate)"] = b
    y = splits["test"][2]
    rows, base = [], None
    for name, batch in runs.items():
        t = time.perf_counter()
        cfg = TrainConfig(accelerator=accelerator, batch_size=batch, max_epochs=max_epochs)
        result = train(schema, splits, cfg, log=lambda _: None, progress_bar=False)
        s = score(result.module, splits["test"][0], splits["test"][1], device="cuda" if accelerator == "gpu" else "cpu")
        ap, se = pr_auc(y, s), bootstrap_se(y, s, reps=200 if len(y) < 500_000 else 60)
        base = base or (ap, se)
        diff = ap - base[0]
        rows.append(
            f"| {label} | {n:,} | {name} | {result.batch_size:,} | {result.learning_rate:.4f} | {result.warmup_steps} "
            f"| {result.epochs} | {ap:.4f} | {se:.4f} | {diff:+.4f} | {'yes' if abs(diff) <= base[1] else 'NO'} |"
        )
        log(rows[-1] + f"  ({time.perf_counter() - t:.0f}s, {result.precision})")
    return rows


HEADER = (
    "| training set | train rows | model | batch | learning rate | warm-up steps | epochs | test PR-AUC "
    "| bootstrap SE | vs today | within today's SE |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=0, help="synthetic training rows (bench/train_synth.py)")
    parser.add_argument("--pipeline-root", default="", help="a bench-train pipeline root with a training_set")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--accelerator", default="cpu")
    args = parser.parse_args()
    rows = []
    if args.pipeline_root:
        from assets.training import read_splits
        from ml.dataset import encode_split
        from ml.features import CATEGORICAL, FILL, NUMERIC
        from ml.schema_fit import fit_schema
        from resources import local_resources

        frames = read_splits(local_resources(args.pipeline_root)["lake"])
        schema = fit_schema(frames["train"], CATEGORICAL, NUMERIC, FILL, "bench")
        splits = {k: encode_split(schema, v) for k, v in frames.items()}
        rows += compare(schema, splits, "pipeline", args.accelerator, args.max_epochs, extra_batches=(2048,))
    if args.rows:
        from bench.train_synth import make_splits

        schema, splits = make_splits(args.rows, eval_rows=max(args.rows // 10, 20_000))
        rows += compare(schema, splits, "synthetic", args.accelerator, args.max_epochs)
    print("\n" + HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
