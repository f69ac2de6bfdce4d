"""Statistics a reviewer asks for, per run: the metrics of `shpeft.train.metrics`, expected
calibration error, per-class recall and the confusion matrix, each scalar with a percentile
bootstrap interval over test cases (resampling with replacement, `StatsConfig.bootstrap` times,
seeded). Comparisons between methods are `shpeft.analysis.compare`'s.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from shpeft.config import Name, Section, Unique
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
    focus: Name = "sh-peft"
    """The method tested against every other one (the paper's claim: SH-PEFT against each)."""
    zero_method: Literal["pratt", "zsplit"] = "pratt"
    """Zero differences in the Wilcoxon signed-rank test: `pratt` ranks them, then drops them
    (Pratt 1959); `zsplit` splits their ranks between the two signs."""


#: Test metrics every run records, as the main table names them.
LABELS = {"accuracy": "Acc", "macro_f1": "F1", "balanced_accuracy": "BAcc", "auc": "AUC"}


class TablesConfig(Section):
    """What the main table shows (every metric of every run is in the detail table)."""

    metrics: Unique[list[Literal["accuracy", "macro_f1", "balanced_accuracy", "auc"]]] = Field(
        default_factory=lambda: ["accuracy", "macro_f1"], min_length=1
    )
    """Test metrics of the main table, in order; the first is the one its paired tests compare
    and the best other method is chosen by (on validation)."""


class PublishedResult(Section):
    """A result from the literature, shown in the main table as a marked row: never ranked,
    tested or bold, since it comes from another split, protocol and code."""

    dataset: Name
    """The dataset it is shown under (a key of `datasets`)."""
    method: str = Field(min_length=1)
    """The method as the publication names it, e.g. a model built for the task."""
    metric: Literal["accuracy", "macro_f1", "balanced_accuracy", "auc"]
    """Which test metric `value` is."""
    value: float = Field(ge=0, le=1)
    """As published, as a fraction (0.912, not 91.2)."""
    citation: str = Field(min_length=1)
    """Where it is published (authors, venue, year; a table number helps a reader check)."""


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
