"""Tables in a paper's shape: the main comparison (CSV, Markdown, LaTeX booktabs) and run detail.

Main table: one row per method with its trainable fraction of the backbone, one column per
dataset plus the mean over datasets, cells `mean ± std` over seeds of the chosen metric, the best
mean of each column in bold, then the paired comparisons with the reference method and with the
best other method (test named in the header, p-values; "n/a" where a test does not apply).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shpeft.analysis.stats import paired_test

METHOD_COL = "method"
FRACTION_COL = "trainable (% of backbone)"


def _cell(values: pd.Series) -> tuple[float, str]:
    mean = float(values.mean())
    if len(values) < 2:
        return mean, f"{mean:.3f}"
    return mean, f"{mean:.3f} ± {values.std(ddof=1):.3f}"


def comparisons(runs: pd.DataFrame, reference: str, metric: str) -> pd.DataFrame:
    """Per method: paired tests over (dataset, seed) against `reference` and the best other method.

    The best other method is the one, other than the method itself and the reference, with the
    highest mean `metric` over all its runs.
    """
    means = runs.groupby(METHOD_COL, sort=False)[metric].mean()
    scores = runs.set_index(["dataset", "seed", METHOD_COL])[metric].unstack(METHOD_COL)
    rows = []
    for method in means.index:
        row: dict[str, Any] = {METHOD_COL: method}
        others = means.drop([m for m in (method, reference) if m in means.index])
        targets = {
            "reference": reference if reference in means.index and reference != method else None
        }
        targets["best_other"] = others.idxmax() if len(others) else None
        for role, other in targets.items():
            row[f"{role}_method"] = other
            if other is None:
                row.update({f"{role}_{k}": v for k, v in _not_applicable().items()})
                continue
            pair = scores[[method, other]].dropna()
            result = paired_test(pair[method].to_numpy(), pair[other].to_numpy())
            row.update({f"{role}_{k}": v for k, v in result.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _not_applicable() -> dict[str, Any]:
    return {"test": "Wilcoxon signed-rank", "pairs": 0, "p_value": np.nan, "note": "no method"}


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def main_table(
    runs: pd.DataFrame, tests: pd.DataFrame, metric: str, reference: str
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The main table as strings, and per column the method whose mean is best (for bold)."""
    datasets = list(dict.fromkeys(runs["dataset"]))
    methods = list(dict.fromkeys(runs[METHOD_COL]))
    table = pd.DataFrame({METHOD_COL: methods})
    fraction = runs.groupby(METHOD_COL, sort=False)["trainable_fraction"].mean()
    table[FRACTION_COL] = [f"{100 * fraction[m]:.3g}" for m in methods]
    best: dict[str, str] = {}
    for column in [*datasets, "mean"]:
        if column == "mean":  # per seed, the mean over datasets; then mean ± std over seeds
            per_seed = runs.groupby([METHOD_COL, "seed"], sort=False)[metric].mean()
            groups = {m: per_seed.loc[m] for m in methods}
        else:
            subset = runs[runs["dataset"] == column]
            groups = {m: subset[subset[METHOD_COL] == m][metric] for m in methods}
        cells = {m: _cell(values) for m, values in groups.items()}
        table[column] = [cells[m][1] for m in methods]
        best[column] = max(methods, key=lambda m: cells[m][0])
    tests = tests.set_index(METHOD_COL)
    table[f"p vs {reference}"] = [_p(tests.loc[m, "reference_p_value"]) for m in methods]
    table["best other"] = [tests.loc[m, "best_other_method"] or "n/a" for m in methods]
    table["p vs best other"] = [_p(tests.loc[m, "best_other_p_value"]) for m in methods]
    return table, best


def _bold_cells(table: pd.DataFrame, best: dict[str, str], bold) -> pd.DataFrame:
    out = table.copy()
    for column, method in best.items():
        mask = out[METHOD_COL] == method
        out.loc[mask, column] = out.loc[mask, column].map(bold)
    return out


def to_markdown(table: pd.DataFrame, best: dict[str, str], caption: str) -> str:
    marked = _bold_cells(table, best, lambda s: f"**{s}**")
    return f"{caption}\n\n{marked.to_markdown(index=False)}\n"


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("<", r"$<$")


def to_latex(table: pd.DataFrame, best: dict[str, str], caption: str) -> str:
    """A booktabs tabular in a table environment; `\\usepackage{booktabs}` in the preamble."""
    marked = table.map(lambda v: _latex_escape(str(v)))
    for column, method in best.items():
        mask = table[METHOD_COL] == method
        marked.loc[mask, column] = marked.loc[mask, column].map(lambda s: rf"\textbf{{{s}}}")
    columns = "l" + "r" * (len(table.columns) - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption)}}}",
        rf"\begin{{tabular}}{{{columns}}}",
        r"\toprule",
        " & ".join(_latex_escape(str(c)) for c in table.columns) + r" \\",
        r"\midrule",
        *(" & ".join(row) + r" \\" for row in marked.itertuples(index=False)),
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"
