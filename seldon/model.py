"""The model component that `seldon-core-microservice seldon.model.FraudModel --service-type MODEL`
serves. Configured only by the SeldonDeployment graph `parameters`.

`predict_raw` handles the whole request so that bad input becomes a 400 naming the problem
(the wrapper's generic path turns most of it into 500s), and so the hot path stays one parse,
one encode, one forward pass.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import numpy as np

from seldon.artifact import ServingModel, load_schema
from seldon.online import BadRequest, FeatureServerClient, Unavailable, raw_columns, request_entities, transactions

log = logging.getLogger(__name__)
SCORE_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
_NUMBER = {int, float}
_NONE = type(None)


def _error(message: str, status: int):
    from seldon_core.flask_utils import SeldonMicroserviceException

    reason = "MICROSERVICE_BAD_DATA" if status == 400 else "MICROSERVICE_UNAVAILABLE"
    return SeldonMicroserviceException(message, status_code=status, reason=reason)


class FraudModel:
    """Scores card transactions; `data` rows (names + ndarray | tensor) or raw `jsonData`."""

    def __init__(self, artifact_dir: str, model_name: str = "", model_version: str = "", feast_url: str = "",
                 max_batch_rows: int = 10_000, **_ignored):
        self.artifact_dir, self.feast_url, self.max_batch_rows = artifact_dir, feast_url, int(max_batch_rows)
        self.model_name, self.model_version = model_name, str(model_version)
        self.model: ServingModel | None = None
        self.feature_server: FeatureServerClient | None = None
        self._counts = {"rows": 0, "flagged": 0}

    def load(self):
        """Once per worker: one torch thread per worker process; frozen heap keeps GC pauses short."""
        import torch

        torch.set_num_threads(1)
        self.model = ServingModel(self.artifact_dir.removeprefix("file://"))
        self.model_name = self.model_name or self.model.schema.model_name
        self.model_version = self.model_version or self.model.schema.model_version
        self.names = self.model.schema.feature_names
        self.categorical = {c.name for c in self.model.schema.categorical}
        if self.feast_url:
            self.feature_server = FeatureServerClient(self.feast_url)
        self.score_columns({n: [None] for n in self.names})  # warm the TorchScript graph
        gc.collect()
        gc.freeze()

    # ------------------------------------------------------------ the Seldon interface
    def predict_raw(self, request):
        if self.model is None:
            self.load()
        try:
            columns = self._columns(request)
            scores = self.score_columns(columns)
        except BadRequest as err:
            raise _error(str(err), 400) from None
        except Unavailable as err:
            raise _error(str(err), 503) from None
        flagged = int((scores >= self.model.schema.threshold).sum())
        self._observe(scores, flagged)
        return {"data": {"names": ["score"], "ndarray": scores.tolist()},
                "meta": {"tags": self.tags(), "metrics": self.metrics(scores, flagged)}}

    def predict(self, X, names, meta=None):
        """The wrapper's generic path (and in-process use): rows with named columns."""
        return self.score_columns(self._named_rows(list(names or []), np.asarray(X, dtype=object).tolist()))

    def score_columns(self, columns: dict) -> np.ndarray:
        return self.model.score_columns(columns)

    def tags(self):
        return {"model_name": self.model_name, "model_version": self.model_version}

    def metrics(self, scores=None, flagged: int = 0):
        if scores is None:
            return []
        n = len(scores)
        out = [{"type": "COUNTER", "key": "driftline_scored_rows_total", "value": n},
               {"type": "COUNTER", "key": "driftline_flagged_rows_total", "value": flagged},
               {"type": "GAUGE", "key": "driftline_flagged_rate",
                "value": self._counts["flagged"] / max(self._counts["rows"], 1)}]
        counts = np.histogram(scores, bins=[0.0, *SCORE_BUCKETS])[0]
        out += [{"type": "COUNTER", "key": "driftline_score_bucket_total", "value": int(c), "tags": {"le": str(le)}}
                for le, c in zip(SCORE_BUCKETS, counts) if c]
        return out

    def health_status_raw(self):
        return {"status": "ok" if self.model is not None else "loading", "model_name": self.model_name,
                "model_version": self.model_version, "features": len(getattr(self, "names", []))}

    def init_metadata(self):
        schema = self.model.schema if self.model else load_schema(Path(self.artifact_dir.removeprefix("file://")))
        names = schema.feature_names
        return {"name": self.model_name or "fraud-model", "versions": [self.model_version or "unknown"],
                "platform": "torchscript",
                "inputs": [{"messagetype": "ndarray", "schema": {"names": names, "shape": [len(names)]}},
                           {"messagetype": "jsonData", "schema": {"required": ["user_id", "merchant_id", "amount",
                                                                               "country", "event_ts", "category",
                                                                               "channel"]}}],
                "outputs": [{"messagetype": "ndarray", "schema": {"names": ["score"], "shape": [1]}}],
                "custom": {"threshold": str(schema.threshold), "model_name": schema.model_name}}

    def send_feedback(self, features, feature_names, reward, truth, routing=None):
        return []

    # ------------------------------------------------------------ request decoding
    def _observe(self, scores, flagged):
        self._counts["rows"] += len(scores)
        self._counts["flagged"] += flagged

    def _columns(self, request) -> dict:
        if not isinstance(request, dict):
            raise BadRequest("request body must be a JSON object with 'data' or 'jsonData'")
        if "jsonData" in request:
            return self._raw(request["jsonData"])
        data = request.get("data")
        if not isinstance(data, dict):
            raise BadRequest("request needs 'data' (names + ndarray or tensor) or 'jsonData'")
        names = data.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest("data.names must be a list of feature names")
        if "ndarray" in data:
            rows = data["ndarray"]
            if not isinstance(rows, list) or (rows and set(map(type, rows)) != {list}):
                raise BadRequest("data.ndarray must be a list of rows (lists)")
        elif "tensor" in data:
            rows = _tensor_rows(data["tensor"], len(names))
        else:
            raise BadRequest("data needs 'ndarray' or 'tensor'")
        return self._named_rows(names, rows)

    def _named_rows(self, names: list, rows: list) -> dict:
        unknown = [n for n in names if n not in self.names]
        missing = [n for n in self.names if n not in names]
        if unknown or missing or len(set(names)) != len(names):
            raise BadRequest(f"feature names: unknown {unknown[:10]}, missing {missing[:10]}"
                             + (", duplicated" if len(set(names)) != len(names) else ""))
        self._check_size(len(rows))
        widths = set(map(len, rows))
        if widths != {len(names)}:
            raise BadRequest(f"every row needs {len(names)} values; got widths {sorted(widths)[:5]}")
        columns = {}
        for name, col in zip(names, zip(*rows)):
            types = set(map(type, col))
            if name in self.categorical:
                if not types <= {str, _NONE}:
                    raise BadRequest(f"{name}: categorical values must be strings or null")
                columns[name] = col
                continue
            if not types <= {int, float, _NONE}:
                raise BadRequest(f"{name}: non-numeric value")
            arr = np.array(col, dtype=np.float64)
            if float in types and not np.isfinite(arr).all():
                if np.isinf(arr).any() or int(np.isnan(arr).sum()) != col.count(None):
                    raise BadRequest(f"{name}: NaN or infinity is not allowed (send null for missing)")
            columns[name] = arr
        return columns

    def _raw(self, json_data) -> dict:
        rows = transactions(json_data)
        self._check_size(len(rows))
        if self.feature_server is None:
            raise Unavailable("no feature server configured (graph parameter feast_url)")
        served = self.feature_server.features(request_entities(rows))
        return raw_columns(rows, served, self.names)

    def _check_size(self, n: int):
        if n == 0:
            raise BadRequest("empty batch")
        if n > self.max_batch_rows:
            raise BadRequest(f"batch of {n} rows exceeds the limit of {self.max_batch_rows}")


def _tensor_rows(tensor, width: int) -> list:
    """Seldon's flat tensor: shape [N, F] + values; categoricals as vocabulary strings or null."""
    if not isinstance(tensor, dict) or not isinstance(tensor.get("shape"), list) \
            or not isinstance(tensor.get("values"), list):
        raise BadRequest("data.tensor needs 'shape' and 'values' lists")
    shape, values = tensor["shape"], tensor["values"]
    if len(shape) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape) \
            or shape[1] != width or shape[0] * shape[1] != len(values):
        raise BadRequest(f"tensor shape {shape[:3]} does not match {len(values)} values of rows of {width}")
    return [values[i:i + width] for i in range(0, len(values), width)]
