"""The figures, as seaborn draws them from frames and counts (`shpeft.steps.figures` reads the
files and calls these). Each is written as PNG and PDF:

- `accuracy_by_method`: test accuracy per method and dataset, bar = mean over seeds, whisker =
  the mean of the runs' bootstrap intervals (at `stats.level`), dots = seeds;
- `pareto`: mean accuracy against trainable fraction (log scale), with the Pareto front;
- `training_curves`: validation accuracy per epoch;
- `trainable_locations`: where each method's trainable weights sit (blocks x qkv/proj/fc1/fc2,
  and the rest);
- `hybridity`: overlap of the task-specific and task-agnostic top sets against chance;
- `confusion_<dataset>`: confusion matrices summed over seeds, one panel per method;
- `failures_<dataset>`: the most confidently wrong test images of one method.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from shpeft.methods.locations import KINDS, OUTSIDE  # noqa: E402

log = logging.getLogger(__name__)

#: Where linear probing (no backbone weight) sits on the log-scale fraction axis.
HEAD_ONLY = 1e-7


def save_figure(figure: plt.Figure, out: Path, name: str) -> None:
    for suffix in (".png", ".pdf"):
        figure.savefig(out / f"{name}{suffix}", dpi=120, bbox_inches="tight")
    plt.close(figure)


def _panels(count: int, width: float, height: float) -> tuple[plt.Figure, list[plt.Axes]]:
    """`count` panels, five to a row; the grid's unused places are left blank."""
    columns = min(5, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False
    )
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    return figure, list(axes.flat)[:count]


def accuracy_bars(details: pd.DataFrame, out: Path) -> None:
    """Test accuracy per method, one panel per dataset, with bootstrap intervals."""
    datasets = list(dict.fromkeys(details["dataset"]))
    figure, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        frame = details[details["dataset"] == dataset]
        means = frame.groupby("method", sort=False)[["accuracy", "accuracy_low", "accuracy_high"]]
        stats = means.mean()
        x = np.arange(len(stats))
        errors = [
            stats["accuracy"] - stats["accuracy_low"],
            stats["accuracy_high"] - stats["accuracy"],
        ]
        colors = sns.color_palette("deep", len(stats))
        ax.bar(x, stats["accuracy"], color=colors, alpha=0.8)
        if stats["accuracy_low"].notna().all():
            ax.errorbar(x, stats["accuracy"], yerr=np.nan_to_num(errors), fmt="none", color="black")
        positions = {m: i for i, m in enumerate(stats.index)}
        ax.scatter(frame["method"].map(positions), frame["accuracy"], color="black", s=8, zorder=3)
        ax.set(title=dataset, ylim=(0, 1), xticks=x, ylabel="test accuracy")
        ax.set_xticklabels(stats.index, rotation=60, ha="right", fontsize=8)
    save_figure(figure, out, "accuracy_by_method")


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The methods no other beats on both accuracy (higher) and trainable fraction (lower)."""
    ordered = points.sort_values(["trainable_fraction", "accuracy"], ascending=[True, False])
    front, best = [], -np.inf
    for _, row in ordered.iterrows():
        if row["accuracy"] > best:
            front.append(row)
            best = row["accuracy"]
    return pd.DataFrame(front)


def pareto(runs: pd.DataFrame, out: Path) -> None:
    """Mean test accuracy over datasets and seeds against the trainable fraction (log scale)."""
    points = runs.groupby("method", sort=False)[["accuracy", "trainable_fraction"]].mean()
    points = points.reset_index()
    points["trainable_fraction"] = points["trainable_fraction"].clip(lower=HEAD_ONLY)
    front = pareto_front(points)
    figure, ax = plt.subplots(figsize=(6.5, 4.2))
    sns.scatterplot(points, x="trainable_fraction", y="accuracy", hue="method", ax=ax, s=60)
    ax.plot(front["trainable_fraction"], front["accuracy"], "k--", lw=1, label="Pareto front")
    ax.set(xscale="log", xlabel="trainable fraction of the backbone (head only at 1e-7)")
    ax.set_ylabel("test accuracy, mean over datasets and seeds")
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    save_figure(figure, out, "pareto")


def training_curves(curves: pd.DataFrame, out: Path) -> None:
    """Validation accuracy per epoch, mean over seeds with a sd band, one panel per dataset."""
    grid = sns.relplot(
        curves,
        x="epoch",
        y="val_accuracy",
        hue="method",
        col="dataset",
        kind="line",
        errorbar="sd",
        height=3.2,
        aspect=1.1,
        marker="o",
    )
    grid.set_axis_labels("epoch", "validation accuracy")
    save_figure(grid.figure, out, "training_curves")


def trainable_locations(found: dict[str, Counter], out: Path) -> None:
    """Per method, the share of its trainable backbone parameters in each block x layer."""
    shown = {name: counts for name, counts in found.items() if sum(counts.values())}
    if not shown:
        log.info("trainable_locations: no method of the grid trains backbone weights")
        return
    figure, axes = _panels(len(shown), 2.9, 2.9)
    for ax, (name, counts) in zip(axes, shown.items(), strict=False):
        blocks = max((b for b, _ in counts), default=OUTSIDE) + 1
        order = [*range(blocks), OUTSIDE]
        matrix = np.array([[counts.get((b, k), 0) for k in KINDS] for b in order], float)
        sns.heatmap(
            matrix / matrix.sum(),
            ax=ax,
            cmap="viridis",
            vmin=0,
            cbar=False,
            annot=True,
            fmt=".2f",
            xticklabels=[k.split(".")[-1] for k in KINDS],
            yticklabels=[*map(str, range(blocks)), "rest"],
            annot_kws={"fontsize": 6},
        )
        ax.set_title(name, fontsize=8)
        ax.set(xlabel="", ylabel="block")
        ax.tick_params(labelsize=6)
    figure.suptitle("Share of each method's trainable backbone parameters", fontsize=9)
    figure.tight_layout()
    save_figure(figure, out, "trainable_locations")


def hybridity(stats: dict[str, dict[str, Any]], out: Path) -> None:
    """Jaccard overlap of the task-specific and task-agnostic top-k sets, against chance."""
    rows = []
    for (_, dataset), entry in stats.items():
        cfg, overlap = entry["config"], entry["overlap_at_budget"]
        pair = f"{cfg['task_specific']} / {cfg['task_agnostic']} (k={entry['k']})"
        rows.append(
            {
                "dataset": dataset,
                "criteria": pair,
                "jaccard": overlap["jaccard"],
                "chance": overlap["jaccard_chance"],
            }
        )
    frame = pd.DataFrame(rows).drop_duplicates(["dataset", "criteria"])
    long = frame.melt(["dataset", "criteria"], var_name="overlap", value_name="Jaccard")
    grid = sns.catplot(
        long,
        x="dataset",
        y="Jaccard",
        hue="overlap",
        col="criteria",
        kind="bar",
        height=3,
        aspect=1.2,
        col_wrap=3,
    )
    save_figure(grid.figure, out, "hybridity")


def confusions(details: pd.DataFrame, class_names: dict[str, list[str]], out: Path) -> None:
    """Per dataset, one confusion matrix per method (rows: true class), summed over seeds."""
    for dataset, frame in details.groupby("dataset", sort=False):
        methods = list(dict.fromkeys(frame["method"]))
        figure, axes = _panels(len(methods), 2.6, 2.4)
        for ax, method in zip(axes, methods, strict=False):
            matrices = [
                np.array(json.loads(c)) for c in frame[frame["method"] == method]["confusion"]
            ]
            names = class_names[dataset]
            sns.heatmap(
                sum(matrices),
                ax=ax,
                annot=True,
                fmt="d",
                cbar=False,
                cmap="Blues",
                xticklabels=names,
                yticklabels=names,
                annot_kws={"fontsize": 7},
            )
            ax.set_title(method, fontsize=8)
            ax.tick_params(labelsize=6)
        figure.tight_layout()
        save_figure(figure, out, f"confusion_{dataset}")


def failure_cases(
    dataset: str,
    method: str,
    seed: int,
    images: np.ndarray,
    predictions: pd.DataFrame,
    class_names: list[str],
    count: int,
    out: Path,
) -> None:
    """The test images the method got wrong with the highest confidence."""
    probs = predictions[[f"prob_{c}" for c in class_names]].to_numpy()
    wrong = predictions[predictions["label"] != predictions["predicted"]].copy()
    wrong["confidence"] = probs[wrong.index].max(1)
    worst = wrong.sort_values("confidence", ascending=False).head(count)
    figure, axes = plt.subplots(
        1, max(1, len(worst)), figsize=(1.8 * max(1, len(worst)), 2.3), squeeze=False
    )
    for ax, (_, row) in zip(axes[0], worst.iterrows(), strict=False):
        ax.imshow(images[int(row["index"])])
        ax.set_title(
            f"true {class_names[int(row['label'])]}\n"
            f"pred {class_names[int(row['predicted'])]} {row['confidence']:.2f}",
            fontsize=7,
        )
    for ax in axes[0]:
        ax.axis("off")
    figure.suptitle(f"{dataset}: most confidently wrong, {method} seed {seed}", fontsize=8)
    save_figure(figure, out, f"failures_{dataset}")


def sweep_figure(
    table: pd.DataFrame, sweep: str, label: str, log_x: bool, out: Path, name: str
) -> None:
    """A sweep's test accuracy against the swept value, one line per dataset, with intervals;
    a ring marks the value validation chooses."""
    figure, ax = plt.subplots(figsize=(6, 3.8))
    for (dataset, frame), color in zip(
        table.groupby("dataset", sort=False), sns.color_palette("deep"), strict=False
    ):
        errors = [
            frame["accuracy"] - frame["accuracy_low"],
            frame["accuracy_high"] - frame["accuracy"],
        ]
        ax.errorbar(
            frame["value"],
            frame["accuracy"],
            yerr=np.nan_to_num(errors),
            marker="o",
            capsize=3,
            color=color,
            label=dataset,
        )
        chosen = frame[frame["chosen"]]
        ax.scatter(chosen["value"], chosen["accuracy"], s=160, facecolors="none", color=color)
    ax.scatter([], [], s=160, facecolors="none", color="grey", label="chosen on validation")
    ax.set(xlabel=label, ylabel="test accuracy, mean over seeds")
    if log_x:
        ax.set_xscale("log")
    ax.set_title(f"{table['method'].iloc[0]}: sweep of {sweep}", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(figure, out, name)


def critical_difference(
    ranks: pd.DataFrame, nemenyi: pd.DataFrame, alpha: float, title: str, out: Path
) -> None:
    """Average ranks over datasets on one axis; a bar joins methods that the Nemenyi post-hoc
    test does not tell apart at `alpha` (Demsar 2006). Without a Friedman test, says why."""
    figure, ax = plt.subplots(figsize=(7, 2.6))
    if nemenyi.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, title, ha="center", va="center", fontsize=9, wrap=True)
    else:
        import scikit_posthocs

        average = ranks.set_index("method")["mean_rank"]
        scikit_posthocs.critical_difference_diagram(average, nemenyi, alpha=alpha, ax=ax)
        ax.set_title(title, fontsize=8)
    save_figure(figure, out, "critical_difference")
