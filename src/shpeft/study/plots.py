"""The study's figures, each titled with its dataset, seed, backbone and budget (PNG and PDF):

- `sparsity`: the share of the fine-tuning change held by the top entries, and the validation
  and test scores when only their change is kept, with full fine-tuning and the pretrained
  backbone (both with the fine-tuned head) as reference lines;
- `hybridity`: per layer type and depth, the key weights' density against the overall one and
  their shares in the task-specific and task-agnostic top sets against chance, and the ratio
  to chance per region overall (1 is chance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shpeft.analysis.plots import plt, save_figure, sns


def sparsity(
    curve: pd.DataFrame, dense: pd.DataFrame, references: dict[str, dict], title: str, out: Path
) -> None:
    figure, (held, scores) = plt.subplots(1, 2, figsize=(11, 3.8))
    held.plot(dense["share"], dense["change held"], color="C0", label="full fine-tuning")
    held.plot(dense["share"], dense["share"], ":", color="grey", label="spread evenly")
    held.legend(fontsize=7, loc="upper left")
    held.set(
        xscale="log",
        xlabel="share of entries kept (top by change)",
        ylabel="share of the total change held",
        ylim=(0, 1.02),
    )
    held.grid(alpha=0.3)
    kept = curve[curve["share"] > 0]
    for i, (split, metric) in enumerate(
        [(s, m) for s in ("val", "test") for m in ("accuracy", "macro_f1")]
    ):
        color, style = f"C{i % 2}", "-" if split == "test" else "--"
        scores.plot(
            kept["share"],
            kept[f"{split} {metric}"],
            style,
            color=color,
            marker="o",
            markersize=3,
            label=f"{split} {metric}",
        )
        for name, line in (("full fine-tuning", ":"), ("pretrained", "-.")):
            value = references[name][split][metric]
            scores.axhline(value, color=color, linestyle=line, linewidth=0.8, alpha=0.6)
    scores.set(xscale="log", xlabel="share of entries kept (top by change)", ylabel="score")
    for name, label in (("full fine-tuning", " full"), ("pretrained", " pretrained")):
        level = references[name]["test"]["accuracy"]
        scores.text(1.01, level, label, fontsize=7, transform=scores.get_yaxis_transform())
    scores.legend(fontsize=7, loc="lower right")
    scores.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    save_figure(figure, out, "sparsity")


def hybridity(layers: pd.DataFrame, regions: pd.DataFrame, title: str, out: Path) -> None:
    blocks = layers[layers["depth"] != "-"].assign(depth=lambda f: f["depth"].astype(int))
    panels = [
        ("key density ratio", "key weights' density / overall"),
        ("task-specific", "share in the task-specific set / chance"),
        ("task-agnostic", "share in the task-agnostic set / chance"),
    ]
    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(3.4 * (len(panels) + 1), 3.2))
    for ax, (column, label) in zip(axes, panels, strict=False):
        values = (
            blocks[column]
            if column == "key density ratio"
            else (blocks[column] / blocks[f"{column} chance"].replace(0, np.nan))
        )
        grid = blocks.assign(value=values).pivot_table(
            index="layer", columns="depth", values="value"
        )
        sns.heatmap(
            grid,
            ax=ax,
            annot=True,
            fmt=".1f",
            cmap="viridis",
            cbar=False,
            annot_kws={"fontsize": 7},
        )
        ax.set_title(label, fontsize=8)
    ratios = axes[-1]
    sns.barplot(regions, y="region", x="ratio", ax=ratios, color="C0")
    ratios.axvline(1, color="k", linewidth=0.8, linestyle=":")
    for y, value in enumerate(regions["ratio"]):
        ratios.text(value, y, f" {value:.2f}", va="center", fontsize=7)
    ratios.set(xlabel="share of the key weights / chance (1: chance)", ylabel="")
    ratios.set_xlim(0, max(2.0, 1.25 * float(np.nanmax(regions["ratio"]))))
    ratios.set_title("key weights per region of the two top sets", fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    save_figure(figure, out, "hybridity")
