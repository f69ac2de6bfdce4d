"""The `finetune` step: one dataset x method x seed, from prepared data and backbone to results.

Writes to `results/runs/<dataset>/<method>/seed<seed>/`: `metrics.json` (test, scored once with
the checkpoint selected on validation), `history.csv` (per epoch), `predictions.csv` (test),
`config.json` (resolved), the method's trained part (`trained.safetensors`, or `delta.safetensors`
for sparse methods) and `mlflow.json` (the MLflow run, and what could not be logged to it).

A killed job resumes at its last finished epoch: `fit` saves its state every epoch to
`paths.checkpoint_file(out_dir)`, outside the outputs, bound to this job's resolved config and
inputs; the resumed job continues the same MLflow run and ends with the same outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shpeft import __version__, paths
from shpeft.backbone import load_backbone
from shpeft.data.prepared import PreparedDataset
from shpeft.fileio import atomic_path, sha256_file, write_json
from shpeft.methods.registry import RunContext, create_method
from shpeft.params import build, deep_merge
from shpeft.tracking import TrackingConfig, tracked_run
from shpeft.training import (
    Checkpoint,
    FinetuneConfig,
    Preprocess,
    evaluate,
    fit,
    resolve_device,
    seed_everything,
)

log = logging.getLogger(__name__)


def run_name(dataset: str, method: str, seed: int, label: str | None = None) -> str:
    """The MLflow run name; `label` tells a sweep point's run apart (`budget=0.001`)."""
    return f"{dataset}-{method}{f'[{label}]' if label else ''}-s{seed}"


def predictions_frame(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"index": np.arange(len(labels)), "label": labels, "predicted": probs.argmax(1)}
    )
    for c, name in enumerate(class_names):
        frame[f"prob_{name}"] = probs[:, c]
    return frame


def finetune(
    dataset: str,
    method_name: str,
    seed: int,
    params: dict[str, Any],
    data_dir: str | Path,
    backbone_dir: str | Path,
    out_dir: str | Path,
    inputs: dict[str, Path] | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    """Train one run and write its outputs atomically; return the test metrics."""
    method_params = params["methods"][method_name]
    cfg = build(FinetuneConfig, deep_merge(params["finetune"], method_params.get("finetune", {})))
    method = create_method(method_params)
    seed_everything(seed, cfg.deterministic)
    device = resolve_device(cfg.device)
    data = PreparedDataset.load(data_dir)
    model, backbone_meta = load_backbone(backbone_dir, data.num_classes)
    ctx = RunContext(dataset, seed, backbone_meta, dict(inputs or {}))
    model = method.apply(model, ctx)
    counts = method.count(model)
    backbone_params = backbone_meta["num_params"]
    counts["trainable_fraction"] = counts["trainable_backbone"] / backbone_params
    resolved = {
        "dataset": dataset,
        "method": method_name,
        "seed": seed,
        "method_config": asdict(method.cfg),
        "finetune": asdict(cfg),
        "backbone": {k: backbone_meta[k] for k in ("config", "sha256", "origin", "num_params")},
        "data": {
            k: data.manifest[k] for k in ("class_names", "sizes", "split_origin", "arrays_sha256")
        },
        "device": str(device),
        "versions": _versions(),
        "selection": f"best validation {cfg.select}; test scored once with that checkpoint",
    }
    tracking = build(TrackingConfig, params.get("tracking", {}))
    tags = {"dataset": dataset, "method": method_name, "seed": seed, "sweep": label}
    checkpoint = Checkpoint.load(
        paths.checkpoint_file(out_dir), fingerprint(resolved, dict(inputs or {}))
    )
    name = run_name(dataset, method_name, seed, label)
    with tracked_run(
        name, tags, resolved, tracking, checkpoint.meta.get("mlflow_run_id")
    ) as tracker:

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
            model,
            data.part("train"),
            data.part("val"),
            cfg,
            seed,
            device,
            on_epoch=log_epoch,
            checkpoint=checkpoint,
        )
        test_images, test_labels = data.part("test")
        prep = Preprocess(model, cfg.augment).to(device)
        test_metrics, probs = evaluate(
            model, prep, test_images, test_labels, 2 * cfg.batch_size, device
        )
        metrics = {
            "test": test_metrics,
            "best_epoch": result.best_epoch,
            "val": {
                k.removeprefix("val_"): v
                for k, v in result.history[result.best_epoch - 1].items()
                if k.startswith("val_")
            },
            **counts,
            "backbone_params": backbone_params,
        }
        resolved["train_seconds"] = time.perf_counter() - started
        tracker.log_metrics(
            {f"test_{k}": v for k, v in test_metrics.items() if np.isfinite(v)}
            | {k: float(v) for k, v in counts.items()}
        )
        out_dir = Path(out_dir)
        with atomic_path(out_dir) as tmp:
            tmp.mkdir()
            write_json(tmp / "metrics.json", metrics)
            write_json(tmp / "config.json", resolved)
            pd.DataFrame(result.history).to_csv(tmp / "history.csv", index=False)
            predictions_frame(probs, test_labels, data.class_names).to_csv(
                tmp / "predictions.csv", index=False
            )
            method.save(model, tmp / method.trained_file, backbone_meta["sha256"])
            tracker.log_artifact(tmp / "metrics.json")
            tracker.log_artifact(tmp / "history.csv")
            write_json(tmp / "mlflow.json", tracker.record())
        checkpoint.delete()
    log.info("%s: test accuracy %.4f", name, test_metrics["accuracy"])
    return metrics


def fingerprint(resolved: dict[str, Any], inputs: dict[str, Path]) -> str:
    """What a saved training state must match to be resumed: the resolved config (data and
    backbone hashes, method, training, device, versions) and the method's input files."""
    bound = {"config": resolved, "inputs": {k: sha256_file(p) for k, p in inputs.items()}}
    return hashlib.sha256(json.dumps(bound, sort_keys=True, default=str).encode()).hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import torch

    packages = ("timm", "numpy", "mlflow", "safetensors")
    return {
        "python": platform.python_version(),
        "shpeft": __version__,
        "torch": torch.__version__,
        **{name: version(name) for name in packages},
    }
