"""The `study` step: sparsity and hybridity of one full fine-tuning run's change, on one dataset
and seed, with every sparse run's selection against its key weights (`shpeft.study`).

Sparsity: for each share of `study.shares`, the share of the total change held by the entries
changed most, and the validation and test scores of the model that keeps only their change (the
fine-tuned head kept). Hybridity: where the key weights lie against the task-specific and
task-agnostic top sets of the importance scores, overall and per layer type and depth. Nothing
here chooses anything: the test scores are measurements, read by the report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shpeft.analysis.tables import to_latex, to_markdown
from shpeft.dag import Job
from shpeft.data.prepared import PreparedDataset
from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, write_json
from shpeft.methods.registry import MethodConfig, RunContext, create_method
from shpeft.selection.importance import read_scores, read_summary, specific_key
from shpeft.selection.masks import MaskConfig, budget_entries, candidate_sizes, restrict
from shpeft.steps.oracle import oracle_candidates
from shpeft.study import hybridity, plots
from shpeft.study.change import (
    FineTuning,
    concentration,
    kept_count,
    load_fine_tuning,
    ranking,
    top_positions,
)
from shpeft.study.config import STUDY_SUMMARY, StudyConfig
from shpeft.tracking import tracked_run
from shpeft.train.config import FinetuneConfig
from shpeft.train.devices import Compute
from shpeft.train.loop import evaluate
from shpeft.train.preprocess import Preprocess

log = logging.getLogger(__name__)

SCORES = ("accuracy", "macro_f1")


def run(
    job: Job,
    inputs: dict[str, Any],
    study: StudyConfig,
    mask: MaskConfig,
    methods: dict[str, MethodConfig],
    device: str,
    deterministic: bool,
) -> dict[str, Any]:
    dataset, seed = job["dataset"], int(job["seed"])
    tuned = load_fine_tuning(inputs["run"], inputs["backbone"])
    config = tuned.run.config()
    where = Compute(device, deterministic).start(seed)
    tuned.model.to(where)
    data = PreparedDataset.load(inputs["data"])
    cfg = FinetuneConfig.model_validate(config["finetune"], strict=False)
    title = (
        f"{dataset}, seed {seed}, {tuned.backbone.config.model} "
        f"({tuned.backbone.num_params:,} weights), budget {mask_budget(mask, study)}"
    )

    prep = Preprocess(tuned.model, cfg.augment).to(where)

    def measure() -> dict[str, dict[str, float]]:
        return {
            split: evaluate(
                tuned.model, prep, data.part(split), 2 * cfg.batch_size, where, cfg.uses_bf16(where)
            )[0]
            for split in ("val", "test")
        }

    curve, dense, references = sparsity(tuned, study, measure)
    sizes = oracle_candidates(tuned.tensors(["*"], "backbone"), study, mask)
    key_k = (
        kept_count(study.key_share, tuned.backbone.num_params)
        if study.key_share
        else budget_entries(mask, tuned.backbone.num_params, sum(sizes.values()))
    )
    key = top_positions(tuned.change(list(sizes)), key_k)
    specific, agnostic = top_sets(inputs["importance"], mask, sizes, key_k, study)
    total = sum(sizes.values())
    selections = {
        name: create_method(methods[name]).selection(
            RunContext(dataset, seed, tuned.backbone, {"mask": Path(file)})
        )
        for name, file in zip(methods, inputs["masks"], strict=True)
    }
    tables = {
        "sparsity": curve,
        "regions": hybridity.region_table(key, specific, agnostic, total),
        "overlaps": hybridity.overlap_table(
            {"key weights": key, "task-specific": specific, "task-agnostic": agnostic}, total
        ),
        "layers": hybridity.layer_table(key, specific, agnostic, sizes),
        "masks": hybridity.mask_table(selections, key, specific, agnostic, sizes),
    }
    summary = headline(tables, references, key_k, total, study, mask, title)
    with (
        tracked_run(
            f"{dataset}-study-s{seed}",
            {"dataset": dataset, "seed": seed, "step": "study"},
            {"study": study.model_dump(), "mask": mask.model_dump()},
        ) as tracker,
        atomic_path(job.outputs["study"]) as tmp,
    ):
        tmp.mkdir()
        for name, frame in tables.items():
            write_table(frame, tmp, name, f"{CAPTIONS[name]} {title}.")
        plots.sparsity(curve, dense, references, title, tmp)
        plots.hybridity(tables["layers"], tables["regions"], title, tmp)
        write_json(tmp / STUDY_SUMMARY, summary)
        tracker.log_metrics({k: v for k, v in summary["metrics"].items() if np.isfinite(v)})
        for file in sorted(tmp.iterdir()):
            tracker.log_artifact(file)
    log.info(
        "%s seed %d: the top 1%% of entries hold %.3f of the change",
        dataset,
        seed,
        summary["metrics"].get("change_held_at_0.01", float("nan")),
    )
    return summary


CAPTIONS = {
    "sparsity": "Share of the fine-tuning change held by the top entries by change, and the "
    "scores when only their change is kept (share 0: the pretrained backbone; the fine-tuned "
    "head at every share).",
    "regions": "Key weights (top by change) per region of the task-specific and "
    "task-agnostic top sets (as many entries each), against chance.",
    "overlaps": "Jaccard overlaps of the key weights and the two top sets, against chance.",
    "layers": "Key weights per layer type and depth: density against the overall one, and "
    "shares in the top sets against the group's chance.",
    "masks": "Each sparse run's selection against the key weights.",
}


def mask_budget(mask: MaskConfig, study: StudyConfig) -> str:
    if study.key_share:
        return f"key weights {study.key_share:g}"
    return f"{mask.budget_count} entries" if mask.budget_count else f"{mask.budget:g}"


def sparsity(
    tuned: FineTuning, study: StudyConfig, measure: Callable[[], dict[str, dict[str, float]]]
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The sparsity table (share 0 and each of `study.shares`), the concentration curve on a
    dense grid (for the figure), and the reference scores."""
    scope = list(tuned.tensors(study.scope, "study.scope"))
    outside = {n: t for n, t in tuned.pretrained.items() if n not in scope}
    change = tuned.change(scope)
    order = ranking(change)
    total = len(change)
    shares = [0.0, *sorted(study.shares)]
    counts = [kept_count(share, total) for share in shares]
    held = concentration(change, order, counts)
    rows = []
    for share, count, part in zip(shares, counts, held, strict=True):
        tuned.set_backbone({**outside, **tuned.kept(scope, order, count)})
        scores = measure()
        rows.append(
            {
                "share": share,
                "entries kept": count,
                "change held": float(part),
                **{f"{split} {m}": scores[split][m] for split in scores for m in SCORES},
            }
        )
        if share == 0:
            pretrained = scores
    points = np.unique(np.round(np.logspace(0, np.log10(total), 200)).astype(int))
    dense = pd.DataFrame(
        {"share": points / total, "change held": concentration(change, order, points)}
    )
    recorded = tuned.run.metrics()
    references = {
        "pretrained": pretrained,
        "full fine-tuning": {"val": recorded["val"], "test": recorded["test"]},
    }
    return pd.DataFrame(rows), dense, references


def top_sets(
    importance_dir: Path, mask: MaskConfig, sizes: dict[str, int], k: int, study: StudyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The top `k` candidate entries by `study.mask`'s task-specific and task-agnostic criteria,
    as sorted flat indices into the candidates (the tensors of `sizes`)."""
    summary = read_summary(importance_dir)
    with read_scores(importance_dir, summary["backbone_sha256"]) as scores:
        scored: dict[str, int] = json.loads(scores.metadata["eligible"])
        if candidate_sizes(mask, scored, f"masks.{study.mask}") != sizes:
            raise ShpeftError(
                f"masks.{study.mask}: the study ranks its candidates by change and by "
                f"importance, so every candidate must be scored (score.eligible)"
            )
        found = []
        for criterion in (specific_key(mask.task_specific, mask.loss), mask.task_agnostic):
            order = restrict(scores.get(f"{criterion}.indices"), scored, sizes)
            order = order[order >= 0]
            if len(order) < k:
                raise ShpeftError(
                    f"{scores.path}: {len(order)} entries of '{criterion}' kept among the "
                    f"candidates, the study needs {k} (raise score.top_m)"
                )
            found.append(np.sort(order[:k]))
    return found[0], found[1]


def headline(
    tables: dict[str, pd.DataFrame],
    references: dict,
    key_k: int,
    total: int,
    study: StudyConfig,
    mask: MaskConfig,
    title: str,
) -> dict[str, Any]:
    """What the study found in a few numbers (also its MLflow metrics)."""
    metrics: dict[str, float] = {}
    for row in tables["sparsity"].to_dict("records"):
        share = f"{row['share']:g}"
        metrics[f"change_held_at_{share}"] = row["change held"]
        for split in ("val", "test"):
            for m in SCORES:
                metrics[f"{split}_{m}_at_{share}"] = row[f"{split} {m}"]
    for row in tables["regions"].itertuples(index=False):
        name = row.region.replace(" ", "_").replace("-", "_")
        metrics[f"key_in_{name}"], metrics[f"key_in_{name}_chance"] = row.share, row.chance
    return {
        "title": title,
        "key_weights": key_k,
        "candidates": total,
        "study": study.model_dump(),
        "mask": mask.model_dump(),
        "references": references,
        "metrics": metrics,
    }


def write_table(frame: pd.DataFrame, folder: Path, name: str, caption: str) -> None:
    frame.to_csv(folder / f"{name}.csv", index=False)
    shown = frame.map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    (folder / f"{name}.md").write_text(to_markdown(shown, {}, caption))
    (folder / f"{name}.tex").write_text(to_latex(shown, {}, caption))
