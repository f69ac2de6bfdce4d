"""The `finetune` step: one dataset x method x seed, from prepared data and backbone to a run folder
(`shpeft.runs`): resolve the run, train it, write it.

A killed job resumes at its last finished epoch: `fit` saves its state every epoch to
`paths.checkpoint_file(out_dir)`, outside the outputs, bound to this job's resolved config and
inputs; the resumed job continues the same MLflow run and ends with the same outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shpeft import paths
from shpeft.backbone.model import BackboneInfo, load_backbone
from shpeft.config import merged
from shpeft.dag import Job
from shpeft.data.prepared import PreparedDataset
from shpeft.fileio import read_json, sha256_file
from shpeft.methods.locations import locations
from shpeft.methods.registry import (
    FinetuneOverride,
    Method,
    MethodConfig,
    RunContext,
    create_method,
    training_config,
)
from shpeft.provenance import machine, versions
from shpeft.runs import RunFolder, RunRecord, predictions_frame
from shpeft.selection.masks import load_mask
from shpeft.tracking import Tracker, tracked_run
from shpeft.train.config import FinetuneConfig
from shpeft.train.devices import Compute
from shpeft.train.loop import FitResult, evaluate, fit
from shpeft.train.preprocess import Preprocess
from shpeft.train.state import Checkpoint
from shpeft.train.tuning import read_tuning

log = logging.getLogger(__name__)


def run(
    job: Job, inputs: dict[str, Path], method_config: MethodConfig, finetune: FinetuneConfig
) -> dict[str, Any]:
    return train_run(job, inputs, job["method"], method_config, finetune)


@dataclass
class Setup:
    """A run resolved: its model with the method applied, its data, and everything it records."""

    name: str
    tags: dict[str, Any]
    cfg: FinetuneConfig
    method: Method
    model: nn.Module
    data: PreparedDataset
    backbone: BackboneInfo
    counts: dict[str, Any]
    resolved: dict[str, Any]
    device: torch.device


def run_name(dataset: str, method: str, seed: int, label: str | None = None) -> str:
    """The MLflow run name; `label` tells a sweep point's run apart (`budget=0.001`)."""
    return f"{dataset}-{method}{f'[{label}]' if label else ''}-s{seed}"


def train_run(
    job: Job,
    inputs: dict[str, Path],
    method_name: str,
    method_config: MethodConfig,
    finetune: FinetuneConfig,
    point: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one run and write its folder atomically; return its metrics. A sweep point's run
    records its `point` (`{"sweep": ..., "value": ...}`) in its config."""
    setup = resolve(job, inputs, method_name, method_config, finetune, point)
    out = job.outputs["run"]
    checkpoint = Checkpoint.load(paths.checkpoint_file(out), fingerprint(setup.resolved, inputs))
    resumed_run = checkpoint.meta.get("mlflow_run_id")
    with tracked_run(setup.name, setup.tags, setup.resolved, resumed_run) as tracker:
        tracker.log_dataset(job["dataset"], setup.resolved["data"], str(inputs["data"]))
        result, seconds = train(setup, int(job["seed"]), checkpoint, tracker)
        setup.resolved["train_seconds"] = seconds
        metrics = write(out, setup, result, tracker)
        checkpoint.delete()
    log.info("%s: test accuracy %.4f", setup.name, metrics["test"]["accuracy"])
    return metrics


def resolve(
    job: Job,
    inputs: dict[str, Path],
    method_name: str,
    method_config: MethodConfig,
    finetune: FinetuneConfig,
    point: dict[str, Any] | None,
) -> Setup:
    """Seed, load the data and backbone, apply the method; the resolved config of the run."""
    dataset, seed = job["dataset"], int(job["seed"])
    cfg = training_config(finetune, method_config)
    recipe: dict[str, Any] = {"tuned": None}
    if "recipe" in inputs:
        tuned = read_tuning(inputs["recipe"], dataset, method_name)
        cfg = merged(cfg, FinetuneOverride(**tuned["chosen"]["recipe"]))
        recipe = {"tuned": str(inputs["recipe"]), **{k: tuned[k] for k in ("grid", "chosen")}}
    data = PreparedDataset.load(inputs["data"])
    method, model, backbone, device = method_model(method_config, cfg, inputs, data, dataset, seed)
    recipe["source"] = method.recipe.source or "the shared finetune section"
    counts: dict[str, Any] = method.count(model)
    counts["trainable_fraction"] = counts["trainable_backbone"] / backbone.num_params
    resolved = {
        "dataset": dataset,
        "method": method_name,
        "seed": seed,
        "method_config": method.cfg.model_dump(),
        "finetune": cfg.model_dump(),
        "recipe": recipe,
        "backbone": {k: backbone.raw[k] for k in ("config", "sha256", "origin", "num_params")},
        "data": {
            k: data.manifest[k] for k in ("class_names", "sizes", "split_origin", "arrays_sha256")
        },
        "device": str(device),
        "bf16": cfg.uses_bf16(device),
        "versions": versions(),
        "selection": f"best validation {cfg.select}; test scored once with that checkpoint",
        **({"sweep_point": point} if point else {}),
        **({"mask": mask_record(inputs["mask"], backbone.sha256)} if "mask" in inputs else {}),
        "machine": machine(),
    }
    label = f"{point['sweep']}={point['value']}" if point else None
    tags = {
        "step": job.step.name,
        "dataset": dataset,
        "method": method_name,
        "seed": seed,
        "sweep": label,
        "backbone_sha256": backbone.sha256,
    }
    name = run_name(dataset, method_name, seed, label)
    return Setup(name, tags, cfg, method, model, data, backbone, counts, resolved, device)


def method_model(
    method_config: MethodConfig,
    cfg: FinetuneConfig,
    inputs: dict[str, Path],
    data: PreparedDataset,
    dataset: str,
    seed: int,
) -> tuple[Method, nn.Module, BackboneInfo, torch.device]:
    """Seed (before any initialisation), load the backbone with a fresh head for `data`, apply
    the method: what a run and each candidate of a tune job start from."""
    device = Compute(cfg.device, cfg.deterministic).start(seed)
    method = create_method(method_config)
    model, backbone = load_backbone(inputs["backbone"], data.num_classes)
    extra = {k: v for k, v in inputs.items() if k not in ("data", "backbone", "recipe")}
    model = method.apply(model, RunContext(dataset, seed, backbone, extra))
    return method, model, backbone, device


def train(
    setup: Setup, seed: int, checkpoint: Checkpoint, tracker: Tracker
) -> tuple[FitResult, float]:
    """Fit on train, select on validation, logging every epoch; the result and its seconds."""

    def log_epoch(row: dict[str, Any]) -> None:
        finite = {k: v for k, v in row.items() if k != "epoch" and np.isfinite(v)}
        tracker.log_metrics(finite, step=row["epoch"])

    if tracker.run_id is not None:
        checkpoint.meta["mlflow_run_id"] = tracker.run_id
    if checkpoint.state is not None and not tracker.continued:
        for row in checkpoint.state["history"]:  # epochs before the crash, for the new run
            log_epoch(row)
    started = time.perf_counter()
    result = fit(
        setup.model,
        setup.data.part("train"),
        setup.data.part("val"),
        setup.cfg,
        seed,
        setup.device,
        on_epoch=log_epoch,
        checkpoint=checkpoint,
    )
    return result, time.perf_counter() - started


def write(out: Path, setup: Setup, result: FitResult, tracker: Tracker) -> dict[str, Any]:
    """Score the test split once with the selected checkpoint; write the run folder."""
    cfg, model = setup.cfg, setup.model
    device = next(model.parameters()).device
    test = setup.data.part("test")
    prep = Preprocess(model, cfg.augment).to(device)
    test_metrics, probs = evaluate(
        model, prep, test, 2 * cfg.batch_size, device, cfg.uses_bf16(device)
    )
    metrics = {
        "test": test_metrics,
        "best_epoch": result.best_epoch,
        "val": result.best_val,
        **setup.counts,
        "backbone_params": setup.backbone.num_params,
    }
    tracker.log_metrics(
        {f"test_{k}": v for k, v in test_metrics.items() if np.isfinite(v)}
        | {k: float(v) for k, v in setup.counts.items()}
    )
    record = RunRecord(
        metrics=metrics,
        config=setup.resolved,
        history=result.history,
        predictions=predictions_frame(probs, test[1], setup.data.class_names),
        locations=locations(model),
    )

    method = setup.method

    def log_outputs(folder: RunFolder) -> dict[str, Any]:
        # The resolved config holds the backbone's hash, the chosen recipe and a sparse run's
        # mask statistics; the trained part is what `shpeft merge` applies to that backbone.
        for name in (RunFolder.METRICS, RunFolder.HISTORY, RunFolder.CONFIG):
            tracker.log_artifact(folder.file(name))
        if setup.counts["trainable_fraction"] < 1:  # not the whole backbone again, for `full`
            tracker.log_artifact(folder.file(method.trained_file), "trained")
        return tracker.record()

    RunFolder.write(
        out,
        record,
        lambda folder: method.save(model, folder / method.trained_file, setup.backbone.sha256),
        log_outputs,
    )
    return metrics


def mask_record(mask_file: Path, backbone_sha256: str) -> dict[str, Any]:
    """What a sparse run records (and logs) of the mask it trained on."""
    mask = load_mask(mask_file, backbone_sha256)
    stats = read_json(paths.stats_of(mask_file))
    built = ("built", "fraction_of_backbone", "per_block", "overlap_at_budget")
    return {
        "file": str(mask_file),
        "k": mask.k,
        "config": mask.config,
        "stats": {key: stats[key] for key in built if key in stats},
    }


def fingerprint(resolved: dict[str, Any], inputs: dict[str, Path]) -> str:
    """What a saved training state must match to be resumed: the resolved config (data and
    backbone hashes, method, training, device, versions) and the method's input files. Not the
    machine: a job requeued onto another node of the same kind resumes."""
    extra = {k: p for k, p in inputs.items() if k not in ("data", "backbone")}
    config = {k: v for k, v in resolved.items() if k != "machine"}
    bound = {"config": config, "inputs": {k: sha256_file(p) for k, p in extra.items()}}
    return hashlib.sha256(json.dumps(bound, sort_keys=True, default=str).encode()).hexdigest()
