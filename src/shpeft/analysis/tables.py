"""Tables in a paper's shape: the main comparison (CSV, Markdown, LaTeX booktabs) and run detail.

Main table: one row per method with its trainable fraction of the backbone, then for each dataset
and for the mean over datasets one column per metric of `tables.metrics` (the paper's accuracy
and macro-F1 by default), cells the mean over seeds ± the half-width of its t-interval at
`stats.level` (the mean over datasets is taken per seed first), the best mean of each column in
bold; then, for the first metric, each method's average rank over datasets and the
Holm-corrected p-value of the focus method against it across datasets
(`shpeft.analysis.compare`), or why there is none.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from shpeft.analysis.compare import ACROSS
from shpeft.analysis.stats import LABELS, PublishedResult

METHOD_COL = "method"
FRACTION_COL = "trainable (% of backbone)"
PUBLISHED = "published"


def _cell(values: pd.Series, level: float) -> tuple[float, str]:
    """Mean ± the half-width of the t-interval over seeds (just the mean for one seed)."""
    from scipy import stats

    values = values.dropna()
    mean, n = float(values.mean()), len(values)
    if n < 2:
        return mean, f"{mean:.3f}"
    half = stats.t.ppf((1 + level) / 2, n - 1) * values.std(ddof=1) / np.sqrt(n)
    return mean, f"{mean:.3f} ± {half:.3f}"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def main_table(
    runs: pd.DataFrame,
    pairs: pd.DataFrame,
    ranks: pd.DataFrame,
    metrics: list[str],
    focus: str,
    level: float,
    references: Sequence[str] = (),
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The main table as strings, and per column the method whose mean is best (for bold);
    `references` are shown, but neither ranked, tested nor bold."""
    datasets = list(dict.fromkeys(runs["dataset"]))
    methods = list(dict.fromkeys(runs[METHOD_COL]))
    table = pd.DataFrame({METHOD_COL: methods})
    fraction = runs.groupby(METHOD_COL, sort=False)["trainable_fraction"].mean()
    table[FRACTION_COL] = [f"{100 * fraction[m]:.3g}" for m in methods]
    best: dict[str, str] = {}
    for column in [*datasets, "mean"]:
        for metric in metrics:
            if column == "mean":  # per seed, the mean over datasets; then over seeds
                per_seed = runs.groupby([METHOD_COL, "seed"], sort=False)[metric].mean()
                groups = {m: per_seed.loc[m] for m in methods}
            else:
                subset = runs[runs["dataset"] == column]
                groups = {m: subset[subset[METHOD_COL] == m][metric] for m in methods}
            cells = {m: _cell(values, level) for m, values in groups.items()}
            name = f"{column} {LABELS[metric]}"
            table[name] = [cells[m][1] for m in methods]
            scored = [m for m in methods if np.isfinite(cells[m][0]) and m not in references]
            if scored:
                best[name] = max(scored, key=lambda m: cells[m][0])
    rank = ranks.set_index(METHOD_COL)["mean_rank"]
    table["mean rank"] = [
        "reference" if m in references else f"{rank[m]:.2f}" if m in rank else "n/a"
        for m in methods
    ]
    table[f"p vs {focus} (Holm)"] = [
        "reference" if m in references else _versus(pairs, focus, m) for m in methods
    ]
    return table, best


def with_published(
    table: pd.DataFrame, published: Sequence[PublishedResult]
) -> tuple[pd.DataFrame, str]:
    """The table with a marked row per published method (its value under each dataset and
    metric it reports, the table's other cells empty), and the caption's note with citations.
    Results for datasets or metrics the table does not show are left out."""
    shown = [r for r in published if f"{r.dataset} {LABELS.get(r.metric)}" in table.columns]
    if not shown:
        return table, ""
    citations = list(dict.fromkeys(r.citation for r in shown))
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for result in shown:
        number = citations.index(result.citation) + 1
        row = rows.setdefault((result.method, result.citation), dict.fromkeys(table.columns, ""))
        row.update({METHOD_COL: f"{result.method} [{number}]", "mean rank": PUBLISHED})
        row[table.columns[-1]] = PUBLISHED
        row[f"{result.dataset} {LABELS[result.metric]}"] = f"{result.value:.3f}"
    added = pd.DataFrame(list(rows.values()), columns=table.columns)
    note = (
        f" Rows marked {PUBLISHED}: results as their publications report them (on their own "
        "splits, protocols and code, so not comparable run for run), outside the ranks, tests "
        "and bold: " + "; ".join(f"[{i}] {c}" for i, c in enumerate(citations, 1)) + "."
    )
    return pd.concat([table, added], ignore_index=True), note


def _versus(pairs: pd.DataFrame, focus: str, method: str) -> str:
    """The Holm-corrected p across datasets of `focus` against `method`, or why there is none."""
    if method == focus:
        return "-"
    if pairs.empty:
        return f"n/a ({focus} did not run)"
    row = pairs[(pairs["scope"] == ACROSS) & (pairs[METHOD_COL] == method)].iloc[0]
    return _p(row["p_holm"]) if np.isfinite(row.get("p_holm", np.nan)) else f"n/a ({row['note']})"


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
