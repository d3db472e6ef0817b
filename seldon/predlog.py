"""The prediction log: every answered prediction, one row per scored transaction, to Parquet
in the lake table `prediction_log` (`date=YYYY-MM-DD/part-*.parquet`, written atomically).

Requests hand a compact record to a bounded queue and return; one writer thread parses and
writes in batches off the request path. A full queue blocks the caller (back-pressure) and
past a timeout refuses the request rather than dropping its row; `close()` drains everything.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import threading
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)
TABLE = "prediction_log"
_STOP = object()


class LogFull(Exception):
    """The queue stayed full for the whole put timeout."""


def feature_rows(body: bytes) -> list:
    """The request's transactions as dicts (names+ndarray, tensor or jsonData)."""
    try:
        req = json.loads(body)
        if "jsonData" in req:
            j = req["jsonData"]
            j = j.get("transactions", j) if isinstance(j, dict) else j
            return [j] if isinstance(j, dict) else list(j)
        data = req["data"]
        names = data.get("names", [])
        if "ndarray" in data:
            return [dict(zip(names, row)) for row in data["ndarray"]]
        values, width = data["tensor"]["values"], max(len(names), 1)
        return [dict(zip(names, values[i:i + width])) for i in range(0, len(values), width)]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


class PredictionLog:
    def __init__(self, lake_root: str | Path, max_queue: int = 10_000, batch_rows: int = 50_000,
                 flush_interval_s: float = 1.0, put_timeout_s: float = 5.0):
        self.root = Path(lake_root).resolve()
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batch_rows, self.flush_interval_s, self.put_timeout_s = batch_rows, flush_interval_s, put_timeout_s
        self.rows_written = 0
        self.files_written = 0
        self.rejected = 0
        self.write_errors = 0
        self._retry: list = []  # batches whose write failed: retried, never dropped
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, request_id: str, subject: str, deployment: str, predictor: str, version: str,
               body: bytes, scores: list, latency_s: float) -> None:
        item = (request_id, time.time(), subject, deployment, predictor, version, body, scores, latency_s)
        try:
            self.queue.put(item, timeout=self.put_timeout_s)
        except queue.Full:
            self.rejected += 1
            raise LogFull("prediction log queue is full") from None

    def close(self, timeout_s: float = 60.0) -> None:
        """Write everything queued, then stop (called on clean shutdown)."""
        self.queue.put(_STOP)
        self._thread.join(timeout_s)

    def _run(self):
        batch, rows, last = [], 0, time.monotonic()
        while True:
            try:
                item = self.queue.get(timeout=self.flush_interval_s)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush(batch)
                return
            if item is not None:
                batch.append(item)
                rows += len(item[7])
            if (batch or self._retry) and (rows >= self.batch_rows or time.monotonic() - last >= self.flush_interval_s):
                self._flush(batch)
                batch, rows, last = [], 0, time.monotonic()

    def _flush(self, batch: list) -> None:
        by_day: dict[str, list] = {}
        for item in self._retry + batch:
            day = dt.datetime.fromtimestamp(item[1], dt.timezone.utc).date().isoformat()
            by_day.setdefault(day, []).append(item)
        self._retry = []
        for day, items in by_day.items():
            try:
                self._write(day, items)
            except Exception:  # noqa: BLE001 - keep the writer alive and the rows queued for the next flush
                self.write_errors += 1
                self._retry += items
                log.exception("prediction log: could not write %d requests; will retry", len(items))

    def _write(self, day: str, items: list) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {k: [] for k in ("request_id", "row", "ts", "subject", "deployment", "predictor", "model_version",
                                "features", "score", "latency_ms")}
        for rid, ts, sub, dep, pred, ver, body, scores, lat in items:
            feats = feature_rows(body)
            when = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
            for i, score in enumerate(scores):
                cols["request_id"].append(rid)
                cols["row"].append(i)
                cols["ts"].append(when)
                cols["subject"].append(sub)
                cols["deployment"].append(dep)
                cols["predictor"].append(pred)
                cols["model_version"].append(ver)
                cols["features"].append(json.dumps(feats[i]) if i < len(feats) else None)
                cols["score"].append(score)
                cols["latency_ms"].append(lat * 1000.0)
        table = pa.table({**cols, "ts": pa.array(cols["ts"], pa.timestamp("us", tz="UTC")),
                          "row": pa.array(cols["row"], pa.int32()), "score": pa.array(cols["score"], pa.float32())})
        target = self.root / TABLE / f"date={day}" / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        staging = self.root / ".staging"
        staging.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = staging / f"{TABLE}-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
        self.rows_written += table.num_rows
        self.files_written += 1
