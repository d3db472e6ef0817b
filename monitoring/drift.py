"""The drift decision for any two frames, shared by the `drift_report` asset, the bench, tests
and notebooks.

Distances, not p-values: a KS or chi-square test flags any non-zero difference once samples
are large (every day is "drifted" at 100,000 rows), while a distance says how far apart two
distributions are whatever the sample size. Numbers use Evidently's normalised Wasserstein
distance (W1 / reference std), categories its Jensen-Shannon distance, both with threshold 0.1;
the window is drifted when at least `drift_share` of the features (and the score) are. Samples are capped
where the statistics' sampling noise (~0.01-0.02) is far below the thresholds (docs/monitoring.md).

engine="numpy" computes Evidently's formulas directly (fast); engine="evidently" runs
`Report([DataDriftPreset(...)])` on the same samples and can save its HTML report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DriftConfig:
    num_method: str = "wasserstein"
    num_threshold: float = 0.1
    cat_method: str = "jensenshannon"
    cat_threshold: float = 0.1
    # Share of drifted columns that makes the window drifted. 0.4 of the 18 columns the fraud model
    # is watched on (17 inputs but day_of_week, and the score): without drift a day flags up to 5
    # (the 24 h velocity and merchant chargeback snapshots move with the weekday and late labels),
    # a new fraud pattern up to 6; a covariate shift 7 on its first day, 12-15 once it holds
    # (tests/test_drift_scenarios.py; docs/monitoring.md).
    drift_share: float = 0.4
    reference_cap: int = 20_000
    current_cap: int = 20_000
    min_rows: int = 500  # fewer current rows: no decision (too noisy), never "drifted"
    # A sampled score this close to its threshold is recomputed on all rows (~3 sampling std
    # devs at 20,000 rows), so sampled decisions equal full-data ones.
    refine_band: float = 0.025
    seed: int = 0


@dataclass
class FeatureDrift:
    name: str
    kind: str  # categorical | numeric
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    drifted: bool
    share: float
    features: list[FeatureDrift]
    reference_rows: int
    current_rows: int
    sampled_reference: int
    sampled_current: int
    engine: str
    reason: str
    config: DriftConfig = field(default_factory=DriftConfig)
    refined: list[str] = field(default_factory=list)  # features recomputed on all rows

    @property
    def scores(self) -> dict[str, float]:
        return {f.name: f.score for f in self.features}

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_dict(self) -> dict:
        return asdict(self)


def split_features(features, reference, current) -> tuple[list[str], list[str]]:
    """(categorical, numeric) names present in both frames. `features` is a FeatureSchema, a
    (categorical, numeric) pair, a list of names (typed by the reference's dtypes) or None (all)."""
    if hasattr(features, "categorical"):
        cats, nums = [c.name for c in features.categorical], [n.name for n in features.numeric]
    elif isinstance(features, tuple):
        cats, nums = list(features[0]), list(features[1])
    else:
        names = list(reference.columns) if features is None else features
        cats = [f for f in names if f in reference and not _is_number(reference[f])]
        nums = [f for f in names if f in reference and _is_number(reference[f])]
    present = set(reference.columns) & set(current.columns)
    return [c for c in cats if c in present], [n for n in nums if n in present]


def _is_number(series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def cap(frame, n: int, seed: int = 0):
    return frame.sample(n=n, random_state=seed) if len(frame) > n else frame


def wasserstein_norm(reference, current) -> float:
    """Evidently's "wasserstein": W1 distance divided by the reference's std (at least 0.001)."""
    import numpy as np
    from scipy import stats

    ref, cur = _finite(reference), _finite(current)
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    return float(stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


def jensen_shannon(reference, current) -> float:
    """Evidently's "jensenshannon" for categories: distance of the value shares (natural log)."""
    import pandas as pd
    from scipy.spatial import distance

    ref, cur = pd.Series(reference).dropna(), pd.Series(current).dropna()
    if len(ref) == 0 or len(cur) == 0:
        return float("nan")
    shares = pd.concat([ref.value_counts() / len(ref), cur.value_counts() / len(cur)], axis=1).fillna(0.0)
    return float(distance.jensenshannon(shares.iloc[:, 0].to_numpy(), shares.iloc[:, 1].to_numpy()))


def _finite(values):
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


_NUMPY = {"wasserstein": wasserstein_norm, "jensenshannon": jensen_shannon}


def drift_decision(
    reference,
    current,
    features=None,
    config: DriftConfig | None = None,
    engine: str = "numpy",
    html_path: str | Path | None = None,
) -> DriftResult:
    """Per-feature scores on capped samples and the window's decision. `html_path` implies Evidently."""
    cfg = config or DriftConfig()
    cats, nums = split_features(features, reference, current)
    if not cats + nums:
        raise ValueError("no monitored feature is present in both frames")
    ref = cap(reference, cfg.reference_cap, cfg.seed)
    cur = cap(current, cfg.current_cap, cfg.seed)
    if html_path is not None or engine == "evidently":
        engine, scores = "evidently", evidently_scores(ref, cur, cats, nums, cfg, html_path)
    elif engine == "numpy":
        if cfg.num_method not in _NUMPY or cfg.cat_method not in _NUMPY:
            raise ValueError("engine='numpy' implements wasserstein and jensenshannon; use engine='evidently'")
        scores = {c: _NUMPY[cfg.cat_method](ref[c], cur[c]) for c in cats}
        scores |= {n: _NUMPY[cfg.num_method](ref[n], cur[n]) for n in nums}
    else:
        raise ValueError(f"unknown engine {engine!r}")
    refined = _refine(
        scores, reference, current, cats, nums, cfg, sampled=len(ref) < len(reference) or len(cur) < len(current)
    )
    out = [
        FeatureDrift(
            c, "categorical", cfg.cat_method, scores[c], cfg.cat_threshold, bool(scores[c] >= cfg.cat_threshold)
        )
        for c in cats
    ]
    out += [
        FeatureDrift(n, "numeric", cfg.num_method, scores[n], cfg.num_threshold, bool(scores[n] >= cfg.num_threshold))
        for n in nums
    ]
    share = sum(f.drifted for f in out) / len(out)
    if len(current) < cfg.min_rows:
        drifted, reason = False, f"{len(current)} current rows < min_rows {cfg.min_rows}: no decision"
    else:
        drifted = share >= cfg.drift_share
        names = ", ".join(f.name for f in out if f.drifted) or "none"
        reason = f"{share:.0%} of {len(out)} features drifted ({names}); limit {cfg.drift_share:.0%}"
    return DriftResult(
        drifted, share, out, len(reference), len(current), len(ref), len(cur), engine, reason, cfg, refined
    )


def _refine(scores, reference, current, cats, nums, cfg: DriftConfig, sampled: bool) -> list[str]:
    """Recompute, on all rows, the features whose sampled score is within the band of its threshold."""
    if not sampled:
        return []
    refined = []
    for names, method, threshold in (
        (cats, cfg.cat_method, cfg.cat_threshold),
        (nums, cfg.num_method, cfg.num_threshold),
    ):
        for name in names:
            if method in _NUMPY and abs(scores[name] - threshold) < cfg.refine_band:
                scores[name] = _NUMPY[method](reference[name], current[name])
                refined.append(name)
    return refined


def evidently_scores(ref, cur, cats, nums, cfg: DriftConfig, html_path=None) -> dict[str, float]:
    """Evidently 0.7 DataDriftPreset on the samples; its per-column drift scores."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=nums, categorical_columns=cats)

    def dataset(frame):
        data = frame[cats + nums].copy()
        for c in cats:
            data[c] = data[c].astype("string").astype(object)
        for n in nums:
            data[n] = data[n].astype("float64")
        return Dataset.from_pandas(data.reset_index(drop=True), data_definition=definition)

    preset = DataDriftPreset(
        columns=cats + nums,
        num_method=cfg.num_method,
        cat_method=cfg.cat_method,
        num_threshold=cfg.num_threshold,
        cat_threshold=cfg.cat_threshold,
        drift_share=cfg.drift_share,
    )
    snapshot = Report([preset]).run(dataset(cur), dataset(ref))  # Evidently 0.7: current first
    scores = {
        m["config"]["column"]: float(m["value"])
        for m in snapshot.dict()["metrics"]
        if m["config"].get("type", "").endswith("ValueDrift")
    }
    if html_path is not None:
        Path(html_path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
    return scores
