"""Classification metrics from labels and predicted class probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss, roc_auc_score


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1, balanced accuracy, AUC (one-vs-rest macro for multi-class), loss."""
    classes = np.arange(probs.shape[1])
    predicted = probs.argmax(1)
    present = np.unique(labels)
    if len(present) < 2:
        auc = float("nan")
    elif probs.shape[1] == 2:
        auc = roc_auc_score(labels, probs[:, 1])
    else:
        auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=classes)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(
            f1_score(labels, predicted, average="macro", labels=classes, zero_division=0)
        ),
        "auc": float(auc),
        "loss": float(log_loss(labels, np.clip(probs, 1e-12, 1), labels=classes)),
    }
