"""DDP on two CPU processes through `ml.lightning_model.train` (run as a script by
tests/test_training_device.py: DDP relaunches `sys.argv`, which inside pytest would rerun the
session).

Numeric column 0 carries each training row's id, so a callback can write the ids (and the
number of steps) every rank saw in every epoch to `<out>/rank<r>.json`; the test checks that,
across ranks, each row is seen exactly once per epoch and that both ranks ran the same number
of steps.

Usage: python tests/ddp_check.py OUT_DIR [ROWS] [BATCH]
"""

import json
import sys
from pathlib import Path

import lightning as L
import numpy as np

from ml.lightning_model import TrainConfig, train
from seldon.artifact import CategoricalFeature, FeatureSchema, NumericFeature


class _SeenRows(L.Callback):
    def __init__(self, out: Path):
        self.out, self.epochs, self.current = out, [], {"ids": [], "steps": 0}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.current["ids"].extend(int(v) for v in batch[1][:, 0].tolist())
        self.current["steps"] += 1

    def on_train_epoch_end(self, trainer, module):
        self.epochs.append(self.current)
        self.current = {"ids": [], "steps": 0}
        (self.out / f"rank{trainer.global_rank}.json").write_text(
            json.dumps({"world_size": trainer.world_size, "epochs": self.epochs})
        )


def _split(n: int, seed: int, ids: bool):
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, 4, (n, 1))
    num = rng.standard_normal((n, 3), dtype=np.float32)
    if ids:
        num[:, 0] = np.arange(n, dtype=np.float32)
    y = ((cat[:, 0] == 1) & (num[:, 1] > 0.5)).astype(np.float32)
    return cat, num, y


def main() -> None:
    out = Path(sys.argv[1])
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 257
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 64
    schema = FeatureSchema(
        model_name="ddp",
        model_version="check",
        categorical=[CategoricalFeature("c", ["a", "b", "c", "d"])],
        numeric=[NumericFeature(f"x{k}", "identity", 0.0, 1.0, 0.0) for k in range(3)],
    )
    splits = {"train": _split(rows, 1, ids=True), "val": _split(200, 2, ids=False)}
    config = TrainConfig(
        accelerator="cpu", devices=2, strategy="ddp", batch_size=batch, max_epochs=2, patience=10, hidden=(8,)
    )
    result = train(schema, splits, config, log=lambda _: None, progress_bar=False, callbacks=[_SeenRows(out)])
    if result.world_size != 2:
        raise SystemExit(f"expected 2 processes, got {result.world_size}")


if __name__ == "__main__":
    main()
