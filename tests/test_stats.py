"""Statistics against known answers, and the paper tables in their three formats."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from shpeft.analysis.stats import (
    StatsConfig,
    bootstrap_intervals,
    detailed_metrics,
    expected_calibration_error,
    paired_test,
)
from shpeft.analysis.tables import comparisons, main_table, to_latex, to_markdown


def simulated_classifier(n: int, accuracy: float, rng: np.random.Generator):
    """Three classes; each case is right with probability `accuracy`, confidence 0.6."""
    labels = rng.integers(0, 3, n)
    right = rng.random(n) < accuracy
    predicted = np.where(right, labels, (labels + rng.integers(1, 3, n)) % 3)
    probs = np.full((n, 3), 0.2)
    probs[np.arange(n), predicted] = 0.6
    return labels, probs


def test_bootstrap_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    cfg = StatsConfig(bootstrap=200, level=0.95)
    covered = []
    for trial in range(100):
        labels, probs = simulated_classifier(200, 0.8, rng)
        low, high = bootstrap_intervals(labels, probs, StatsConfig(**{**vars(cfg), "seed": trial}))[
            "accuracy"
        ]
        covered.append(low <= 0.8 <= high)
    assert 0.88 <= np.mean(covered) <= 0.99


def test_interval_narrows_with_more_cases_and_holds_the_estimate():
    rng = np.random.default_rng(1)
    small = simulated_classifier(100, 0.7, rng)
    large = simulated_classifier(2000, 0.7, rng)
    width = {}
    for name, (labels, probs) in {"small": small, "large": large}.items():
        low, high = bootstrap_intervals(labels, probs, StatsConfig(bootstrap=300))["accuracy"]
        assert low <= np.mean(probs.argmax(1) == labels) <= high
        width[name] = high - low
    assert width["large"] < width["small"] / 3


def test_expected_calibration_error_known_answers():
    labels = np.array([0, 0, 0, 0, 1])
    calibrated = np.tile([0.8, 0.2], (5, 1))  # confidence 0.8, right 4 times in 5
    assert expected_calibration_error(labels, calibrated) == pytest.approx(0.0)
    overconfident = np.tile([1.0, 0.0], (5, 1))
    assert expected_calibration_error(labels, overconfident) == pytest.approx(0.2)


def test_detail_has_recall_and_confusion():
    labels = np.array([0, 0, 1, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 0]]
    detail = detailed_metrics(labels, probs, ["a", "b", "c"])
    assert detail["recall"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert detail["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_paired_test_rejects_a_real_difference():
    rng = np.random.default_rng(2)
    b = rng.normal(0.7, 0.05, 10)
    result = paired_test(b + 0.05 + rng.normal(0, 0.005, 10), b)
    assert result["test"] == "Wilcoxon signed-rank" and result["pairs"] == 10
    assert result["p_value"] < 0.01


def test_paired_test_keeps_its_level_when_there_is_no_difference():
    rng = np.random.default_rng(3)
    p_values = [paired_test(rng.normal(0.7, 0.05, 10), rng.normal(0.7, 0.05, 10))["p_value"]]
    p_values += [
        paired_test(rng.normal(0.7, 0.05, 10), rng.normal(0.7, 0.05, 10))["p_value"]
        for _ in range(199)
    ]
    assert np.mean(np.array(p_values) < 0.05) <= 0.07


@pytest.mark.parametrize(
    ("a", "b", "note"),
    [([0.5], [0.4], "fewer than two"), ([0.5, 0.6], [0.5, 0.6], "no paired difference")],
)
def test_paired_test_not_applicable(a, b, note):
    result = paired_test(np.array(a), np.array(b))
    assert np.isnan(result["p_value"]) and note in result["note"]


def _runs(methods, seeds, datasets=("d1", "d2")) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = [
        {
            "dataset": d,
            "method": m,
            "seed": s,
            "accuracy": 0.6 + 0.1 * i + rng.normal(0, 0.01),
            "trainable_fraction": 10.0 ** -(i + 1),
        }
        for i, m in enumerate(methods)
        for d in datasets
        for s in seeds
    ]
    return pd.DataFrame(rows)


def test_main_table_bolds_the_best_and_reads_as_latex():
    runs = _runs(["full", "linear", "sh-peft"], [0, 1, 2])
    tests = comparisons(runs, "full", "accuracy")
    table, best = main_table(runs, tests, "accuracy", "full")
    assert best == {"d1": "sh-peft", "d2": "sh-peft", "mean": "sh-peft"}
    assert list(table.columns[:5]) == ["method", "trainable (% of backbone)", "d1", "d2", "mean"]
    assert re.fullmatch(r"0\.\d{3} ± 0\.\d{3}", table.loc[0, "d1"])
    assert table.loc[0, "p vs full"] == "n/a" and table.loc[2, "p vs full"] != "n/a"
    assert "**" in to_markdown(table, best, "caption")
    latex = to_latex(table, best, "Accuracy_test")
    body = latex[latex.index(r"\midrule") : latex.index(r"\bottomrule")].splitlines()[1:]
    header = latex[latex.index(r"\toprule") : latex.index(r"\midrule")].splitlines()[1]
    assert re.findall(r"\\(?:top|mid|bottom)rule", latex) == [
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
    ]
    assert all(row.count(" & ") == header.count(" & ") == 7 for row in body)
    assert len(body) == 3 and r"\textbf{" in body[2] and r"$\pm$" in body[0]
    assert r"Accuracy\_test" in latex


def test_one_seed_and_one_method_still_give_a_table():
    runs = _runs(["sh-peft"], [0])
    table, best = main_table(runs, comparisons(runs, "full", "accuracy"), "accuracy", "full")
    assert table.loc[0, "d1"].count("±") == 0  # no standard deviation from one seed
    assert table.loc[0, "p vs full"] == "n/a" and table.loc[0, "best other"] == "n/a"
    assert to_latex(table, best, "c").count(r"\textbf{") == 3
