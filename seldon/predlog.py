"""The prediction log: every answered prediction, one row per scored transaction, to Parquet
in the lake table `prediction_log` (`date=YYYY-MM-DD/part-*.parquet`, written atomically).

Requests hand a compact record (ids, the request body, the scores) to a bounded queue and
return: at most `max_queue` requests queued and `max_queue_bytes` of bodies held unwritten; when
either is full the caller blocks (back-pressure) and past a timeout is refused rather than its
rows dropped. One writer thread batches the queue and hands each batch to a writer process
that encodes and writes the file (`seldon.predlog_file`, the features column by
`seldon.predlog_encoding`); a failed write is retried; `close()` drains everything.

Each row keeps the feature row the model scored: for `data` rows the request's own row
(`features`; positional rows named with the names the model hands back), for raw transactions
the rows the online lookup completed, in `model_features` beside the request. Both come from
the model's answer (`meta.tags.model_features`), which the caller passes to `record` and takes
out of the answer.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from pathlib import Path

from seldon.predlog_encoding import MODEL_FEATURES_TAG
from seldon.predlog_file import TABLE, write_file

__all__ = ["MODEL_FEATURES_TAG", "TABLE", "LogFull", "PredictionLog"]

log = logging.getLogger(__name__)
_STOP = object()


def _size(item: tuple) -> int:
    """Bytes an item holds, for the bound: its body, plus ~24 bytes a value of model rows."""
    body, seen = item[6:7], item[9:10]
    rows = seen[0].get("ndarray") if seen else None
    width = len(seen[0].get("names") or ()) if seen else 0
    return len(body[0]) + (24 * width * len(rows) if isinstance(rows, list) else 0)


class LogFull(Exception):
    """The queue stayed full for the whole put timeout."""


class PredictionLog:
    """`record()` from request threads; one writer thread batches the queue (a file a second, or
    every `batch_rows`) and hands each batch to a writer process (`write_process=True`, the
    default; `writers` of them, each with its own file in flight) that encodes and writes the
    file, so the encoding neither holds this process's GIL against the requests nor waits for
    it. The queue, the accounting, the retries and the drain stay in this process."""

    def __init__(
        self,
        lake_root: str | Path,
        max_queue: int = 10_000,
        batch_rows: int = 50_000,
        flush_interval_s: float = 1.0,
        put_timeout_s: float = 5.0,
        write_process: bool = True,
        max_queue_bytes: int = 256 << 20,
        writers: int = 1,
    ):
        from collections import deque

        self.root = Path(lake_root).resolve()
        self.write_process = write_process
        self.writers = max(int(writers), 1)  # files written at once (in as many processes)
        self._pools: list = [None] * self.writers
        self._slots: queue.Queue = queue.Queue()
        for slot in range(self.writers):
            self._slots.put(slot)
        self._inflight: deque = deque()  # (future, items) of files being written
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        # request bodies held until written (queued, batched or awaiting a retry): a second bound,
        # so a writer falling behind on big batches means back-pressure, not unbounded memory
        self.max_queue_bytes, self.queued_bytes = max_queue_bytes, 0
        self._space = threading.Condition()
        self.batch_rows, self.flush_interval_s, self.put_timeout_s = batch_rows, flush_interval_s, put_timeout_s
        self.rows_written = 0
        self.files_written = 0
        self.rejected = 0
        self.write_errors = 0
        self._retry: list = []  # batches whose write failed: retried, never dropped
        self.final_retries = 6  # at shutdown, ~4 s of retrying a failed write
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(
        self,
        request_id: str,
        subject: str,
        deployment: str,
        predictor: str,
        version: str,
        body: bytes,
        scores: list,
        latency_s: float,
        model_features: dict | None = None,
    ) -> None:
        """`model_features`: the model's `MODEL_FEATURES_TAG` of the answer (what it scored, when
        the body does not say it: raw transactions, positional rows); None for named rows."""
        item = (request_id, time.time(), subject, deployment, predictor, version, body, scores, latency_s)
        if model_features is not None:
            item += (model_features,)
        size = _size(item)
        deadline = time.monotonic() + self.put_timeout_s
        with self._space:  # an empty log takes any one body, however big
            if not self._space.wait_for(
                lambda: self.queued_bytes == 0 or self.queued_bytes + size <= self.max_queue_bytes,
                self.put_timeout_s,
            ):
                self.rejected += 1
                raise LogFull("prediction log is full (bytes)")
            self.queued_bytes += size
        try:
            self.queue.put(item, timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Full:
            self._release([item])
            self.rejected += 1
            raise LogFull("prediction log queue is full") from None

    def _release(self, items: list) -> None:
        with self._space:
            self.queued_bytes -= sum(map(_size, items))
            self._space.notify_all()

    def close(self, timeout_s: float = 60.0) -> None:
        """Write everything queued, then stop (called on clean shutdown)."""
        self.queue.put(_STOP)
        self._thread.join(timeout_s)
        hung = self._thread.is_alive()
        if hung:
            log.error("prediction log: still writing after %.0f s; stopping the writer processes", timeout_s)
        for slot, pool in enumerate(self._pools):
            if pool is not None:
                if hung:  # or the interpreter would wait for the hung write at exit
                    for proc in list((getattr(pool, "_processes", None) or {}).values()):
                        proc.terminate()
                pool.shutdown(wait=not hung, cancel_futures=hung)
                self._pools[slot] = None

    def _run(self):
        batch, rows, last = [], 0, time.monotonic()
        while True:
            try:
                item = self.queue.get(timeout=self.flush_interval_s)
            except queue.Empty:
                item = None
            self._harvest()
            if item is _STOP:
                self._flush(batch)
                self._harvest(wait=True)
                for attempt in range(self.final_retries):  # a write failing at shutdown gets a few more tries
                    if not self._retry:
                        break
                    time.sleep(min(0.1 * 2**attempt, 2.0))
                    self._flush([])
                    self._harvest(wait=True)
                if self._retry:
                    log.error(
                        "prediction log: %d rows could not be written before shutdown",
                        sum(len(item[7]) for item in self._retry),
                    )
                return
            if item is not None:
                batch.append(item)
                rows += len(item[7])
            if (batch or self._retry) and (rows >= self.batch_rows or time.monotonic() - last >= self.flush_interval_s):
                self._flush(batch)
                batch, rows, last = [], 0, time.monotonic()

    def _flush(self, batch: list) -> None:
        """Hands the batch (and what awaits a retry) to the writers: one file per day; waits only
        while `writers` files are being written already (the queue meanwhile fills: back-pressure)."""
        by_day: dict[str, list] = {}
        for item in self._retry + batch:
            day = dt.datetime.fromtimestamp(item[1], dt.UTC).date().isoformat()
            by_day.setdefault(day, []).append(item)
        self._retry = []
        for day, items in by_day.items():
            while len(self._inflight) >= self.writers:
                self._complete(*self._inflight.popleft())
            self._inflight.append((self._start_write(day, items), items))

    def _start_write(self, day: str, items: list):
        """`_write` in a daemon thread (a hung write must not keep the process from exiting)."""
        from concurrent.futures import Future

        future = Future()

        def write():
            try:
                future.set_result(self._write(day, items))
            except BaseException as err:  # noqa: BLE001 - handed to the writer thread, which retries
                future.set_exception(err)

        threading.Thread(target=write, name="prediction-log-write", daemon=True).start()
        return future

    def _harvest(self, wait: bool = False) -> None:
        while self._inflight and (wait or self._inflight[0][0].done()):
            self._complete(*self._inflight.popleft())

    def _complete(self, future, items: list) -> None:
        try:
            rows = future.result()
        except Exception:  # keep the writer alive and the rows for the next flush
            self.write_errors += 1
            self._retry += items
            log.exception("prediction log: could not write %d requests; will retry", len(items))
        else:
            self.rows_written += rows
            self.files_written += 1
            self._release(items)

    def _write(self, day: str, items: list) -> int:
        """One Parquet file for the day's requests, encoded and written by a writer process (or in
        this thread with `write_process=False`): its rows; raises, and so is retried, if it failed."""
        if not self.write_process:
            return write_file(str(self.root), day, items)
        from concurrent.futures.process import BrokenProcessPool

        slot = self._slots.get()
        try:
            pool = self._process(slot)
            return pool.submit(write_file, str(self.root), day, items).result()
        except BrokenProcessPool:  # its process died: a new one for the retry
            self._pools[slot] = None
            raise
        finally:
            self._slots.put(slot)

    def _process(self, slot: int):
        """The slot's writer: a pool of one process each (a pool's workers share a queue lock that a
        killed worker can leave held, blocking its siblings for ever)."""
        if self._pools[slot] is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a fresh interpreter, not a fork of a process with request threads running
            self._pools[slot] = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        return self._pools[slot]
