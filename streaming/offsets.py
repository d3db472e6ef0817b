"""Per-partition offsets of a stream consumer, in a folder every instance can reach.

RabbitMQ streams over AMQP 0-9-1 do not track consumer offsets, so a consumer keeps its own:
one small JSON file per stream (`<folder>/<prefix>.<topic>.<p>.json`, the next offset to read),
written atomically (`write_atomic`: temp file, fsync, rename, fsync of the folder) after the
partition's output is durable. The stream worker keeps its offsets here; the lake sink keeps
its checkpoints the same way under `<landing>/_offsets`. One file per partition, not per
consumer, so partitions can be spread over any number of consumers and re-spread later: a new
owner reads the partition's file and resumes there. An exclusive `flock` per partition
(`<stream>.lock`, released by the kernel when its holder dies, even on kill -9) refuses a second
live owner of the same partition.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterable
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(target: Path, write) -> None:
    """`write(tmp_path)`, fsync, rename onto `target`, fsync the folder: all or nothing, durable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


class PartitionOwned(RuntimeError):
    """Another running consumer holds the partition's lock."""


class OffsetStore:
    def __init__(self, folder: str | Path, prefix: str):
        self.folder = Path(folder)
        self.prefix = prefix
        self._locks: list[int] = []

    def stream(self, topic: str, p: int) -> str:
        return f"{self.prefix}.{topic}.{p}"

    def path(self, topic: str, p: int) -> Path:
        return self.folder / f"{self.stream(topic, p)}.json"

    def read(self, topic: str, p: int) -> int | None:
        """The next offset to read, or None when this partition was never committed."""
        path = self.path(topic, p)
        if not path.exists():
            return None
        return int(json.loads(path.read_text())["next_offset"])

    def write(self, topic: str, p: int, next_offset: int, **extra) -> None:
        doc = {
            "stream": self.stream(topic, p),
            "next_offset": int(next_offset),
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            **extra,
        }
        write_atomic(self.path(topic, p), lambda tmp: tmp.write_text(json.dumps(doc)))

    def lock(self, streams: Iterable[tuple[str, int]], owner: str) -> None:
        """Take every partition's lock or none (PartitionOwned names the one held elsewhere)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for topic, p in streams:
            fd = os.open(self.folder / f"{self.stream(topic, p)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                os.close(fd)
                self.unlock()
                raise PartitionOwned(
                    f"{owner}: {self.stream(topic, p)} is owned by another running consumer (lock under {self.folder})"
                ) from err
            self._locks.append(fd)

    def unlock(self) -> None:
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()
