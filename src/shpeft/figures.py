"""The `figures` step: seaborn figures from the tables, the mask statistics and the test data.

Each figure is written as PNG and PDF under `results/figures/`:

- `accuracy_by_method`: test accuracy per method and dataset, bar = mean over seeds, whisker =
  the mean of the runs' 95% bootstrap intervals, dots = seeds;
- `pareto`: mean accuracy against trainable fraction (log scale), with the Pareto front;
- `training_curves`: validation accuracy per epoch;
- `mask_locations`: where each mask variant's entries sit (blocks x qkv/proj/fc1/fc2);
- `hybridity`: overlap of the task-specific and task-agnostic top sets against chance;
- `confusion_<dataset>`: confusion matrices summed over seeds, one panel per method;
- `failures_<dataset>`: the most confidently wrong test images of one method.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from shpeft import paths  # noqa: E402
from shpeft.data.prepared import PreparedDataset  # noqa: E402
from shpeft.fileio import atomic_path, read_json  # noqa: E402
from shpeft.params import run_methods  # noqa: E402

log = logging.getLogger(__name__)

KINDS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
#: Where linear probing (no backbone weight) sits on the log-scale fraction axis.
HEAD_ONLY = 1e-7


def _save(figure: plt.Figure, out: Path, name: str) -> None:
    for suffix in (".png", ".pdf"):
        figure.savefig(out / f"{name}{suffix}", dpi=120, bbox_inches="tight")
    plt.close(figure)


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
    _save(figure, out, "accuracy_by_method")


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
    _save(figure, out, "pareto")


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
    _save(grid.figure, out, "training_curves")


def mask_locations(stats: dict[str, dict[str, Any]], out: Path) -> None:
    """Per mask variant, the share of its entries in each block x layer kind (over datasets)."""
    variants = sorted({variant for variant, _ in stats})
    figure, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants), 3), squeeze=False)
    for ax, variant in zip(axes[0], variants, strict=True):
        counts: dict[tuple[int, str], int] = {}
        for (name, _), entry in stats.items():
            if name != variant:
                continue
            for tensor, count in entry["per_tensor"].items():
                found = re.match(r"blocks\.(\d+)\.(.+)\.weight$", tensor)
                if found:
                    key = (int(found[1]), found[2])
                    counts[key] = counts.get(key, 0) + count
        blocks = max((b for b, _ in counts), default=-1) + 1
        matrix = np.array([[counts.get((b, k), 0) for k in KINDS] for b in range(blocks)], float)
        matrix /= max(matrix.sum(), 1)
        sns.heatmap(
            matrix,
            ax=ax,
            cmap="viridis",
            cbar=False,
            annot=True,
            fmt=".2f",
            xticklabels=[k.split(".")[1] for k in KINDS],
            yticklabels=range(blocks),
            annot_kws={"fontsize": 7},
        )
        ax.set(title=variant, xlabel="", ylabel="block")
    _save(figure, out, "mask_locations")


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
    _save(grid.figure, out, "hybridity")


def confusions(details: pd.DataFrame, class_names: dict[str, list[str]], out: Path) -> None:
    """Per dataset, one confusion matrix per method (rows: true class), summed over seeds."""
    for dataset, frame in details.groupby("dataset", sort=False):
        methods = list(dict.fromkeys(frame["method"]))
        columns = min(5, len(methods))
        rows = -(-len(methods) // columns)
        figure, axes = plt.subplots(
            rows, columns, figsize=(2.6 * columns, 2.4 * rows), squeeze=False
        )
        for ax, method in zip(axes.flat, methods, strict=False):
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
        for ax in list(axes.flat)[len(methods) :]:
            ax.axis("off")
        _save(figure, out, f"confusion_{dataset}")


def failure_cases(dataset: str, method: str, seed: int, count: int, out: Path) -> None:
    """The test images the method got wrong with the highest confidence."""
    data = PreparedDataset.load(paths.data_dir(dataset))
    images, _ = data.part("test")
    predictions = pd.read_csv(paths.run_dir(dataset, method, seed) / "predictions.csv")
    probs = predictions[[f"prob_{c}" for c in data.class_names]].to_numpy()
    wrong = predictions[predictions["label"] != predictions["predicted"]].copy()
    wrong["confidence"] = probs[wrong.index].max(1)
    worst = wrong.sort_values("confidence", ascending=False).head(count)
    figure, axes = plt.subplots(
        1, max(1, len(worst)), figsize=(1.8 * max(1, len(worst)), 2.3), squeeze=False
    )
    for ax, (_, row) in zip(axes[0], worst.iterrows(), strict=False):
        ax.imshow(images[int(row["index"])])
        ax.set_title(
            f"true {data.class_names[int(row['label'])]}\n"
            f"pred {data.class_names[int(row['predicted'])]} {row['confidence']:.2f}",
            fontsize=7,
        )
    for ax in axes[0]:
        ax.axis("off")
    figure.suptitle(f"{dataset}: most confidently wrong, {method} seed {seed}", fontsize=8)
    _save(figure, out, f"failures_{dataset}")


def _mask_stats(params: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (variant, dataset): read_json(paths.mask_stats(dataset, variant))
        for dataset in params["grid"]["datasets"]
        for variant in params.get("masks", {})
        if paths.mask_stats(dataset, variant).is_file()
    }


def figures(params: dict[str, Any]) -> None:
    summary = pd.read_csv(paths.summary_csv())
    runs = summary[~summary["seed"].isin(["mean", "std"])]
    details = pd.read_csv(paths.detail_table(".csv"))
    curves = pd.read_csv(paths.curves_csv())
    masks = _mask_stats(params)
    methods = run_methods(params)
    # Failure cases of SH-PEFT where it ran, else of the grid's first method; the first seed.
    failing = "sh-peft" if "sh-peft" in methods else methods[0]
    names = {
        d: PreparedDataset.load(paths.data_dir(d)).class_names for d in params["grid"]["datasets"]
    }
    with atomic_path(paths.figures_dir()) as out:
        out.mkdir()
        accuracy_bars(details, out)
        pareto(runs, out)
        training_curves(curves, out)
        if masks:
            mask_locations(masks, out)
            hybridity(masks, out)
        confusions(details, names, out)
        for dataset in params["grid"]["datasets"]:
            failure_cases(dataset, failing, params["seeds"][0], 8, out)
    log.info("figures written to %s", paths.figures_dir())
