"""Training batches that live on the accelerator.

A `DataLoader` over a `TensorDataset` costs a Python index list, a gather and (on a GPU) a
host-to-device copy per step: on an H200 that host work, not the GPU, set the pace (1M samples/s
where the same network trains at 22M). Here the encoded splits go to the device once per fit, a
seeded permutation is drawn on the device each epoch and batches are slices of it (one gather per
tensor per step, no host work). When a split does not fit in the configured share of free device
memory it stays in pinned host memory and goes over in large chunks (`non_blocking=True`, on a
copy stream, one chunk ahead). On a CPU the host is the device: the same code, no copies.

Under DDP each rank holds only its own shard (a seeded, fixed partition of the rows); every rank
runs the same number of steps (collectives would hang otherwise) and, across ranks, every row is
seen exactly once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch  # noqa: TID253  # this module exists to hold tensors; callers import it inside functions

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # categorical indices, numerics, labels
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def mixed_seed(*parts: int) -> int:
    """One 32-bit seed from several integers (seed, epoch, rank), well mixed."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def shard_rows(n: int, seed: int, rank: int, world_size: int) -> np.ndarray | None:
    """Rows of `rank`'s shard: a seeded permutation dealt round-robin (sizes differ by at most
    one). None for a single process: it keeps every row, in place."""
    if world_size == 1:
        return None
    if n < world_size:
        raise ValueError(f"{n} rows cannot be shared by {world_size} processes")
    order = np.random.default_rng(mixed_seed(seed, 0x5EED)).permutation(n)
    return np.sort(order[rank::world_size])


def batch_sizes(n_rows: int, batch: int, n_batches: int) -> list[int]:
    """Sizes of `n_batches` consecutive batches covering `n_rows`: full batches, then the rest.
    A rank whose shard is one row short of another's may be a batch short: its last full batch is
    split in two, so every rank runs the same number of steps."""
    sizes = [batch] * (n_rows // batch)
    if n_rows % batch:
        sizes.append(n_rows % batch)
    while len(sizes) < n_batches:
        widest = max(range(len(sizes)), key=lambda k: sizes[k])
        if sizes[widest] < 2:
            raise ValueError(f"{n_rows} rows cannot fill {n_batches} batches")
        half = sizes[widest] // 2
        sizes[widest : widest + 1] = [sizes[widest] - half, half]
    if len(sizes) != n_batches:
        raise ValueError(f"{n_rows} rows make {len(sizes)} batches of {batch}, more than {n_batches}")
    return sizes


def nbytes(*arrays: np.ndarray) -> int:
    return int(sum(a.nbytes for a in arrays))


def fits_on_device(n_bytes: int, device: torch.device, share: float) -> bool:
    """True when `n_bytes` fit in `share` of the device's free memory (always, for the host)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= share * free


def _tensors(arrays: Arrays, rows: np.ndarray | None) -> Batch:
    cat, num, y = arrays if rows is None else (a[rows] for a in arrays)
    return (
        torch.from_numpy(np.ascontiguousarray(cat, dtype=np.int64)),
        torch.from_numpy(np.ascontiguousarray(num, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)),
    )


def _place(tensors: Batch, device: torch.device, resident: bool) -> Batch:
    if resident:
        return tuple(t.to(device) for t in tensors)  # type: ignore[return-value]
    if device.type == "cuda":
        return tuple(t.pin_memory() for t in tensors)  # type: ignore[return-value]
    return tensors


class TrainBatches:
    """The training split of one rank as an iterable of batches (what Lightning's fit loop
    iterates). `iter()` reads the epoch from `epoch` and returns `self.epoch_batches(epoch)`."""

    def __init__(
        self,
        arrays: Arrays,
        batch_size: int,
        seed: int,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        resident: bool = True,
        chunk_rows: int = 1 << 22,
        epoch: Callable[[], int] = lambda: 0,
    ):
        n_total = len(arrays[2])
        self.device = torch.device(device)
        self.seed, self.rank, self.resident, self._epoch = seed, rank, resident, epoch
        self.data = _place(_tensors(arrays, shard_rows(n_total, seed, rank, world_size)), self.device, resident)
        self.n_rows = len(self.data[2])
        self.sizes = batch_sizes(self.n_rows, batch_size, math.ceil(math.ceil(n_total / world_size) / batch_size))
        self.chunk_batches = max(1, chunk_rows // batch_size)
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" and not resident else None

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch_batches(self._epoch())

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's row order in `epoch`: drawn where the rows are, from (seed, epoch, rank)."""
        where = self.data[2].device
        gen = torch.Generator(device=where).manual_seed(mixed_seed(self.seed, epoch, self.rank))
        return torch.randperm(self.n_rows, generator=gen, device=where)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        order = self.order(epoch)
        if self.resident:
            start = 0
            for size in self.sizes:
                idx = order[start : start + size]
                start += size
                yield (self.data[0][idx], self.data[1][idx], self.data[2][idx])
            return
        yield from self._streamed(order)

    def _streamed(self, order: torch.Tensor) -> Iterator[Batch]:
        """Chunks of the epoch's order gathered on the host and copied one chunk ahead."""
        groups, start = [], 0
        for k in range(0, len(self.sizes), self.chunk_batches):
            sizes = self.sizes[k : k + self.chunk_batches]
            groups.append((start, sizes))
            start += sum(sizes)
        staged = self._stage(order, *groups[0])
        for g in range(len(groups)):
            chunk, ready = staged
            if g + 1 < len(groups):
                staged = self._stage(order, *groups[g + 1])
            if ready is not None:
                torch.cuda.current_stream(self.device).wait_event(ready)
                for t in chunk:
                    t.record_stream(torch.cuda.current_stream(self.device))
            offset = 0
            for size in groups[g][1]:
                yield tuple(t[offset : offset + size] for t in chunk)  # type: ignore[misc]
                offset += size

    def _stage(self, order: torch.Tensor, start: int, sizes: list[int]):
        idx = order[start : start + sum(sizes)]
        host = [torch.index_select(t, 0, idx) for t in self.data]
        if self._copy_stream is None:
            return host, None
        host = [h.pin_memory() for h in host]
        with torch.cuda.stream(self._copy_stream):
            chunk = [h.to(self.device, non_blocking=True) for h in host]
            ready = torch.cuda.Event()
            ready.record(self._copy_stream)
        return chunk, ready


class EvalBatches:
    """A split in order, in large batches on the device (validation, scoring)."""

    def __init__(self, arrays: Arrays, batch_size: int, device: torch.device | str = "cpu", resident: bool = True):
        self.device = torch.device(device)
        self.data = _place(_tensors(arrays, None), self.device, resident)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.data[2]) / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.data[2])
        for s in range(0, n, self.batch_size):
            yield tuple(t[s : s + self.batch_size].to(self.device, non_blocking=True) for t in self.data)  # type: ignore[misc]
