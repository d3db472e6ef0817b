"""The portable serving artifact: a TorchScript network plus `feature_schema.json`.

The schema carries everything needed to turn raw feature values into the network's two input
tensors (categorical indices and normalised numerics), so the serving side needs neither
Lightning nor MLflow. Training encodes with the same functions, so the two cannot drift apart.

Layout of an artifact directory:
    model.pt              TorchScript: forward(cat: int64[N, C], num: float32[N, F]) -> float32[N] scores
    feature_schema.json   see FeatureSchema

The schema names the Feast feature service the model was trained on (`feature_service`): the
serving side asks the online path for that service, since a name like `country_changed` means
a daily snapshot in `fraud_model_v1` and an exact event-time value in `fraud_model_v2`.
Artifacts written before the field existed were all trained on `fraud_model_v1`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from driftline.spec import FEATURE_SERVICE

SCHEMA_FILE = "feature_schema.json"
MODEL_FILE = "model.pt"
SCHEMA_VERSION = 1


@dataclass
class CategoricalFeature:
    name: str
    vocabulary: list[str]  # index i <-> vocabulary[i]; anything else (or missing) -> len(vocabulary)

    @property
    def cardinality(self) -> int:
        return len(self.vocabulary) + 1  # + the out-of-vocabulary bucket


@dataclass
class NumericFeature:
    name: str
    transform: str  # "identity" | "log1p" (for non-negative, heavy-tailed values)
    mean: float
    std: float
    fill: float  # used for missing values, before the transform
    dtype: str = "float64"


@dataclass
class FeatureSchema:
    model_name: str
    model_version: str
    categorical: list[CategoricalFeature]
    numeric: list[NumericFeature]
    threshold: float = 0.5  # flag when score >= threshold
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)
    # The Feast feature service whose features the model takes (absent in old artifacts: v1).
    feature_service: str = FEATURE_SERVICE

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.categorical] + [n.name for n in self.numeric]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        raw = json.loads(text)
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"feature schema version {raw.get('schema_version')!r} is not {SCHEMA_VERSION}")
        raw["categorical"] = [CategoricalFeature(**c) for c in raw["categorical"]]
        raw["numeric"] = [NumericFeature(**n) for n in raw["numeric"]]
        return cls(**raw)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def encode_columns(schema: FeatureSchema, columns: dict[str, np.ndarray | list]) -> tuple[np.ndarray, np.ndarray]:
    """Raw feature columns -> (categorical indices int64[N, C], normalised numerics float32[N, F]).

    Unknown categories and missing values never fail: they map to the OOV bucket and to the
    feature's fill value. Absent columns are treated as missing, so optional inputs may be left out.
    Vectorised: one C-level pass per column (dict lookups through `map`, numpy for numerics).
    """
    n = _row_count(columns)
    cat = np.empty((n, len(schema.categorical)), dtype=np.int64)
    for j, feat in enumerate(schema.categorical):
        cat[:, j] = encode_categorical(feat, columns.get(feat.name), n)
    raw = np.empty((n, len(schema.numeric)), dtype=np.float64)
    for j, feat in enumerate(schema.numeric):
        values = columns.get(feat.name)
        raw[:, j] = np.nan if values is None else _as_float(values)
    return cat, normalise(schema, raw)


def encode_categorical(feat: CategoricalFeature, values, n: int) -> np.ndarray:
    """Vocabulary indices (int64[n]); anything that is not a known string -> the OOV bucket."""
    oov = len(feat.vocabulary)
    if values is None:
        return np.full(n, oov, dtype=np.int64)
    lookup = _lookup(feat)
    try:  # only strings are keys, so a non-string (None, NaN, 7) misses exactly like a foreign string
        return np.fromiter(map(lookup.get, values, repeat(oov, n)), dtype=np.int64, count=n)
    except TypeError:  # an unhashable value (a list, a dict): the careful path
        return np.array([lookup.get(v, oov) if isinstance(v, str) else oov for v in values], dtype=np.int64)


def normalise(schema: FeatureSchema, raw: np.ndarray) -> np.ndarray:
    """float64[N, F] numerics in schema order (NaN/inf = missing) -> normalised float32[N, F].

    Element-wise the same operations, in the same order, as one column at a time: fill the
    non-finite, log1p(max(x, 0)) where the transform says so, then (x - mean) / std.
    """
    feats = schema.numeric
    for feat in feats:
        if feat.transform not in ("identity", "log1p"):
            raise ValueError(f"unknown transform {feat.transform!r} for {feat.name}")
    fill = np.array([f.fill for f in feats], dtype=np.float64)
    x = np.where(np.isfinite(raw), raw, fill)
    logs = [j for j, f in enumerate(feats) if f.transform == "log1p"]
    if logs:
        x[:, logs] = np.log1p(np.maximum(x[:, logs], 0.0))
    mean = np.array([f.mean for f in feats], dtype=np.float64)
    std = np.array([f.std for f in feats], dtype=np.float64)
    return ((x - mean) / std).astype(np.float32)


def _lookup(feat: CategoricalFeature) -> dict:
    cached = feat.__dict__.get("_lookup")
    if cached is None or cached[0] is not feat.vocabulary or cached[1] != len(feat.vocabulary):
        cached = (feat.vocabulary, len(feat.vocabulary), {v: i for i, v in enumerate(feat.vocabulary)})
        feat.__dict__["_lookup"] = cached
    return cached[2]


def _as_float(values) -> np.ndarray:
    """float64 with NaN for missing (None / NaN); numpy's own conversion (no per-value Python)."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype(np.float64)
    try:
        return np.asarray(values, dtype=np.float64)  # None -> NaN, numbers -> float(v)
    except (TypeError, ValueError):
        return np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=np.float64)


def _row_count(columns: dict) -> int:
    lengths = {len(v) for v in columns.values() if v is not None}
    if len(lengths) > 1:
        raise ValueError(f"feature columns have different lengths: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def save_schema(directory: Path, schema: FeatureSchema) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SCHEMA_FILE
    path.write_text(schema.to_json())
    return path


def load_schema(directory: Path) -> FeatureSchema:
    return FeatureSchema.from_json((Path(directory) / SCHEMA_FILE).read_text())


class ServingModel:
    """A loaded artifact: scores raw feature columns."""

    def __init__(self, directory: str | Path):
        import torch

        self.directory = Path(directory)
        self.schema = load_schema(self.directory)
        self.network = torch.jit.load(str(self.directory / MODEL_FILE), map_location="cpu").eval()

    @property
    def feature_service(self) -> str:
        """The feature service to ask the online path for (the model's training features)."""
        return self.schema.feature_service

    def score_columns(self, columns: dict) -> np.ndarray:
        cat, num = encode_columns(self.schema, columns)
        return self.score_encoded(cat, num)

    def score_encoded(self, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
        """The network on already encoded inputs (int64[N, C], float32[N, F])."""
        import torch

        if len(cat) == 0:
            return np.empty(0, dtype=np.float32)
        with torch.inference_mode():
            return self.network(torch.from_numpy(cat), torch.from_numpy(num)).numpy()
