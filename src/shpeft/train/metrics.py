"""Classification metrics from labels and predicted class probabilities.

Plain NumPy (checked against scikit-learn in the tests): every finetune job is its own process,
and importing `sklearn.metrics` (which pulls in scipy.stats) costs more per job than training the
demo's linear probe for an epoch.
"""

from __future__ import annotations

import numpy as np


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of `scores`, ties sharing their average rank."""
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)
    return ranks


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic); NaN without both classes."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = _average_ranks(scores)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def confusion_matrix(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Counts of (true class, predicted class): rows are the true class."""
    n_classes = probs.shape[1]
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (np.asarray(labels), probs.argmax(1)), 1)
    return confusion


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1, balanced accuracy, AUC (one-vs-rest macro for multi-class), loss."""
    labels = np.asarray(labels)
    n_classes = probs.shape[1]
    predicted = probs.argmax(1)
    confusion = confusion_matrix(labels, probs)
    true_positive = np.diag(confusion).astype(float)
    actual, called = confusion.sum(1), confusion.sum(0)
    present = actual > 0
    f1_denominator = actual + called
    f1 = np.divide(
        2 * true_positive, f1_denominator, out=np.zeros(n_classes), where=f1_denominator > 0
    )
    if n_classes == 2:
        auc = binary_auc(labels == 1, probs[:, 1])
    else:
        # Undefined (NaN) when a class has no case: every split holds every class.
        auc = float(np.mean([binary_auc(labels == c, probs[:, c]) for c in range(n_classes)]))
    picked = probs[np.arange(len(labels)), labels]
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(np.mean(true_positive[present] / actual[present])),
        "macro_f1": float(f1.mean()),
        "auc": auc,
        "loss": float(-np.mean(np.log(np.clip(picked, 1e-12, 1)))),
    }
