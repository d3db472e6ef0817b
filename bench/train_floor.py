"""The plain-torch floor: what the same network trains at on a device with nothing in the way.

Data on the device, a seeded permutation drawn there each epoch, batches as index slices of it,
bf16 autocast and fused AdamW on a GPU (fp32 and the default AdamW on a CPU), no Lightning, no
validation, no logging. `train()` is measured against it at the same batch size (the ratio in
`make bench-train`). Imports torch and `ml.network` only.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ml.network import FraudNet

Split = tuple[np.ndarray, np.ndarray, np.ndarray]


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def floor_epochs(
    cardinalities: list[int],
    train: Split,
    batch: int,
    epochs: int,
    device: str | torch.device,
    learning_rate: float = 5e-3,
    seed: int = 7,
) -> tuple[list[float], int]:
    """Seconds of each epoch, and the peak device memory in bytes (0 on a CPU)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    cat, num, y = (torch.from_numpy(a).to(device) for a in train)
    pos = max(float(train[2].sum()), 1.0)
    net = FraudNet(cardinalities, num.shape[1]).to(device).train()
    loss_fn = torch.nn.BCEWithLogitsLoss(
        pos_weight=torch.tensor(math.sqrt(max(len(y) - pos, 1.0) / pos), device=device)
    )
    opt = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-5, fused=cuda or None)
    gen = torch.Generator(device=device).manual_seed(seed)
    seconds = []
    for _ in range(epochs):
        t0 = _sync(device)
        order = torch.randperm(len(y), generator=gen, device=device)
        for s in range(0, len(y), batch):
            idx = order[s : s + batch]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                logits = net.logits(cat[idx], num[idx]).float()
            loss = loss_fn(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds.append(_sync(device) - t0)
    peak = int(torch.cuda.max_memory_allocated(device)) if cuda else 0
    return seconds, peak
