"""`make bench-train`: training throughput on the CPU, scoring throughput of the serving artifact
(TorchScript, in .venv-serving) beside the eager Lightning model, and model quality against the
fraud prevalence and the logistic-regression baseline, all in one run.

With `--rows N` it runs the synthetic mode instead (`bench/train_speed.py`, no pipeline run):
samples/s per epoch of `train()` on the CPU at 512 and at the GPU batch, on the GPU where one is
present, each beside the plain-torch floor at the same batch.

Usage: .venv/bin/python -m bench.bench_train [--days 35 --events-per-day 6000]
       .venv/bin/python -m bench.bench_train --rows 20000000 [--cpu-rows 1000000 --epochs 3 --cpu-epochs 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
SERVING_PYTHON = ROOT / ".venv-serving" / "bin" / "python"

SERVING_TIMER = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
net = torch.jit.load(sys.argv[1])
data = np.load(sys.argv[2])
cat, num = torch.from_numpy(data["cat"]), torch.from_numpy(data["num"])
out = {}
for batch, calls in ((1, 3000), (1024, 200)):
    with torch.inference_mode():
        for s in range(0, 50):  # warm-up
            net(cat[s:s + batch], num[s:s + batch])
        t = time.perf_counter()
        for k in range(calls):
            s = (k * batch) % (len(cat) - batch)
            net(cat[s:s + batch], num[s:s + batch])
        out[batch] = calls * batch / (time.perf_counter() - t)
print(json.dumps(out))
"""


def _build(root: Path, days: int, events_per_day: int):
    import dagster as dg

    import definitions
    from driftline.pipeline import run_data_plane
    from resources import SyntheticEventSource, local_resources

    resources = local_resources(str(root))
    resources["event_source"] = SyntheticEventSource(
        events_per_day=events_per_day,
        n_users=events_per_day,
        n_merchants=max(events_per_day // 6, 100),
        fraud_rate=0.005,
    )
    # The asset modules define only AssetsDefinitions (no specs, source or cacheable assets).
    assets = cast(list[dg.AssetsDefinition], list(definitions.defs.assets or []))
    marker = root / "params.json"
    params = {"days": days, "events_per_day": events_per_day}
    if not marker.exists() or json.loads(marker.read_text()) != params:
        start = dt.date(2026, 10, 1)
        run_data_plane(assets, resources, [(start + dt.timedelta(days=k)).isoformat() for k in range(days)])
        selection = [a for a in assets if a.key.to_user_string() == "training_set"]
        dg.materialize(
            assets,
            selection=selection,
            resources=resources,
            run_config={"ops": {"training_set": {"config": {"window_days": days - 12, "maturity_days": 10}}}},
        )
        marker.write_text(json.dumps(params))
    return resources


def _eager_rows_per_s(module, cat, num, batch: int, calls: int) -> float:
    import torch

    module.eval()
    with torch.inference_mode():
        for s in range(50):
            module(torch.from_numpy(cat[s : s + batch]), torch.from_numpy(num[s : s + batch]))
        t = time.perf_counter()
        for k in range(calls):
            s = (k * batch) % (len(cat) - batch)
            module(torch.from_numpy(cat[s : s + batch]), torch.from_numpy(num[s : s + batch]))
    return calls * batch / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--events-per-day", type=int, default=6000)
    parser.add_argument("--root", default="data/bench/train")
    parser.add_argument("--rows", type=int, default=0, help="synthetic mode: training rows for the GPU row")
    parser.add_argument("--cpu-rows", type=int, default=200_000, help="synthetic mode: rows for the CPU rows")
    parser.add_argument("--epochs", type=int, default=3, help="synthetic mode: epochs on the GPU")
    parser.add_argument("--cpu-epochs", type=int, default=2, help="synthetic mode: epochs on the CPU")
    args = parser.parse_args()
    if args.rows:
        synthetic(args.rows, min(args.cpu_rows, args.rows), args.epochs, args.cpu_epochs)
        return

    import logging
    import tempfile

    import numpy as np
    import torch

    from assets.evaluation import baseline_scores
    from assets.training import read_splits
    from ml.dataset import encode_split
    from ml.export import export_artifact
    from ml.features import CATEGORICAL, FILL, NUMERIC
    from ml.lightning_model import TrainConfig, evaluate, train
    from ml.metrics import pr_auc
    from ml.schema_fit import fit_schema

    logging.disable(logging.WARNING)
    resources = _build(Path(args.root), args.days, args.events_per_day)
    frames = read_splits(resources["lake"])
    schema = fit_schema(frames["train"], CATEGORICAL, NUMERIC, FILL, "bench")
    splits = {k: encode_split(schema, v) for k, v in frames.items()}
    result = train(schema, splits, TrainConfig(), log=lambda _: None, progress_bar=False)
    n_train = len(splits["train"][2])
    per_epoch = [n_train / s for s in result.epoch_seconds]
    test = evaluate(result.module, splits["test"], 0.01)
    y = splits["test"][2]
    base = pr_auc(y, baseline_scores(frames["train"], frames["test"], schema))

    torch.set_num_threads(1)  # as each serving worker runs
    cat, num, _ = splits["test"]
    eager = {b: _eager_rows_per_s(result.module, cat, num, b, c) for b, c in ((1, 3000), (1024, 200))}
    with tempfile.TemporaryDirectory() as tmp:
        artifact = export_artifact(result.module.net, schema, Path(tmp) / "serving")
        np.savez(Path(tmp) / "rows.npz", cat=cat, num=num)
        out = subprocess.run(
            [str(SERVING_PYTHON), "-c", SERVING_TIMER, str(artifact / "model.pt"), str(Path(tmp) / "rows.npz")],
            capture_output=True,
            text=True,
            check=True,
        )
        scripted = {int(k): v for k, v in json.loads(out.stdout).items()}

    print(
        f"\n## bench-train ({n_train} training rows, {len(y)} test rows, CPU, "
        f"{torch.get_num_threads()} scoring thread, {sys.platform})\n"
    )
    print("| measure | figure |\n|---|---|")
    print(
        f"| training samples/s per epoch (training steps only; CPU, {result.precision}) | "
        + ", ".join(f"{x:,.0f}" for x in per_epoch)
        + f" (median {np.median(per_epoch):,.0f}) |"
    )
    print(
        f"| whole fit samples/s (validation and checkpoints included) | {result.samples_per_s:,.0f} "
        f"(batch {result.batch_size}, {result.device_name}) |"
    )
    print(f"| epochs (early stopping on val PR-AUC) | {result.epochs} |")
    print("\n| scoring rows/s | eager Lightning (.venv) | TorchScript artifact (.venv-serving) | ratio |")
    print("|---|---|---|---|")
    for b in (1, 1024):
        print(f"| batch {b} | {eager[b]:,.0f} | {scripted[b]:,.0f} | {scripted[b] / eager[b]:.2f}x |")
    print("\n| quality on the later-in-time test split | value |\n|---|---|")
    print(f"| fraud prevalence (PR-AUC of a random scorer) | {test['prevalence']:.4f} |")
    print(f"| logistic-regression baseline PR-AUC | {base:.4f} |")
    print(f"| fraud_model PR-AUC | {test['pr_auc']:.4f} ({test['pr_auc'] / test['prevalence']:.0f}x prevalence) |")
    print(f"| fraud_model ROC-AUC | {test['roc_auc']:.4f} |")
    print(f"| recall at 1% FPR | {test['recall_at_fpr_0.01']:.3f} |")
    gpu = "present: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none on this machine"
    print(f"| GPU | {gpu} |")


def synthetic(rows: int, cpu_rows: int, epochs: int, cpu_epochs: int) -> None:
    import logging
    import os

    import torch

    from bench.train_speed import run, table

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # after the import, which sets INFO
    legs = run(rows, cpu_rows, epochs, cpu_epochs)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(
        f"\n## bench-train synthetic ({rows:,} GPU rows, {cpu_rows:,} CPU rows, {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads, GPU: {gpu}, torch {torch.__version__})\n"
    )
    print(table(legs))


if __name__ == "__main__":
    main()
