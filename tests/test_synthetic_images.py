"""The synthetic datasets: deterministic, balanced, and with a class signal that is spatial only."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from shpeft.data.synthetic_images import KINDS, generate

GRAYSCALE = ("ultrasound", "xray")


@cache
def _dataset(kind: str) -> tuple[np.ndarray, np.ndarray]:
    return generate(kind, 600, 32, seed=7)


def _cv_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """5-fold accuracy of a (strongly regularised, hence fast) logistic regression."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))
    # Threaded BLAS makes these tiny fits slower, and much slower on a busy machine.
    with threadpool_limits(1):
        return float(cross_val_score(model, features, labels, cv=5).mean())


def _global_stats(images: np.ndarray) -> np.ndarray:
    """Per-channel mean and standard deviation: 6 features."""
    pixels = images.astype(np.float32)
    return np.concatenate([pixels.mean(axis=(1, 2)), pixels.std(axis=(1, 2))], axis=1)


def _spatial(images: np.ndarray, cells: int = 4, bins: int = 8) -> np.ndarray:
    """An 8x8 thumbnail of each channel plus gradient-orientation histograms in 4x4 cells."""
    n, size = images.shape[:2]
    pixels = images.astype(np.float32)
    thumbnail = pixels.reshape(n, 8, size // 8, 8, size // 8, 3).mean(axis=(2, 4))
    gy, gx = np.gradient(pixels.mean(axis=-1), axis=(1, 2))
    orientation = np.minimum(
        (np.mod(np.arctan2(gy, gx), np.pi) / np.pi * bins).astype(int), bins - 1
    )
    votes = np.eye(bins, dtype=np.float32)[orientation] * np.hypot(gx, gy)[..., None]
    step = size // cells
    hog = votes.reshape(n, cells, step, cells, step, bins).sum(axis=(2, 4))
    hog /= hog.sum(axis=-1, keepdims=True) + 1e-6
    return np.concatenate([thumbnail.reshape(n, -1), hog.reshape(n, -1)], axis=1)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_shapes_dtypes_and_balance(kind: str, size: int) -> None:
    n_classes = len(KINDS[kind])
    images, labels = generate(kind, 5 * n_classes + 2, size, seed=0)
    assert images.shape == (5 * n_classes + 2, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (len(images),) and labels.dtype == np.int64
    counts = np.bincount(labels, minlength=n_classes)
    assert len(counts) == n_classes and counts.max() - counts.min() <= 1
    assert images.std() > 10  # not blank
    if kind in GRAYSCALE:
        assert (images == images[..., :1]).all()


@pytest.mark.parametrize("size", [16, 224])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_extreme_sizes(kind: str, size: int) -> None:
    images, labels = generate(kind, len(KINDS[kind]), size, seed=1)
    assert images.shape == (len(KINDS[kind]), size, size, 3)
    assert sorted(labels) == list(range(len(KINDS[kind])))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_deterministic(kind: str) -> None:
    first, labels = generate(kind, 40, 32, seed=3)
    again, labels_again = generate(kind, 40, 32, seed=3)
    other, _ = generate(kind, 40, 32, seed=4)
    assert first.tobytes() == again.tobytes() and (labels == labels_again).all()
    assert first.tobytes() != other.tobytes()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_global_statistics_do_not_reveal_the_class(kind: str) -> None:
    images, labels = _dataset(kind)
    chance = 1 / len(KINDS[kind])
    assert _cv_accuracy(_global_stats(images), labels) < chance + 0.1


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_spatial_features_reveal_the_class(kind: str) -> None:
    images, labels = _dataset(kind)
    global_accuracy = _cv_accuracy(_global_stats(images), labels)
    assert _cv_accuracy(_spatial(images), labels) > global_accuracy + 0.15


@pytest.mark.parametrize(
    ("kind", "n", "size", "message"),
    [
        ("mri", 10, 32, "unknown synthetic kind 'mri'.*ultrasound"),
        ("xray", 2, 32, "less than the 3 classes"),
        ("shapes", 7, 32, "less than the 8 classes"),
        ("dermoscopy", 10, 15, "below the minimum"),
    ],
)
def test_bad_arguments(kind: str, n: int, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(kind, n, size, seed=0)
