"""Lightning wrapper, data module and the training entry point.

Imbalance is handled by loss weighting: `pos_weight = sqrt(negatives / positives)`. Full
inverse-frequency weights (~250x here) make the gradient noisy and the scores badly
calibrated; sqrt keeps attention on the rare class while scores stay interpretable. PR-AUC,
the selection metric, only depends on the ranking.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from seldon.artifact import FeatureSchema

from .metrics import pr_auc, summary
from .network import FraudNet


@dataclass
class TrainConfig:
    seed: int = 7
    max_epochs: int = 30
    patience: int = 5
    batch_size: int = 512
    learning_rate: float = 5e-3
    weight_decay: float = 1e-5
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    accelerator: str = "auto"
    devices: str = "auto"
    fpr: float = 0.01
    extra: dict = field(default_factory=dict)


class FraudModule(L.LightningModule):
    def __init__(self, cardinalities: list[int], n_numeric: int, pos_weight: float, config: dict):
        super().__init__()
        self.save_hyperparameters()
        self.net = FraudNet(cardinalities, n_numeric, tuple(config["hidden"]), config["dropout"])
        self.loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []

    def forward(self, cat, num):
        return self.net(cat, num)

    def training_step(self, batch, _):
        cat, num, y = batch
        loss = self.loss(self.net.logits(cat, num).float(), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, _):
        cat, num, y = batch
        logits = self.net.logits(cat, num).float()
        self.log("val_loss", self.loss(logits, y), on_epoch=True, prog_bar=True)
        self._val_scores.append(torch.sigmoid(logits).detach().cpu())
        self._val_labels.append(y.detach().cpu())

    def on_validation_epoch_end(self):
        if self._val_scores:
            score = torch.cat(self._val_scores).numpy()
            y = torch.cat(self._val_labels).numpy()
            value = pr_auc(y, score)
            self.log("val_pr_auc", 0.0 if math.isnan(value) else value, prog_bar=True)
        self._val_scores.clear()
        self._val_labels.clear()

    def configure_optimizers(self):
        c = self.hparams["config"]  # save_hyperparameters() keeps __init__'s arguments by name
        return torch.optim.AdamW(self.parameters(), lr=c["learning_rate"], weight_decay=c["weight_decay"])


class FraudDataModule(L.LightningDataModule):
    """Holds encoded splits; the schema (fitted on train) did the encoding."""

    def __init__(self, splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], batch_size: int, seed: int):
        super().__init__()
        self.splits, self.batch_size, self.seed = splits, batch_size, seed

    def _dataset(self, name):
        cat, num, y = self.splits[name]
        return TensorDataset(torch.from_numpy(cat), torch.from_numpy(num), torch.from_numpy(y.astype(np.float32)))

    # Whole batches are cut with one fancy index (TensorDataset accepts index lists): the
    # default per-row indexing and collation cost more than the network itself.
    def train_dataloader(self):
        data = self._dataset("train")
        gen = torch.Generator().manual_seed(self.seed)
        batches = BatchSampler(RandomSampler(data, generator=gen), self.batch_size, drop_last=False)
        return DataLoader(data, sampler=batches, batch_size=None)

    def val_dataloader(self):
        data = self._dataset("val")
        return DataLoader(data, sampler=BatchSampler(SequentialSampler(data), 8192, False), batch_size=None)


class _EpochReporter(L.Callback):
    """Per-epoch metrics to a log function (the Dagster run log) and to an optional sink (MLflow)."""

    def __init__(self, log: Callable[[str], None], sink: Callable[[dict, int], None] | None):
        self._emit, self._sink = log, sink

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self._emit(f"epoch {trainer.current_epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        if self._sink:
            self._sink(metrics, trainer.current_epoch)


class _EpochTimer(L.Callback):
    """Wall time of each training epoch (for samples/s per epoch)."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module):
        import time

        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        import time

        self.seconds.append(time.perf_counter() - self._t0)


def pick_precision(accelerator: str) -> Literal["bf16-mixed", "32-true"]:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "bf16-mixed"
    return "32-true"


@dataclass
class TrainResult:
    module: FraudModule
    epochs: int
    accelerator: str
    precision: str
    best_val_pr_auc: float
    samples_per_s: float
    epoch_seconds: list[float] = field(default_factory=list)


def train(
    schema: FeatureSchema,
    splits: dict,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    metric_sink: Callable[[dict, int], None] | None = None,
    progress_bar: bool | None = None,
    workdir: str | None = None,
    checkpoint_out: str | None = None,
) -> TrainResult:
    import shutil
    import sys
    import tempfile
    import time
    from pathlib import Path

    L.seed_everything(config.seed, workers=True, verbose=False)
    y_train = splits["train"][2]
    pos = max(float(y_train.sum()), 1.0)
    pos_weight = math.sqrt(max(len(y_train) - pos, 1.0) / pos)
    cards = [c.cardinality for c in schema.categorical]
    module = FraudModule(cards, len(schema.numeric), pos_weight, config.__dict__)
    precision = pick_precision(config.accelerator)
    timer = _EpochTimer()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ckpt = ModelCheckpoint(dirpath=tmp, monitor="val_pr_auc", mode="max", save_top_k=1)
        trainer = L.Trainer(
            accelerator=config.accelerator,
            devices=config.devices,
            precision=precision,
            max_epochs=config.max_epochs,
            logger=False,
            default_root_dir=tmp,
            # CPU kernels are deterministic once seeded (a test compares weights bit for bit);
            # torch's deterministic-algorithms mode would cost 2.3x here, so only GPUs get it.
            deterministic=precision != "32-true",
            enable_progress_bar=sys.stderr.isatty() if progress_bar is None else progress_bar,
            enable_model_summary=False,
            callbacks=[
                EarlyStopping(monitor="val_pr_auc", mode="max", patience=config.patience),
                ckpt,
                _EpochReporter(log, metric_sink),
                timer,
            ],
        )
        data = FraudDataModule(splits, config.batch_size, config.seed)
        started = time.perf_counter()
        trainer.fit(module, datamodule=data)
        elapsed = time.perf_counter() - started
        best_path = ckpt.best_model_path
        if not best_path:  # no validation improvement recorded: keep the last weights
            best_path = str(Path(tmp) / "last.ckpt")
            trainer.save_checkpoint(best_path)
        best = FraudModule.load_from_checkpoint(best_path, map_location="cpu")
        if checkpoint_out:
            shutil.copyfile(best_path, checkpoint_out)
    best = best.cpu().eval()
    epochs = trainer.current_epoch
    return TrainResult(
        module=best,
        epochs=epochs,
        accelerator=trainer.accelerator.__class__.__name__,
        precision=precision,
        best_val_pr_auc=float(ckpt.best_model_score or 0.0),
        samples_per_s=len(y_train) * max(epochs, 1) / max(elapsed, 1e-9),
        epoch_seconds=timer.seconds,
    )


def score(module: FraudModule, cat: np.ndarray, num: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Eager scores of the Lightning model (the reference the serving artifact must match)."""
    module = module.cpu().eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(cat), batch):
            out.append(
                module(torch.from_numpy(cat[s : s + batch]), torch.from_numpy(num[s : s + batch])).float().numpy()
            )
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def evaluate(module: FraudModule, split: tuple[np.ndarray, np.ndarray, np.ndarray], fpr: float) -> dict[str, float]:
    cat, num, y = split
    return summary(y, score(module, cat, num), fpr)
