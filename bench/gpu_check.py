"""The GPU check of issue 15, in one run (`bench/gpu_check.sh`): the speed table, determinism
on the GPU (same seed, same weights bit for bit) and the TorchScript export (scores identical to
eager), then model quality under the batch rule at a batch of 65,536 if 300 s of the budget
are left (the 512-batch reference model is the slow part: 16k steps an epoch).

Runs from a checkout on a machine with only torch, Lightning and numpy installed: it imports
`bench.train_*` and `ml/` modules that need nothing else (no pandas, Dagster, MLflow).
`--smoke` runs it small, on the CPU too (the test suite does, to keep it working).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

import numpy as np
import torch

STARTED = time.perf_counter()


def _say(msg: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {msg}", flush=True)


def determinism(rows: int, accelerator: str) -> bool:
    from bench.train_synth import make_splits
    from ml.lightning_model import TrainConfig, train

    schema, splits = make_splits(rows, seed=11)
    cfg = TrainConfig(accelerator=accelerator, max_epochs=2, patience=5, seed=3)
    runs = [train(schema, splits, cfg, log=lambda _: None, progress_bar=False) for _ in range(2)]
    a, b = (r.module.state_dict() for r in runs)
    same = all(torch.equal(a[k], b[k]) for k in a)
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    r = runs[0]
    _say(
        f"determinism on {r.device_name} ({r.precision}, batch {r.batch_size:,}, {rows:,} rows, 2 epochs): "
        f"same seed -> identical weights: {same} (max |diff| {diff:g})"
    )
    return same


def export(rows: int, accelerator: str) -> bool:
    from bench.train_synth import make_splits
    from ml.export import export_artifact
    from ml.lightning_model import TrainConfig, score, train
    from seldon.artifact import MODEL_FILE

    schema, splits = make_splits(rows, seed=12)
    result = train(schema, splits, TrainConfig(accelerator=accelerator, max_epochs=1), log=lambda _: None)
    cat, num, _ = splits["test"]
    eager = score(result.module, cat, num)  # on the CPU, as the serving artifact runs
    with tempfile.TemporaryDirectory() as tmp:
        scripted = torch.jit.load(str(export_artifact(result.module.net, schema, tmp) / MODEL_FILE))
        with torch.inference_mode():
            served = scripted(torch.from_numpy(cat), torch.from_numpy(num)).numpy()
    diff = float(np.max(np.abs(served - eager)))
    _say(
        f"TorchScript export of the {result.device_name}-trained model: "
        f"max |scripted - eager| = {diff:g} on {len(cat):,} rows"
    )
    return diff == 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--cpu-rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cpu-epochs", type=int, default=1)
    parser.add_argument("--check-rows", type=int, default=2_000_000, help="rows for determinism and export")
    parser.add_argument("--quality-rows", type=int, default=8_400_000, help="0: skip; 8.4M gives the rule 65,536")
    parser.add_argument("--quality-epochs", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=540, help="skip the quality step past this")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU-only machines, the test suite)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.cpu_rows, args.epochs, args.cpu_epochs = 20_000, 20_000, 1, 1
        args.check_rows, args.quality_rows, args.quality_epochs = 5_000, 20_000, 1
    import lightning

    from bench.train_speed import run, table

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # after the import, which sets INFO

    cuda = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    _say(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, lightning {lightning.__version__}, "
        f"GPU: {gpu}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads"
    )
    legs = run(args.rows, args.cpu_rows, args.epochs, args.cpu_epochs, log=_say)
    print(f"\n## bench-train synthetic ({args.rows:,} GPU rows; CPU rows use {args.cpu_rows:,} rows)\n")
    print(table(legs) + "\n", flush=True)
    accelerator = "gpu" if cuda else "cpu"
    ok = determinism(args.check_rows, accelerator)
    ok = export(args.check_rows, accelerator) and ok
    left = args.budget_s - (time.perf_counter() - STARTED)
    if (args.quality_rows and left > 300) or args.smoke:
        from bench.train_quality import HEADER, compare
        from bench.train_synth import make_splits

        schema, splits = make_splits(args.quality_rows, seed=21, eval_rows=max(args.quality_rows // 10, 20_000))
        rows = compare(schema, splits, "synthetic", accelerator, args.quality_epochs, log=_say)
        print("\n" + HEADER + "\n" + "\n".join(rows) + "\n")
    else:
        _say(f"quality step skipped: {left:.0f}s left of the budget")
    _say("all checks passed" if ok else "a check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
