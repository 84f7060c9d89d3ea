"""Metrics shared by the evaluations: ranking, calibration and selective answering."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10, weights: np.ndarray | None = None) -> float:
    """Expected calibration error over equal-width probability bins (optionally with example weights)."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = w.sum()
    return float(sum(abs(np.average(y[m], weights=w[m]) - np.average(p[m], weights=w[m])) * w[m].sum() / total
                     for m in (which == b for b in range(bins)) if m.any()))


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """Weights that make both classes count equally (for a probability calibrated to an even prior)."""
    pos = y.mean()
    return np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos)) if 0 < pos < 1 else np.ones(len(y))


def bootstrap_auroc(y: np.ndarray, s: np.ndarray, n: int, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of AUROC over bootstrap resamples of the evaluated examples."""
    rng = np.random.default_rng(seed)
    vals = [auroc(y[i], s[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(n))]
    vals = [v for v in vals if v == v]
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else (float("nan"),) * 2


def within_category_auroc(rows: list[dict], y: np.ndarray, s: np.ndarray, min_each: int) -> dict:
    """Size-weighted AUROC inside each category with at least `min_each` of both labels: the topic is fixed,
    so only the model's own knowledge can separate the examples."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(f"{r['source']}/{r['category']}", []).append(i)
    kept = {g: np.array(ix) for g, ix in groups.items() if min_each <= y[ix].sum() <= len(ix) - min_each}
    if not kept:
        return {"auroc": float("nan"), "categories": 0, "n": 0}
    n = sum(len(ix) for ix in kept.values())
    return {"auroc": float(sum(auroc(y[ix], s[ix]) * len(ix) for ix in kept.values()) / n),
            "categories": len(kept), "n": int(n)}


def risk_coverage(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Answer only the most confident k: coverage k/n against the error rate among the answered."""
    order = np.argsort(-p, kind="stable")
    correct = np.cumsum(y[order])
    k = np.arange(1, len(y) + 1)
    return k / len(y), 1.0 - correct / k


def mean_over(results: list):
    """Same-shaped results of several draws, averaged: numbers (and sequences of numbers, element by element) that
    differ between draws become their mean; counts the same in every draw stay counts; anything else is taken
    from the first."""
    first = results[0]
    if isinstance(first, dict):
        return {k: mean_over([r[k] for r in results]) for k in first}
    if isinstance(first, (list, tuple)) and all(len(r) == len(first) for r in results):
        return [mean_over([r[i] for r in results]) for i in range(len(first))]
    if isinstance(first, (int, float)) and not isinstance(first, bool) and any(r != first for r in results):
        return float(np.mean(results))
    return first
