"""`make bench-train` synthetic mode: training samples/s of our `train()` beside the plain-torch
floor (`bench/train_floor.py`) at the same device, rows and batch.

Rows of the table: `train()` on the CPU at 512 (today's default) and at the GPU batch, on
`cpu_rows` rows (a 16-core CPU at 512 would take minutes an epoch at GPU scale: the table says
how many rows each line used); then, where CUDA is present, `train()` on the GPU at the rule's
GPU batch on all `rows`. Imports torch, Lightning, numpy and `ml/` only (the GPU check runs it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from bench.train_floor import floor_epochs
from bench.train_synth import make_splits
from ml.batch_rule import plan
from ml.lightning_model import TrainConfig, train

TARGET_SAMPLES_PER_S = 10_000_000
TARGET_FLOOR_SHARE = 0.5


@dataclass
class Leg:
    device: str
    rows: int
    batch: int
    epochs: int
    ours: list[float]  # samples/s per epoch
    floor: list[float]
    ours_peak: int
    floor_peak: int
    precision: str
    data_on_device: bool

    @property
    def ratio(self) -> float:
        return float(np.median(self.ours) / np.median(self.floor)) if self.floor else float("nan")


def _subset(split, n):
    return tuple(a[:n] for a in split)


def run_leg(schema, splits, device: str, rows: int, batch: int, epochs: int, log=print) -> Leg:
    sub = {"train": _subset(splits["train"], rows), "val": _subset(splits["val"], max(rows // 10, 10_000))}
    accelerator = "gpu" if device == "cuda" else "cpu"
    cfg = TrainConfig(accelerator=accelerator, batch_size=batch, max_epochs=epochs, patience=epochs + 1)
    t = time.perf_counter()
    result = train(schema, sub, cfg, log=lambda _: None, progress_bar=False)
    log(f"  train() {device} batch {batch}: {time.perf_counter() - t:.1f}s")
    cards = [c.cardinality for c in schema.categorical]
    t = time.perf_counter()
    seconds, floor_peak = floor_epochs(cards, sub["train"], batch, epochs, device, result.learning_rate)
    log(f"  floor   {device} batch {batch}: {time.perf_counter() - t:.1f}s")
    return Leg(
        device=result.device_name,
        rows=rows,
        batch=batch,
        epochs=result.epochs,
        ours=result.epoch_samples_per_s,
        floor=[rows / s for s in seconds],
        ours_peak=result.peak_memory_bytes if device == "cuda" else 0,
        floor_peak=floor_peak,
        precision=result.precision,
        data_on_device=result.data_on_device,
    )


def run(rows: int, cpu_rows: int, epochs: int, cpu_epochs: int, log=print) -> list[Leg]:
    t = time.perf_counter()
    schema, splits = make_splits(max(rows, cpu_rows))
    log(f"synthetic set: {max(rows, cpu_rows):,} training rows in {time.perf_counter() - t:.1f}s")
    gpu_batch = plan(rows, "gpu", 5e-3).batch_size
    legs = [
        run_leg(schema, splits, "cpu", cpu_rows, 512, cpu_epochs, log),
        run_leg(schema, splits, "cpu", cpu_rows, gpu_batch, cpu_epochs, log),
    ]
    if torch.cuda.is_available():
        legs.append(run_leg(schema, splits, "cuda", rows, gpu_batch, epochs, log))
    return legs


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x / 1e6:.3f}M" for x in xs)


def table(legs: list[Leg]) -> str:
    out = [
        "| device | rows | batch | precision | ours samples/s per epoch | ours median | floor median | ours/floor "
        "| peak device memory ours / floor |",
        "|---|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for g in legs:
        mem = "host (n/a)" if not g.floor_peak else f"{g.ours_peak / 2**30:.2f} / {g.floor_peak / 2**30:.2f} GiB"
        out.append(
            f"| {g.device} | {g.rows:,} | {g.batch:,} | {g.precision} | {_fmt(g.ours)} | "
            f"{np.median(g.ours):,.0f} | {np.median(g.floor):,.0f} | {g.ratio:.2f} | {mem} |"
        )
    gpu = [g for g in legs if g.floor_peak]
    for g in gpu:
        ours = float(np.median(g.ours))
        out.append(
            f"\ntargets on {g.device}: ours {ours:,.0f} samples/s "
            f"({'meets' if ours >= TARGET_SAMPLES_PER_S else 'MISSES'} >= {TARGET_SAMPLES_PER_S:,}); "
            f"ours/floor {g.ratio:.2f} ({'meets' if g.ratio >= TARGET_FLOOR_SHARE else 'MISSES'} >= "
            f"{TARGET_FLOOR_SHARE:.0%}); data on device: {g.data_on_device}"
        )
    if not gpu:
        out.append("\nno CUDA device here: the GPU row and its targets need `bench/gpu_check.sh` on a GPU machine")
    return "\n".join(out)
