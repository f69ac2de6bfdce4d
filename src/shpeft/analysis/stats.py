"""Statistics a reviewer asks for: per-run detail and bootstrap intervals, paired tests over seeds.

- Per run, on the test split: the metrics of `shpeft.train.metrics`, expected calibration error,
  per-class recall and the confusion matrix, each scalar with a percentile bootstrap interval over
  test cases (resampling with replacement, `StatsConfig.bootstrap` times, seeded).
- Across runs: a paired comparison of two methods over the (dataset, seed) pairs both ran, by the
  Wilcoxon signed-rank test (two-sided; exact for small samples). Fewer than two pairs, or no
  nonzero difference, gives no test: the result says why instead of a p-value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from shpeft.config import Name, Section
from shpeft.train.metrics import classification_metrics, confusion_matrix

#: Scalar test metrics reported with intervals, in table order.
SCALARS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "ece")


class StatsConfig(Section):
    """Statistics of the aggregate and sweep steps."""

    bootstrap: int = Field(1000, ge=0)
    """Bootstrap resamples of the test cases per run (0: no intervals)."""
    level: float = Field(0.95, gt=0, lt=1)
    """Two-sided confidence level of the intervals."""
    ece_bins: int = Field(15, ge=1)
    """Equal-width confidence bins of the expected calibration error."""
    seed: int = Field(0, ge=0)
    """Seeds the resampling."""
    reference: Name = "full"
    """The reference method every other one is compared with (besides the best other one)."""


def level_label(level: float) -> str:
    """A confidence level as a percentage, without rounding it away (0.975 is 97.5%)."""
    return f"{100 * level:.4g}%"


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        inside = which == b
        total += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total / len(labels))


def detailed_metrics(
    labels: np.ndarray, probs: np.ndarray, class_names: list[str], ece_bins: int = 15
) -> dict[str, Any]:
    """Scalar metrics, ECE, per-class recall and the confusion matrix (rows: true class)."""
    confusion = confusion_matrix(labels, probs)
    actual = confusion.sum(1)
    recall = np.divide(
        np.diag(confusion), actual, out=np.full(len(actual), np.nan), where=actual > 0
    )
    return {
        **classification_metrics(labels, probs),
        "ece": expected_calibration_error(labels, probs, ece_bins),
        "recall": dict(zip(class_names, recall.tolist(), strict=True)),
        "confusion": confusion.tolist(),
    }


def bootstrap_intervals(
    labels: np.ndarray, probs: np.ndarray, cfg: StatsConfig
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every scalar metric over resampled test cases."""
    if cfg.bootstrap <= 0:
        return {}
    rng = np.random.default_rng(cfg.seed)
    draws = {name: [] for name in SCALARS}
    for _ in range(cfg.bootstrap):
        index = rng.integers(0, len(labels), len(labels))
        sample_labels, sample_probs = labels[index], probs[index]
        metrics = classification_metrics(sample_labels, sample_probs)
        metrics["ece"] = expected_calibration_error(sample_labels, sample_probs, cfg.ece_bins)
        for name in SCALARS:
            draws[name].append(metrics[name])
    tail = (1 - cfg.level) / 2 * 100
    return {
        name: tuple(float(v) for v in np.nanpercentile(values, [tail, 100 - tail]))
        for name, values in draws.items()
    }


def seed_mean_interval(
    labels: np.ndarray, predicted: np.ndarray, cfg: StatsConfig
) -> tuple[float, float]:
    """Percentile interval of the accuracy averaged over seeds (`predicted`: seeds x cases).

    Each resample draws test cases once and scores every seed on those same cases, so the interval
    reflects the test set's sampling, not seed-to-seed variation (reported as the std beside it).
    """
    if cfg.bootstrap <= 0:
        return float("nan"), float("nan")
    per_case = (np.asarray(predicted) == np.asarray(labels)).mean(0)
    rng = np.random.default_rng(cfg.seed)
    n = len(per_case)
    draws = [per_case[rng.integers(0, n, n)].mean() for _ in range(cfg.bootstrap)]
    tail = (1 - cfg.level) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def paired_test(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Wilcoxon signed-rank test of paired scores `a` against `b` (two-sided)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    result: dict[str, Any] = {
        "test": "Wilcoxon signed-rank",
        "pairs": int(len(a)),
        "mean_difference": float(np.mean(a - b)) if len(a) else float("nan"),
        "p_value": float("nan"),
    }
    if len(a) < 2:
        result["note"] = "not applicable: fewer than two paired runs"
    elif not np.any(a != b):
        result["note"] = "not applicable: no paired difference"
    else:
        from scipy.stats import wilcoxon

        result["p_value"] = float(wilcoxon(a, b, zero_method="wilcox").pvalue)
    return result
