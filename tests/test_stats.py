"""Statistics against known answers, and the paper tables in their three formats."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from shpeft.analysis.compare import ACROSS, pairwise, ranks, smallest_p, wilcoxon
from shpeft.analysis.stats import (
    PublishedResult,
    StatsConfig,
    bootstrap_intervals,
    detailed_metrics,
    expected_calibration_error,
)
from shpeft.analysis.tables import main_table, to_latex, to_markdown, with_published

CFG = StatsConfig()


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


def test_wilcoxon_rejects_a_real_difference():
    rng = np.random.default_rng(2)
    b = rng.normal(0.7, 0.05, 10)
    result = wilcoxon(b + 0.05 + rng.normal(0, 0.005, 10), b, CFG)
    assert result["n"] == 10 and result["p_value"] < 0.01


def test_wilcoxon_keeps_its_level_when_there_is_no_difference():
    rng = np.random.default_rng(3)
    draws = [(rng.normal(0.7, 0.05, 10), rng.normal(0.7, 0.05, 10)) for _ in range(200)]
    p_values = np.array([wilcoxon(a, b, CFG)["p_value"] for a, b in draws])
    assert np.mean(p_values < 0.05) <= 0.07


def test_zero_differences_follow_the_named_rule():
    b = np.full(10, 0.5)
    a = b + np.array([0, 0, 0.1, 0.2, -0.05, 0.3, 0.15, 0.25, -0.02, 0.12])
    for rule in ("pratt", "zsplit"):
        p = wilcoxon(a, b, StatsConfig(zero_method=rule))["p_value"]
        assert p == pytest.approx(scipy.stats.wilcoxon(a, b, zero_method=rule).pvalue)
        assert p != pytest.approx(scipy.stats.wilcoxon(a, b).pvalue)  # zeros not dropped silently


@pytest.mark.parametrize(
    ("a", "b", "note"),
    [
        ([0.5, 0.6, 0.7], [0.4, 0.5, 0.6], "3 differing pairs cannot reach p < 0.05"),
        ([0.5, 0.6, 0.7, 0.8, 0.9, 0.5], [0.5, 0.5, 0.6, 0.7, 0.8, 0.4], "5 differing pairs"),
        ([0.5] * 6, [0.5] * 6, "no paired difference"),
    ],
)
def test_wilcoxon_says_why_there_is_no_test(a, b, note):
    result = wilcoxon(np.array(a), np.array(b), CFG)
    assert np.isnan(result["p_value"]) and result["note"].startswith(note)
    assert smallest_p(5) == 0.0625 and smallest_p(6) == 0.03125


def _runs(methods, seeds, datasets=("d1", "d2")) -> pd.DataFrame:
    """Method i scores about 0.6 + 0.1 i everywhere: the last method is best."""
    rng = np.random.default_rng(4)
    rows = [
        {
            "dataset": d,
            "method": m,
            "seed": s,
            "accuracy": 0.6 + 0.1 * i + rng.normal(0, 0.01),
            "val_accuracy": 0.6 + 0.1 * i + rng.normal(0, 0.01),
            "macro_f1": 0.5 + 0.1 * i + rng.normal(0, 0.01),
            "trainable_fraction": 10.0 ** -(i + 1),
        }
        for i, m in enumerate(methods)
        for d in datasets
        for s in seeds
    ]
    return pd.DataFrame(rows)


def _tables(runs, metrics=("accuracy",), cfg=CFG):
    pairs = pairwise(runs, metrics[0], cfg)
    average, _ = ranks(runs, metrics[0], cfg)
    return main_table(runs, pairs, average, list(metrics), cfg.focus, cfg.level)


def test_main_table_bolds_the_best_and_reads_as_latex():
    runs = _runs(["full", "linear", "sh-peft"], [0, 1, 2])
    runs.loc[runs["method"] == "linear", "macro_f1"] = 0.99  # best F1, not best accuracy
    table, best = _tables(runs, ("accuracy", "macro_f1"))
    assert best == {
        **{f"{c} Acc": "sh-peft" for c in ("d1", "d2", "mean")},
        **{f"{c} F1": "linear" for c in ("d1", "d2", "mean")},
    }
    assert list(table.columns[:4]) == ["method", "trainable (% of backbone)", "d1 Acc", "d1 F1"]
    d1 = runs[(runs["method"] == "full") & (runs["dataset"] == "d1")]["accuracy"]
    half = scipy.stats.t.ppf(0.975, 2) * d1.std(ddof=1) / np.sqrt(3)  # the t-interval over seeds
    assert table.loc[0, "d1 Acc"] == f"{d1.mean():.3f} ± {half:.3f}"
    assert list(table["mean rank"]) == ["3.00", "2.00", "1.00"]
    # Two datasets cannot carry a test across datasets: the table says so.
    assert table.loc[0, "p vs sh-peft (Holm)"] == "n/a (2 differing pairs cannot reach p < 0.05)"
    assert table.loc[2, "p vs sh-peft (Holm)"] == "-"
    assert "**" in to_markdown(table, best, "caption")
    latex = to_latex(table, best, "Accuracy_test")
    body = latex[latex.index(r"\midrule") : latex.index(r"\bottomrule")].splitlines()[1:]
    header = latex[latex.index(r"\toprule") : latex.index(r"\midrule")].splitlines()[1]
    assert re.findall(r"\\(?:top|mid|bottom)rule", latex) == [
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
    ]
    assert all(row.count(" & ") == header.count(" & ") == 9 for row in body)
    assert len(body) == 3 and r"\textbf{" in body[2] and r"$\pm$" in body[0]
    assert r"Accuracy\_test" in latex


def test_published_results_are_marked_rows_outside_the_ranks_tests_and_bold():
    runs = _runs(["full", "sh-peft"], [0, 1, 2])
    table, best = _tables(runs, ("accuracy", "macro_f1"))
    cite = "A. Author et al., MICCAI 2024, Table 1"
    published = [
        PublishedResult(
            dataset="d1", method="TaskNet", metric="accuracy", value=0.99, citation=cite
        ),
        PublishedResult(
            dataset="d2", method="TaskNet", metric="macro_f1", value=0.5, citation=cite
        ),
        PublishedResult(dataset="d9", method="Other", metric="accuracy", value=0.7, citation="B"),
        PublishedResult(dataset="d1", method="TaskNet", metric="auc", value=0.9, citation=cite),
    ]
    marked, note = with_published(table, published)
    assert (
        len(marked) == 3 and (marked.iloc[:2].values == table.values).all()
    )  # one row; d9 and AUC not shown
    row = marked.iloc[2]
    assert row["method"] == "TaskNet [1]" and row["d1 Acc"] == "0.990" and row["d2 F1"] == "0.500"
    assert row["d1 F1"] == row["mean Acc"] == "" and row["mean rank"] == "published"
    assert row["p vs sh-peft (Holm)"] == "published"
    assert best["d1 Acc"] == "sh-peft"  # 0.99 would be the best: it is not in the statistics
    assert f"[1] {cite}." in note and "not comparable run for run" in note
    assert "TaskNet [1]" in to_markdown(marked, best, note) and "**0.990**" not in to_markdown(
        marked, best, note
    )
    assert with_published(table, []) == (table, "")


def test_across_datasets_seeds_are_averaged_first_and_holm_corrects():
    datasets = [f"d{i}" for i in range(8)]
    runs = _runs(["full", "linear", "bitfit", "sh-peft"], [0, 1], datasets)
    pairs = pairwise(runs, "accuracy", CFG)
    across = pairs[pairs["scope"] == ACROSS].set_index("method")
    assert (across["n"] == 8).all()  # one pair per dataset, not per dataset x seed
    means = runs.groupby(["dataset", "method"])["accuracy"].mean().unstack()
    raw = [
        scipy.stats.wilcoxon(means["sh-peft"], means[m], zero_method="pratt").pvalue
        for m in ("full", "linear", "bitfit")
    ]
    order = np.argsort(raw)
    holm = np.minimum(1, np.maximum.accumulate([(3 - k) * raw[i] for k, i in enumerate(order)]))
    assert across.loc[["full", "linear", "bitfit"], "p_value"].tolist() == pytest.approx(raw)
    assert across.loc[np.array(["full", "linear", "bitfit"])[order], "p_holm"].tolist() == (
        pytest.approx(holm)
    )
    per_dataset = pairs[pairs["scope"] == "d0"]
    assert (per_dataset["n"] == 2).all() and per_dataset["p_value"].isna().all()
    average, friedman = ranks(runs, "accuracy", CFG)
    assert average.set_index("method")["mean_rank"].to_dict() == {
        "full": 4.0,
        "linear": 3.0,
        "bitfit": 2.0,
        "sh-peft": 1.0,
    }
    expected = scipy.stats.friedmanchisquare(
        *(means[m] for m in ("full", "linear", "bitfit", "sh-peft"))
    )
    assert friedman["p_value"] == pytest.approx(expected.pvalue)
    assert friedman["nemenyi"].shape == (4, 4)


def test_the_best_other_method_is_chosen_on_validation_not_test():
    runs = _runs(["full", "linear", "bitfit", "sh-peft"], [0, 1, 2])
    runs.loc[runs["method"] == "linear", "val_accuracy"] = 0.99  # best on validation
    runs.loc[runs["method"] == "bitfit", "accuracy"] = 0.99  # best on test
    pairs = pairwise(runs, "accuracy", CFG)
    assert set(pairs.loc[pairs["best_other"], "method"]) == {"linear"}


def test_one_seed_and_one_method_still_give_a_table():
    runs = _runs(["sh-peft"], [0])
    table, best = _tables(runs)
    assert table.loc[0, "d1 Acc"].count("±") == 0  # no interval from one seed
    assert table.loc[0, "p vs sh-peft (Holm)"] == "-" and table.loc[0, "mean rank"] == "1.00"
    assert to_latex(table, best, "c").count(r"\textbf{") == 3


def test_a_method_missing_on_a_dataset_and_a_metric_without_values():
    datasets = [f"d{i}" for i in range(3)]
    runs = _runs(["full", "linear", "sh-peft"], [0, 1], datasets)
    runs = runs[~((runs["method"] == "full") & (runs["dataset"] == "d2"))]  # full never ran on d2
    runs["auc"] = runs["val_auc"] = np.nan  # e.g. a metric a source cannot give
    table, best = _tables(runs, ("accuracy", "auc"))
    assert "d2 AUC" not in best and best["d2 Acc"] == "sh-peft"  # no bold on a missing score
    assert table.loc[0, "d2 Acc"] == "nan"
    average, friedman = ranks(runs, "accuracy", CFG)
    assert friedman["left_out"] == ["d2"] and friedman["datasets"] == 2
    assert set(average["method"]) == {"full", "linear", "sh-peft"}  # no method dropped
    assert pairwise(runs, "auc", CFG)["p_value"].isna().all()
