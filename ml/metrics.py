"""Metrics for rare-event scoring: PR-AUC first (ROC-AUC flatters at <1 % prevalence)."""

from __future__ import annotations

import numpy as np


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision (step-wise area under the precision-recall curve)."""
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-score, kind="stable")
    hits = y[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / hits.sum())


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_x)) + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends, strict=True):  # ends is starts shifted by one
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def threshold_at_fpr(y: np.ndarray, score: np.ndarray, fpr: float) -> float:
    """Smallest threshold whose false-positive rate is at most `fpr`."""
    neg = np.sort(score[~np.asarray(y).astype(bool)])
    if len(neg) == 0:
        return 0.5
    k = int(np.floor(fpr * len(neg)))
    return float(np.nextafter(neg[len(neg) - 1 - k], np.inf)) if k < len(neg) else float(neg[0])


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr: float) -> float:
    y = np.asarray(y).astype(bool)
    if y.sum() == 0:
        return float("nan")
    t = threshold_at_fpr(y, score, fpr)
    return float((score[y] >= t).mean())


def expected_calibration_error(y: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    """ECE over equal-mass bins (equal-width bins would leave rare-event scores in one bin)."""
    y = np.asarray(y).astype(float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(score)
    err = 0.0
    for idx in np.array_split(order, bins):
        if len(idx):
            err += len(idx) / len(y) * abs(score[idx].mean() - y[idx].mean())
    return float(err)


def summary(y: np.ndarray, score: np.ndarray, fpr: float = 0.01) -> dict[str, float]:
    y = np.asarray(y).astype(bool)
    return {
        "pr_auc": pr_auc(y, score),
        "roc_auc": roc_auc(y, score),
        f"recall_at_fpr_{fpr:g}": recall_at_fpr(y, score, fpr),
        "ece": expected_calibration_error(y, score),
        "brier": float(np.mean((score - y) ** 2)) if len(y) else float("nan"),
        "prevalence": float(y.mean()) if len(y) else float("nan"),
        "rows": float(len(y)),
    }
