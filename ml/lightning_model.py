"""Lightning wrapper, data module and the training entry point.

Imbalance is handled by loss weighting: `pos_weight = sqrt(negatives / positives)`. Full
inverse-frequency weights (~250x here) make the gradient noisy and the scores badly
calibrated; sqrt keeps attention on the rare class while scores stay interpretable. PR-AUC,
the selection metric, only depends on the ranking.

Batches live on the accelerator (`ml/device_data.py`); batch size and learning rate follow the
rule in `ml/batch_rule.py` unless the config forces a batch size (docs/training.md).
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

from seldon.artifact import FeatureSchema

from .batch_rule import BatchPlan, accelerator_kind, plan
from .device_data import EvalBatches, TrainBatches, fits_on_device, nbytes, shard_rows
from .metrics import summary
from .network import FraudNet


@dataclass
class TrainConfig:
    seed: int = 7
    max_epochs: int = 30
    patience: int = 5
    batch_size: int | None = None  # None: the rule in ml/batch_rule.py (per accelerator and data size)
    learning_rate: float = 5e-3  # at the reference batch (512); scaled by the rule for larger batches
    weight_decay: float = 1e-5
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    accelerator: str = "auto"
    devices: int | str = 1  # > 1: DDP, each process on its own shard (run from a script: DDP relaunches it)
    strategy: str = "auto"
    device_memory_share: float = 0.5  # splits go to the device when they fit in this share of its free memory
    eval_batch_size: int = 65_536
    fpr: float = 0.01
    extra: dict = field(default_factory=dict)


def pr_auc_tensor(y: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """`ml.metrics.pr_auc` on the device (same stable tie order), so validation costs one host
    sync per epoch. The k-th positive in score order, at position p, has precision k / (p + 1):
    no cumulative sum, which CUDA's deterministic mode may refuse. NaN without positives."""
    order = torch.sort(score, descending=True, stable=True).indices
    at = torch.nonzero(y[order] > 0.5).squeeze(1).double() + 1.0
    k = torch.arange(1, len(at) + 1, device=at.device, dtype=torch.float64)
    return (k / at).mean()


class FraudModule(L.LightningModule):
    def __init__(self, cardinalities: list[int], n_numeric: int, pos_weight: float, config: dict):
        super().__init__()
        self.save_hyperparameters()
        self.net = FraudNet(cardinalities, n_numeric, tuple(config["hidden"]), config["dropout"])
        self.loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self._loss_sum, self._loss_rows = torch.zeros(()), 0

    def forward(self, cat, num):
        return self.net(cat, num)

    def on_train_epoch_start(self):
        self._loss_sum, self._loss_rows = torch.zeros((), device=self.device), 0

    def training_step(self, batch, _):
        cat, num, y = batch
        loss = self.loss(self.net.logits(cat, num).float(), y)
        # summed on the device and logged once an epoch: `self.log` per step is Python work a
        # GPU step at 65k rows would wait for, and a CPU step at 512 pays for
        self._loss_sum = self._loss_sum + loss.detach() * len(y)
        self._loss_rows += len(y)
        return loss

    def on_train_epoch_end(self):
        # sync_dist: the mean over DDP ranks, once (a no-op on one device)
        self.log("train_loss", self._loss_sum / max(self._loss_rows, 1), prog_bar=True, sync_dist=True)

    def validation_step(self, batch, _):
        cat, num, y = batch
        logits = self.net.logits(cat, num).float()
        self.log("val_loss", self.loss(logits, y), on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self._val_scores.append(torch.sigmoid(logits).detach())  # stays on the device
        self._val_labels.append(y.detach())

    def on_validation_epoch_end(self):
        if self._val_scores:
            value = pr_auc_tensor(torch.cat(self._val_labels), torch.cat(self._val_scores))
            # every rank validates the whole split: the same value everywhere, reduced to silence the check
            self.log("val_pr_auc", torch.nan_to_num(value, nan=0.0).float(), prog_bar=True, sync_dist=True)
        self._val_scores.clear()
        self._val_labels.clear()

    def configure_optimizers(self):
        c = self.hparams["config"]  # save_hyperparameters() keeps __init__'s arguments by name
        # fused: one kernel for all parameters on a GPU (the step is otherwise launch-bound)
        optimizer = torch.optim.AdamW(
            self.parameters(),
            lr=c["learning_rate"],
            weight_decay=c["weight_decay"],
            fused=self.device.type == "cuda" or None,
        )
        warmup = int(c.get("warmup_steps") or 0)
        if not warmup:
            return optimizer
        start = float(c.get("warmup_start_factor") or 1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _Warmup(warmup, start))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


@dataclass(frozen=True)
class _Warmup:
    """Learning-rate factor: linear from `start` to 1 over `steps` optimizer steps, then 1."""

    steps: int
    start: float

    def __call__(self, step: int) -> float:
        return min(1.0, self.start + (1.0 - self.start) * step / self.steps)


class FraudDataModule(L.LightningDataModule):
    """Holds encoded splits (the schema, fitted on train, did the encoding) and puts them on the
    trainer's device once per fit: batches are slices of a per-epoch permutation there."""

    def __init__(
        self,
        splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
        batch_size: int,
        seed: int,
        eval_batch_size: int = 65_536,
        device_memory_share: float = 0.5,
    ):
        super().__init__()
        self.splits, self.batch_size, self.seed = splits, batch_size, seed
        self.eval_batch_size, self.device_memory_share = eval_batch_size, device_memory_share
        self.resident: bool | None = None
        self._train: TrainBatches | None = None
        self._val: EvalBatches | None = None

    def setup(self, stage: str) -> None:
        if self._train is not None:
            return
        trainer = self.trainer
        assert trainer is not None  # setup() is called by the trainer
        device = trainer.strategy.root_device
        rank, world = trainer.global_rank, trainer.world_size
        train, val = self.splits["train"], self.splits["val"]
        rows = shard_rows(len(train[2]), self.seed, rank, world)
        train_bytes = nbytes(*train) if rows is None else nbytes(*train) * len(rows) // len(train[2])
        self.resident = fits_on_device(train_bytes + nbytes(*val), device, self.device_memory_share)
        self._train = TrainBatches(
            train,
            self.batch_size,
            self.seed,
            device,
            rank,
            world,
            self.resident,
            epoch=lambda: trainer.current_epoch,
        )
        self._val = EvalBatches(val, self.eval_batch_size, device, self.resident)

    def train_dataloader(self):
        return self._train

    def val_dataloader(self):
        return self._val


class _EpochReporter(L.Callback):
    """Per-epoch metrics to a log function (the Dagster run log) and to an optional sink (MLflow)."""

    def __init__(self, log: Callable[[str], None], sink: Callable[[dict, int], None] | None):
        self._emit, self._sink = log, sink

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self._emit(f"epoch {trainer.current_epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        if self._sink:
            self._sink(metrics, trainer.current_epoch)


class _EpochTimer(L.Callback):
    """Wall time of each epoch's training steps (validation excluded), for samples/s per epoch.
    Synchronizes a GPU at both ends, once per epoch, so queued kernels are counted."""

    def __init__(self):
        self.seconds: list[float] = []
        self._t0: float | None = None

    @staticmethod
    def _now(module) -> float:
        import time

        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, module):
        self._t0 = self._now(module)

    def _stop(self, module):
        if self._t0 is not None:
            self.seconds.append(self._now(module) - self._t0)
            self._t0 = None

    def on_validation_start(self, trainer, module):
        if not trainer.sanity_checking:
            self._stop(module)

    def on_train_epoch_end(self, trainer, module):
        self._stop(module)


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
    samples_per_s: float  # the whole fit: rows x epochs / wall time, validation and checkpoints included
    epoch_seconds: list[float] = field(default_factory=list)  # training steps only, per epoch
    batch_size: int = 0
    learning_rate: float = 0.0
    warmup_steps: int = 0
    device_name: str = ""
    world_size: int = 1
    data_on_device: bool = True  # False: streamed from pinned host memory in chunks
    peak_memory_bytes: int = 0  # CUDA: max allocated on the device; CPU: the process's peak RSS
    fit_seconds: float = 0.0
    n_train: int = 0

    @property
    def epoch_samples_per_s(self) -> list[float]:
        """Training rows per second of each epoch (all processes together)."""
        return [self.n_train / s for s in self.epoch_seconds if s > 0]

    def metadata(self) -> dict[str, float | int | str]:
        """What the run ran on and how fast: for the asset's metadata and the MLflow run."""
        per_epoch = self.epoch_samples_per_s
        return {
            "accelerator": self.accelerator,
            "device_name": self.device_name,
            "precision": self.precision,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "data_on_device": str(self.data_on_device).lower(),
            "epochs": self.epochs,
            "train_samples_per_s": round(self.samples_per_s, 1),
            "epoch_samples_per_s": round(float(np.median(per_epoch)), 1) if per_epoch else 0.0,
            "peak_device_memory_mb": round(self.peak_memory_bytes / 2**20, 1),
            "fit_seconds": round(self.fit_seconds, 2),
        }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu {platform.machine()} ({torch.get_num_threads()} threads)"


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # kB on Linux


def train(
    schema: FeatureSchema,
    splits: dict,
    config: TrainConfig,
    log: Callable[[str], None] = print,
    metric_sink: Callable[[dict, int], None] | None = None,
    progress_bar: bool | None = None,
    workdir: str | None = None,
    checkpoint_out: str | None = None,
    callbacks: list[L.Callback] | None = None,
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
    precision = pick_precision(config.accelerator)
    timer = _EpochTimer()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        ckpt = ModelCheckpoint(dirpath=tmp, monitor="val_pr_auc", mode="max", save_top_k=1)
        trainer = L.Trainer(
            accelerator=config.accelerator,
            devices=config.devices,
            strategy=config.strategy,
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
                *(callbacks or []),
            ],
        )
        world = trainer.num_devices * trainer.num_nodes  # known before DDP launches its processes
        kind = accelerator_kind(config.accelerator, torch.cuda.is_available())
        rule: BatchPlan = plan(len(y_train), kind, config.learning_rate, config.batch_size, world)
        hparams = {
            **config.__dict__,
            "batch_size": rule.batch_size,
            "learning_rate": rule.learning_rate,
            "warmup_steps": rule.warmup_steps,
            "warmup_start_factor": rule.warmup_start_factor,
        }
        module = FraudModule(cards, len(schema.numeric), pos_weight, hparams)
        data = FraudDataModule(splits, rule.batch_size, config.seed, config.eval_batch_size, config.device_memory_share)
        device = trainer.strategy.root_device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        trainer.fit(module, datamodule=data)
        elapsed = time.perf_counter() - started
        best_path = ckpt.best_model_path
        if not best_path:  # no validation improvement recorded: keep the last weights
            best_path = str(Path(tmp) / "last.ckpt")
            trainer.save_checkpoint(best_path)
        best = FraudModule.load_from_checkpoint(best_path, map_location="cpu")
        if checkpoint_out and trainer.is_global_zero:
            shutil.copyfile(best_path, checkpoint_out)
        trainer.strategy.barrier()  # DDP: rank 0's checkpoint directory lives until every rank has read it
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
        batch_size=rule.batch_size,
        learning_rate=rule.learning_rate,
        warmup_steps=rule.warmup_steps,
        device_name=_device_name(device),
        world_size=trainer.world_size,
        data_on_device=bool(data.resident),
        peak_memory_bytes=_peak_memory(device),
        fit_seconds=elapsed,
        n_train=len(y_train),
    )


def score(
    module: FraudModule, cat: np.ndarray, num: np.ndarray, batch: int = 65536, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Scores of the eager Lightning model, in large batches on `device` (the CPU by default: the
    reference the serving artifact must match)."""
    module = module.to(device).eval()
    out = []
    with torch.inference_mode():
        for c, n, _ in EvalBatches((cat, num, np.zeros(len(cat), np.float32)), batch, device):
            out.append(module(c, n).float().cpu().numpy())
    module.cpu()
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def evaluate(
    module: FraudModule,
    split: tuple[np.ndarray, np.ndarray, np.ndarray],
    fpr: float,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    cat, num, y = split
    return summary(y, score(module, cat, num, device=device), fpr)
