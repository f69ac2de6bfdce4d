"""Comparisons matched to the design: seeds within a dataset, datasets across them.

Seeds of one dataset share its images, so they are not independent samples of the method's
merit across tasks; pooling dataset x seed pairs into one test overstates the evidence. Hence:

- Per dataset: the focus method (`stats.focus`, SH-PEFT by default) against each other method,
  paired by seed (Wilcoxon signed-rank).
- Across datasets: each method's seeds are averaged first, so each dataset counts once (n is the
  number of datasets). The Friedman test over all methods, with their average ranks (1 is best)
  and the Nemenyi post-hoc p-values that the critical-difference diagram draws (Demsar 2006);
  and the focus method against each other by the Wilcoxon signed-rank test, with Holm's
  correction over those comparisons.
- Zero differences follow a named rule (`stats.zero_method`: `pratt` ranks them, then drops
  them; `zsplit` splits their ranks between the signs), never a silent drop.
- A test whose n cannot reach p < 1 - `stats.level` (an exact two-sided signed-rank test on n
  pairs cannot go below 2 / 2^n) reports why instead of a p-value.

The tests come from maintained libraries: scipy (Wilcoxon, Friedman), statsmodels (Holm) and
scikit-posthocs (Nemenyi, the diagram), rather than code of ours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shpeft.analysis.stats import StatsConfig

ACROSS = "across datasets"


def smallest_p(n: int) -> float:
    """The smallest two-sided p-value an exact signed-rank test on `n` pairs can give."""
    return min(1.0, 2.0 / 2**n)


def wilcoxon(a: np.ndarray, b: np.ndarray, cfg: StatsConfig) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired `a` against `b`, or why there is none."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    alpha = 1 - cfg.level
    result: dict[str, Any] = {
        "n": len(a),
        "mean_difference": float(np.mean(a - b)) if len(a) else np.nan,
        "p_value": np.nan,
        "note": "",
    }
    differing = int(np.count_nonzero(a != b))
    if not differing and len(a):
        result["note"] = "no paired difference"
    elif smallest_p(differing) >= alpha:
        result["note"] = f"{differing} differing pairs cannot reach p < {alpha:g}"
    else:
        result["p_value"] = float(stats.wilcoxon(a, b, zero_method=cfg.zero_method).pvalue)
    return result


def per_dataset_means(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Datasets x methods: each method's `metric` averaged over its seeds (grid order kept)."""
    table = runs.pivot_table(
        index="dataset", columns="method", values=metric, aggfunc="mean", dropna=False
    )
    return table.reindex(
        index=list(dict.fromkeys(runs["dataset"])), columns=list(dict.fromkeys(runs["method"]))
    )


def pairwise(runs: pd.DataFrame, metric: str, cfg: StatsConfig) -> pd.DataFrame:
    """The focus method against every other: per dataset over seeds, and across datasets over
    seed means with Holm's correction; `best_other` marks the other method with the highest mean
    validation score (never the test's). Empty when the focus method did not run."""
    from statsmodels.stats.multitest import multipletests

    methods = list(dict.fromkeys(runs["method"]))
    if cfg.focus not in methods or len(methods) < 2:
        return pd.DataFrame()
    rows = []
    for dataset, frame in runs.groupby("dataset", sort=False):
        scores = frame.pivot_table(index="seed", columns="method", values=metric)
        for other in methods:
            if cfg.focus in scores and other != cfg.focus and other in scores:
                pair = scores[[cfg.focus, other]].dropna()
                test = wilcoxon(pair[cfg.focus], pair[other], cfg)
                rows.append({"scope": dataset, "method": other, **test})
    means = per_dataset_means(runs, metric)
    across = [
        {"scope": ACROSS, "method": other, **wilcoxon(means[cfg.focus], means[other], cfg)}
        for other in methods
        if other != cfg.focus
    ]
    # The family: every comparison that could be tested; no paired difference counts as p = 1.
    family = [r for r in across if np.isfinite(r["p_value"]) or r["note"] == "no paired difference"]
    if any(np.isfinite(r["p_value"]) for r in family):
        raw = [r["p_value"] if np.isfinite(r["p_value"]) else 1.0 for r in family]
        for row, p in zip(family, multipletests(raw, method="holm")[1], strict=True):
            row["p_holm"] = float(p)
    validation = runs.groupby("method", sort=False)[f"val_{metric}"].mean().drop(cfg.focus)
    validation = validation.dropna()
    best_other = validation.idxmax() if len(validation) else None
    table = pd.DataFrame(rows + across)
    table["best_other"] = table["method"] == best_other
    table.insert(1, "versus", cfg.focus)
    table.insert(3, "metric", metric)
    table["zero_method"] = cfg.zero_method
    return table


def ranks(runs: pd.DataFrame, metric: str, cfg: StatsConfig) -> tuple[pd.DataFrame, dict]:
    """Average ranks over the datasets where every method has a score (1 is best; `left_out`
    names the others), the Friedman test, and the Nemenyi post-hoc p-values (methods x methods;
    empty when the Friedman test does not apply)."""
    from scipy import stats

    all_means = per_dataset_means(runs, metric)
    means = all_means.dropna(axis=0)  # a dataset where a method has no score cannot rank it
    average = means.rank(axis=1, ascending=False).mean().rename("mean_rank")
    friedman: dict[str, Any] = {
        "datasets": len(means),
        "methods": means.shape[1],
        "left_out": sorted(set(all_means.index) - set(means.index)),
    }
    if means.shape[1] < 3 or len(means) < 2:
        friedman["note"] = "needs 3 methods or more on 2 datasets or more"
        return average.reset_index(), {**friedman, "nemenyi": pd.DataFrame()}
    import scikit_posthocs

    test = stats.friedmanchisquare(*(means[m] for m in means))
    friedman.update(statistic=float(test.statistic), p_value=float(test.pvalue), note="")
    nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(means.to_numpy())
    nemenyi.index = nemenyi.columns = means.columns
    return average.reset_index(), {**friedman, "nemenyi": nemenyi}
