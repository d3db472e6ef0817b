"""The model component that `seldon-core-microservice seldon.model.FraudModel --service-type MODEL`
serves. Configured only by the SeldonDeployment graph `parameters`.

The model comes from `model_uri` (`s3://…`, `file://…` or a path; `seldon/model_store.py`),
fetched and checked in `load()`. A model that cannot be loaded does not crash the process: the
error, naming the URI and the problem, is logged and answered as a 503 by `/health/status` (the
readiness probe) and by predictions, so the predictor never becomes ready and says why.

`predict_raw` handles the whole request so that bad input becomes a 400 naming the problem
(the wrapper's generic path turns most of it into 500s), and so the hot path stays one parse,
one vectorised encode, one forward pass: the rows become one object matrix, validated and
converted column block by column block in numpy (no Python loop per value).

Metrics are aggregated in the worker and handed to the wrapper at most once per
`metrics_interval_s` (counters are deltas, so Prometheus sees the same totals): the wrapper
stores them through a multiprocessing Manager, and doing that with a dozen series on every
request cost more than the model itself.
"""

from __future__ import annotations

import bisect
import gc
import json
import logging
import math
import time

import numpy as np

from driftline import spec
from seldon.artifact import ServingModel, encode_categorical, normalise
from seldon.model_store import ModelLoadError, open_model, read_schema
from seldon.online import BadRequest, Unavailable, feature_source, raw_columns, request_entities, transactions
from seldon.predlog_encoding import MODEL_FEATURES_TAG

log = logging.getLogger(__name__)
SCORE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
_NUMERIC_TYPES = {int, float, type(None)}
_CATEGORICAL_TYPES = {str, type(None)}


def _error(message: str, status: int):
    try:
        from seldon_core.flask_utils import SeldonMicroserviceException
    except ImportError:  # in-process use outside the serving environment (tests)
        SeldonMicroserviceException = _ComponentError
    reason = "MICROSERVICE_BAD_DATA" if status == 400 else "MICROSERVICE_UNAVAILABLE"
    return SeldonMicroserviceException(message, status_code=status, reason=reason)


def _skip_empty_metric_updates():
    """seldon-core 1.17 calls `SeldonMetrics.update(metrics, ...)` after every `predict_raw`, even
    with no metrics; each call is a read and a write of this worker's series through a
    multiprocessing Manager (six IPC round trips, ~0.6 ms, more than scoring a row). With an empty
    list the write puts back what was read, so skipping it changes nothing that is exported.
    Applied in this worker only, by `load()`: the bare wrapper of the benchmark keeps the stock path.
    """
    try:
        from seldon_core.metrics import SeldonMetrics
    except ImportError:
        return
    stock = SeldonMetrics.update
    if getattr(stock, "_skips_empty", False):
        return

    def update(self, custom_metrics, method):
        if custom_metrics:
            stock(self, custom_metrics, method)

    update._skips_empty = True
    SeldonMetrics.update = update


class _ComponentError(Exception):
    def __init__(self, message, status_code=400, reason=""):
        super().__init__(message)
        self.message, self.status_code, self.reason = message, status_code, reason


class FraudModel:
    """Scores card transactions; `data` rows (names + ndarray | tensor) or raw `jsonData`."""

    def __init__(
        self,
        model_uri: str = "",
        model_name: str = "",
        model_version: str = "",
        feast_url: str = "",
        max_batch_rows: int = 10_000,
        metrics_interval_s: float = 1.0,
        s3_endpoint_url: str = "",
        s3_region: str = "",
        model_cache_dir: str = "",
        artifact_dir: str = "",  # the former name of model_uri (manifests applied before it)
        **_ignored,
    ):
        self.model_uri, self.feast_url, self.max_batch_rows = model_uri or artifact_dir, feast_url, int(max_batch_rows)
        self._store = {"s3_endpoint_url": s3_endpoint_url, "s3_region": s3_region, "cache_dir": model_cache_dir or None}
        self.load_error: str | None = None
        self.model_name, self.model_version = model_name, str(model_version)
        self.metrics_interval_s = float(metrics_interval_s)
        self.model: ServingModel | None = None
        self.feature_server = None  # FeatureServerClient | OnlineStoreReader
        self._totals = {"rows": 0, "flagged": 0}
        self._pending = [0, 0, [0] * len(SCORE_BUCKETS)]  # rows, flagged, per bucket: not yet handed over
        self._flushed_at = 0.0
        self._plans: dict[tuple, tuple] = {}

    def load(self):
        """Once per worker: one torch thread per worker process; frozen heap keeps GC pauses short."""
        import torch

        torch.set_num_threads(1)
        _skip_empty_metric_updates()
        try:
            self.model = open_model(self.model_uri, **self._store)
        except Exception as err:  # noqa: BLE001 - any failure (a full disk too) leaves the worker up, unready, saying why
            problem = err if isinstance(err, ModelLoadError) else ModelLoadError(self.model_uri, repr(err))
            self.load_error = str(problem)
            log.error("%s; the predictor stays unready (/health/status answers 503)", problem)
            return
        self.load_error = None
        schema = self.model.schema
        self.model_name = self.model_name or schema.model_name
        self.model_version = self.model_version or schema.model_version
        self.names = schema.feature_names
        self.categorical = {c.name for c in schema.categorical}
        self._tags = {"model_name": self.model_name, "model_version": self.model_version}
        self._threshold = float(schema.threshold)
        if self.feast_url:
            service = getattr(self.model, "feature_service", None) or spec.FEATURE_SERVICE
            try:
                self.feature_server = _feature_source(self.feast_url, service)
            except (ValueError, OSError) as err:  # an unknown service, an unreadable repo: unready, saying why
                self.model, self.load_error = None, f"online features for {service} at {self.feast_url}: {err}"
                log.error("%s; the predictor stays unready (/health/status answers 503)", self.load_error)
                return
            try:
                self.feature_server.warm_up()
            except Unavailable as err:  # served later with 503s until it answers; data rows still work
                log.warning("online features not warmed up: %s", err)
        names, rows = self.names, [[None] * len(self.names)]
        for _ in range(3):  # warm the TorchScript graph (the profiling executor optimises on later calls)
            self._score_rows(names, np.array(rows, dtype=object))
            self.model.score_columns({n: [None] * 64 for n in names})
        gc.collect()
        gc.freeze()

    # ------------------------------------------------------------ the Seldon interface
    def predict_raw(self, request):
        if self.model is None and self.load_error is None:
            self.load()
        if self.model is None:
            raise _error(f"model not loaded: {self.load_error}", 503)
        try:
            scores, model_rows = self._score_request(request)
        except BadRequest as err:
            raise _error(str(err), 400) from None
        except Unavailable as err:
            raise _error(str(err), 503) from None
        except RecursionError:  # a structure nested too deep to walk (the JSON parser took it)
            raise _error("request nested too deeply", 400) from None
        tags: dict = dict(self._tags)
        if model_rows is not None:  # for the prediction log: what the model saw (the ingress strips it)
            tags[MODEL_FEATURES_TAG] = model_rows
        out = {"data": {"names": ["score"], "ndarray": scores.tolist()}, "meta": {"tags": tags}}
        metrics = self._observe(scores)
        if metrics:
            out["meta"]["metrics"] = metrics
        return out

    def predict(self, X, names, meta=None):
        """The wrapper's generic path (and in-process use): rows, named or in the metadata's order."""
        rows = X.tolist() if isinstance(X, np.ndarray) else list(X)
        names = list(names or []) or list(self.names)
        return self._score_rows(names, self._matrix(rows, len(names)))

    def score_columns(self, columns: dict) -> np.ndarray:
        return self._loaded().score_columns(columns)

    def _loaded(self) -> ServingModel:
        """The model `load()` read (seldon-core calls it once per worker, before any request)."""
        if self.model is None:
            raise RuntimeError("FraudModel.load() has not run")
        return self.model

    def tags(self):
        return (
            dict(self._tags)
            if hasattr(self, "_tags")
            else {"model_name": self.model_name, "model_version": self.model_version}
        )

    def metrics(self):
        """The wrapper's generic path calls this after `predict`: hand over what accumulated."""
        return self._flush_metrics(force=True)

    def health_status_raw(self):
        """The readiness probe's answer: 503 with the reason until the model is loaded."""
        if self.model is None:
            raise _error(self.load_error or f"model {self.model_uri} is loading", 503)
        return {
            "status": "ok",
            "model_name": self.model_name,
            "model_version": self.model_version,
            "features": len(getattr(self, "names", [])),
        }

    def init_metadata(self):
        """seldon-core calls this once, in the main process before the workers fork: fetching the
        artifact here downloads it once for all of them (they find it in the cache)."""
        try:
            schema = self.model.schema if self.model else read_schema(self.model_uri, **self._store)
        except (ModelLoadError, OSError) as err:
            log.error("no model metadata: %s", err)  # load() reports it again and keeps the predictor unready
            return {
                "name": self.model_name or "fraud-model",
                "versions": [self.model_version or "unknown"],
                "platform": "torchscript",
                "custom": {"load_error": str(err)},
            }
        names = schema.feature_names
        return {
            "name": self.model_name or "fraud-model",
            "versions": [self.model_version or "unknown"],
            "platform": "torchscript",
            "inputs": [
                {"messagetype": "ndarray", "schema": {"names": names, "shape": [len(names)]}},
                {"messagetype": "tensor", "schema": {"names": names, "shape": [len(names)]}},
                {
                    "messagetype": "jsonData",
                    "schema": {
                        "required": ["user_id", "merchant_id", "amount", "country", "event_ts", "category", "channel"]
                    },
                },
            ],
            "outputs": [{"messagetype": "ndarray", "schema": {"names": ["score"], "shape": [1]}}],
            "custom": {
                "threshold": str(schema.threshold),
                "model_name": schema.model_name,
                "feature_service": str(getattr(schema, "feature_service", spec.FEATURE_SERVICE)),
                # A protobuf tensor holds numbers only: there a categorical is its index in this
                # vocabulary (JSON; the index len(vocabulary) is the unknown category).
                "categories": json.dumps({c.name: list(c.vocabulary) for c in schema.categorical}),
            },
        }

    def send_feedback(self, features, feature_names, reward, truth, routing=None):
        return []

    # ------------------------------------------------------------ metrics
    def _observe(self, scores: np.ndarray) -> list:
        n = len(scores)
        pending = self._pending
        if n <= 16:
            values = scores.tolist()
            flagged = sum(v >= self._threshold for v in values)
            for v in values:
                pending[2][min(bisect.bisect_right(SCORE_BUCKETS, v), len(SCORE_BUCKETS) - 1)] += 1
        else:
            flagged = int((scores >= self._threshold).sum())
            idx = np.minimum(np.searchsorted(SCORE_BUCKETS, scores, side="right"), len(SCORE_BUCKETS) - 1)
            for b, c in enumerate(np.bincount(idx, minlength=len(SCORE_BUCKETS)).tolist()):
                pending[2][b] += c
        pending[0] += n
        pending[1] += flagged
        self._totals["rows"] += n
        self._totals["flagged"] += flagged
        return self._flush_metrics()

    def _flush_metrics(self, force: bool = False) -> list:
        """Seldon custom metrics for what accumulated since the last hand-over (empty if too soon)."""
        now = time.monotonic()
        rows, flagged, buckets = self._pending
        if not rows or (not force and now - self._flushed_at < self.metrics_interval_s):
            return []
        self._flushed_at = now
        self._pending = [0, 0, [0] * len(SCORE_BUCKETS)]
        out = [
            {"type": "COUNTER", "key": "driftline_scored_rows_total", "value": rows},
            {"type": "COUNTER", "key": "driftline_flagged_rows_total", "value": flagged},
            {
                "type": "GAUGE",
                "key": "driftline_flagged_rate",
                "value": self._totals["flagged"] / max(self._totals["rows"], 1),
            },
        ]
        out += [
            {"type": "COUNTER", "key": "driftline_score_bucket_total", "value": c, "tags": {"le": str(le)}}
            for le, c in zip(SCORE_BUCKETS, buckets, strict=True)  # one count per bucket
            if c
        ]
        return out

    # ------------------------------------------------------------ request decoding
    def _score_request(self, request) -> tuple[np.ndarray, dict | None]:
        """(scores, what the prediction log needs to know of the model's rows: None when the
        request's named rows are them; the column names for positional rows; names and rows
        for raw transactions, whose rows the online lookup completed)."""
        if isinstance(request, (bytes, str)):  # PAYLOAD_PASSTHROUGH or a plain client
            try:
                request = json.loads(request)
            except (ValueError, RecursionError):
                raise BadRequest("malformed JSON") from None
        if not isinstance(request, dict):
            raise BadRequest("request body must be a JSON object with 'data' or 'jsonData'")
        if "jsonData" in request:
            return self._score_transactions(request["jsonData"])
        data = request.get("data")
        if not isinstance(data, dict):
            raise BadRequest("request needs 'data' (ndarray or tensor, names optional) or 'jsonData'")
        names = data.get("names")
        positional = names is None or names == []
        if positional:  # Seldon's clients send rows without names: the metadata's column order
            names = self.names
        elif not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest("data.names must be a list of feature names (strings)")
        tag = {"names": list(self.names)} if positional else None
        if "ndarray" in data:
            rows = data["ndarray"]
            if not isinstance(rows, list) or (rows and set(map(type, rows)) != {list}):
                raise BadRequest("data.ndarray must be a list of rows (lists)")
            self._plan(names)
            self._check_size(len(rows))
            return self._score_rows(names, self._matrix(rows, len(names), positional)), tag
        if "tensor" in data:
            self._plan(names)
            obj = self._tensor(data["tensor"], len(names), positional)
            return self._score_rows(names, self._category_codes(names, obj)), tag
        raise BadRequest("data needs 'ndarray' or 'tensor'")

    def _score_transactions(self, json_data) -> tuple[np.ndarray, dict]:
        """Raw transactions: the online features completed into the model's rows (schema order),
        checked like any rows, scored; the rows go back for the prediction log."""
        rows = self._checked_transactions(transactions(json_data))
        self._check_size(len(rows))
        entities = request_entities(rows)
        if self.feature_server is None:
            raise Unavailable("no online features configured (graph parameter feast_url)")
        served = self.feature_server.features(entities)
        columns = raw_columns(rows, served, self.names)
        obj = np.empty((len(rows), len(self.names)), dtype=object)
        for j, name in enumerate(self.names):
            obj[:, j] = columns[name]
        scores = self._score_rows(self.names, obj)
        return scores, {"names": list(self.names), "ndarray": [[_plain(v) for v in row] for row in obj.tolist()]}

    @staticmethod
    def _checked_transactions(rows: list[dict]) -> list[dict]:
        """Ids as int64 (an integral float too: a protobuf Struct, as SeldonClient's json_data
        sends, turns every integer into a float), numeric times and amounts finite: anything
        else is a 400 naming the field."""
        out = []
        for i, sent in enumerate(rows):
            row = dict(sent)
            for key in spec.ENTITY_KEYS:
                if key in row:
                    row[key] = _integer(row[key], f"transaction {i}: {key}")
            for key in ("amount", "event_epoch_s", "event_ts"):
                value = row.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    limit = _MAX_AMOUNT if key == "amount" else _MAX_EPOCH_S
                    if not ((isinstance(value, float) and math.isfinite(value)) or isinstance(value, int)) or not (
                        -limit <= value <= limit
                    ):
                        raise BadRequest(
                            f"transaction {i}: {key} {_show(value)} is not a finite number within ±{limit:g}"
                        )
            out.append(row)
        return out

    def _plan(self, names: list) -> tuple:
        """Column indices of the schema's categoricals and numerics in this request (cached per names)."""
        key = tuple(names)
        plan = self._plans.get(key)
        if plan is None:
            known = set(self.names)
            unknown = [n for n in names if n not in known]
            missing = [n for n in self.names if n not in key]
            duplicated = sorted({n for n in names if names.count(n) > 1})
            if unknown or missing or duplicated:
                problems = [
                    f"{what} {[n[:64] for n in found[:10]]}"
                    for what, found in (("unknown", unknown), ("missing", missing), ("duplicated", duplicated))
                    if found
                ]
                raise BadRequest(f"feature names: {', '.join(problems)}; the model takes {self.names}")
            pos = {n: i for i, n in enumerate(names)}
            schema = self._loaded().schema
            plan = ([pos[c.name] for c in schema.categorical], [pos[f.name] for f in schema.numeric])
            if len(self._plans) < 64:
                self._plans[key] = plan
        return plan

    def _matrix(self, rows: list, width: int, positional: bool = False) -> np.ndarray:
        widths = set(map(len, rows))
        if rows and widths != {width}:
            what = "rows without names need" if positional else "every row needs"
            order = f" in the metadata's order {self.names}" if positional else ""
            raise BadRequest(f"{what} {width} values{order}; got widths {sorted(widths)[:5]}")
        if not rows:
            return np.empty((0, width), dtype=object)
        obj = np.empty((len(rows), width), dtype=object)
        try:
            obj[:] = rows  # a nested list inside a row is an error, not a new axis
        except ValueError:
            raise BadRequest("every value must be a number, a string or null (a row holds a nested list)") from None
        return obj

    def _tensor(self, tensor, width: int, positional: bool = False) -> np.ndarray:
        """Seldon's flat tensor: shape [N, F] + values; categoricals as vocabulary strings, null
        or (all a protobuf tensor can carry) vocabulary indices."""
        if (
            not isinstance(tensor, dict)
            or not isinstance(tensor.get("shape"), list)
            or not isinstance(tensor.get("values"), list)
        ):
            raise BadRequest("data.tensor needs 'shape' and 'values' lists")
        shape, values = tensor["shape"], tensor["values"]
        if (
            len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
            or shape[1] != width
            or shape[0] * shape[1] != len(values)
        ):
            order = f" (no names: the metadata's order {self.names})" if positional else ""
            raise BadRequest(
                f"tensor shape {_show(shape[:3])} does not match {len(values)} values of rows of {width}{order}"
            )
        self._check_size(shape[0])
        flat = np.empty(len(values), dtype=object)
        flat[:] = values  # element by element: a nested list stays one (rejected) value
        return flat.reshape(shape[0], width)

    def _category_codes(self, names: list, obj: np.ndarray) -> np.ndarray:
        """A tensor's categorical columns: integral numbers are vocabulary indices (a protobuf
        tensor holds doubles only); index len(vocabulary) is the unknown category."""
        cat_idx, _ = self._plan(names)
        for feat, j in zip(self._loaded().schema.categorical, cat_idx, strict=True):
            col = obj[:, j]
            if set(map(type, col)) <= _CATEGORICAL_TYPES:
                continue
            vocab = feat.vocabulary
            out = np.empty(len(col), dtype=object)
            for i, v in enumerate(col.tolist()):
                if isinstance(v, (str, type(None))):
                    out[i] = v
                elif (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and (isinstance(v, int) or (math.isfinite(v) and v.is_integer()))
                    and 0 <= v <= len(vocab)
                ):
                    out[i] = vocab[int(v)] if v < len(vocab) else None
                else:
                    raise BadRequest(
                        f"{feat.name}: {_show(v)} is neither a category string, null nor a vocabulary index "
                        f"0..{len(vocab)} (the metadata's custom.categories lists them; {len(vocab)} = unknown)"
                    )
            obj[:, j] = out
        return obj

    def _score_rows(self, names: list, obj: np.ndarray) -> np.ndarray:
        cat_idx, num_idx = self._plan(names)
        n = obj.shape[0]
        self._check_size(n)
        model = self._loaded()
        schema = model.schema
        cats = obj[:, cat_idx]
        if not set(map(type, cats.ravel())) <= _CATEGORICAL_TYPES:
            name, value = self._culprit(names, obj, cat_idx, _CATEGORICAL_TYPES)
            raise BadRequest(f"{name}: categorical values must be strings or null, got {value}")
        nums = obj[:, num_idx]
        if not set(map(type, nums.ravel())) <= _NUMERIC_TYPES:
            name, value = self._culprit(names, obj, num_idx, _NUMERIC_TYPES)
            if value.strip("'\"") in _NON_FINITE:  # protobuf's JSON writes a NaN as the string "NaN"
                raise BadRequest(f"{name}: NaN or infinity is not allowed (send null for missing)")
            hint = " (a numpy array of mixed types sends every value as a string: use dtype=object)"
            raise BadRequest(
                f"{name}: non-numeric value {value}; numbers or null" + (hint if value.startswith(("'", '"')) else "")
            )
        try:
            raw = nums.astype(np.float64)  # None -> NaN (missing, filled as in training)
        except (OverflowError, ValueError, TypeError):
            raise BadRequest(f"{self._overflow(names, obj, num_idx)}: numeric value out of range") from None
        finite = np.isfinite(raw)
        if not finite.all():
            bad = ~finite & (nums != None)  # noqa: E711 - element-wise: a sent NaN/inf, not a null
            if bad.any():
                col = num_idx[int(np.nonzero(bad.any(axis=0))[0][0])]
                raise BadRequest(f"{names[col]}: NaN or infinity is not allowed (send null for missing)")
        cat = np.empty((n, len(cat_idx)), dtype=np.int64)
        for j, feat in enumerate(schema.categorical):
            cat[:, j] = encode_categorical(feat, cats[:, j], n)
        with np.errstate(over="ignore", invalid="ignore"):
            num = normalise(schema, raw)
        if not np.isfinite(num).all():  # beyond what the network's float32 inputs hold
            j = int(np.nonzero(~np.isfinite(num).all(axis=0))[0][0])
            raise BadRequest(f"{schema.numeric[j].name}: numeric value out of range")
        return model.score_encoded(cat, num)

    @staticmethod
    def _culprit(names, obj, idx, allowed) -> tuple[str, str]:
        """(the first column holding a value of another type, that value shown)."""
        for i in idx:
            for v in obj[:, i]:
                if type(v) not in allowed:
                    return names[i], _show(v)
        return "?", "?"

    @staticmethod
    def _overflow(names, obj, idx) -> str:
        for i in idx:
            try:
                obj[:, i].astype(np.float64)
            except (OverflowError, ValueError, TypeError):
                return names[i]
        return "?"

    def _check_size(self, n: int):
        if n == 0:
            raise BadRequest("empty batch")
        if n > self.max_batch_rows:
            raise BadRequest(f"batch of {n} rows exceeds the limit of {self.max_batch_rows}")


_INT64 = (-(2**63), 2**63 - 1)
_NON_FINITE = {"NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"}
_MAX_EPOCH_S = 1e11  # about the year 5000: any real event time, in seconds
_MAX_AMOUNT = 1e300


def _integer(value, what: str) -> int:
    """An int64 id; an integral float (what a protobuf Struct makes of an integer) becomes one."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{what} must be an integer, got {_show(value)}")
    if not _INT64[0] <= value <= _INT64[1]:
        raise BadRequest(f"{what} {_show(value)} is beyond the 64-bit integer range")
    return value


def _show(value) -> str:
    """A value for an error message: its JSON-ish text, cut short."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a 4,300+-digit int, a deeply nested list
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value):
    """A model input as JSON keeps it (a non-finite float, which the checks refuse, as null)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _feature_source(url: str, service: str):
    """The online path for the model's feature service (the one it was trained on)."""
    return feature_source(url, service=service)
