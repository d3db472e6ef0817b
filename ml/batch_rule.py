"""Batch size and learning rate per accelerator and data size (stdlib only).

The rule (docs/training.md):
- batch = the largest power of two with at least `MIN_STEPS_PER_EPOCH` optimizer steps per epoch,
  between `REFERENCE_BATCH` (today's CPU default) and the accelerator's cap: a GPU only pays from
  16k-64k rows a step; a CPU stops at 4,096 (fast enough there, and its quality is measured);
- learning rate = base x sqrt(global batch / REFERENCE_BATCH) (square-root scaling for Adam);
- warm-up: when the rate is scaled up, it grows linearly from the base rate to the scaled rate
  over the first epoch's steps (the usual guard against unstable first steps at a scaled-up rate).

At the reference batch the settings are those from before the rule: same rate, no warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_BATCH = 512
MIN_STEPS_PER_EPOCH = 128
MAX_BATCH = {"cpu": 4096, "gpu": 65_536}


@dataclass(frozen=True)
class BatchPlan:
    batch_size: int  # rows per step on each process
    learning_rate: float  # after warm-up
    warmup_steps: int  # 0: none
    warmup_start_factor: float  # the warm-up starts at learning_rate * this
    steps_per_epoch: int
    world_size: int = 1


def accelerator_kind(accelerator: str, cuda_available: bool) -> str:
    """ "cpu" or "gpu", as Lightning's "auto" would resolve it."""
    if accelerator == "cpu":
        return "cpu"
    if accelerator == "auto":
        return "gpu" if cuda_available else "cpu"
    return "gpu"


def _pow2_floor(x: float) -> int:
    return 1 << max(0, math.floor(math.log2(max(x, 1.0))))


def plan(n_train: int, kind: str, base_lr: float, batch_size: int | None = None, world_size: int = 1) -> BatchPlan:
    """`batch_size` forces the batch (the rate still follows the rule); None applies the rule."""
    if n_train < world_size:
        raise ValueError(f"{n_train} training rows cannot be shared by {world_size} processes")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if batch_size is None:
        cap = MAX_BATCH.get(kind, MAX_BATCH["cpu"])
        global_batch = _pow2_floor(n_train / MIN_STEPS_PER_EPOCH)
        global_batch = min(cap * world_size, max(REFERENCE_BATCH, global_batch))
        batch_size = max(1, global_batch // world_size)
    global_batch = batch_size * world_size
    scale = math.sqrt(max(global_batch, REFERENCE_BATCH) / REFERENCE_BATCH)
    per_rank_rows = math.ceil(n_train / world_size)
    steps = math.ceil(per_rank_rows / batch_size)
    warmup = steps if scale > 1.0 else 0
    return BatchPlan(
        batch_size=batch_size,
        learning_rate=base_lr * scale,
        warmup_steps=warmup,
        warmup_start_factor=1.0 / scale,
        steps_per_epoch=steps,
        world_size=world_size,
    )
