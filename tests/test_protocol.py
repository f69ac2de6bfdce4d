"""No choice reads the test split: the same grid with its test labels permuted trains the same
weights and makes the same choices (tuned recipes, selected epochs, the best other method); only
the test scores differ."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from conftest import LAYOUT, layered
from shpeft.runs import RunFolder
from shpeft.steps import run_job

METHODS = ("linear", "sh-peft", "full")
OVERLAY = "backbone: {weights: none}\nstats: {bootstrap: 20}\ntune: {enabled: true}\n"


def _grid(root, permute_test: bool) -> dict:
    """Prepare, (permute), score, mask, train and aggregate the tiny grid on `tiny_us` in `root`."""
    root.mkdir()
    os.chdir(root)
    params = layered(root, OVERLAY)
    run_job(params, "prepare", dataset="tiny_us")
    if permute_test:
        data = LAYOUT.data_dir("tiny_us")
        labels, split = np.load(data / "labels.npy"), np.load(data / "split.npy")
        test = np.flatnonzero(split == 2)
        labels[test] = np.random.default_rng(0).permutation(labels[test])
        np.save(data / "labels.npy", labels)
    run_job(params, "backbone")
    run_job(params, "score", dataset="tiny_us", seed=0)
    run_job(params, "mask", dataset="tiny_us", variant="hybrid", seed=0)
    runs = {}
    for method in METHODS:
        run_job(params, "tune", dataset="tiny_us", method=method)
        run_job(params, "finetune", dataset="tiny_us", method=method, seed=0)
        runs[method] = RunFolder(LAYOUT.run_dir("tiny_us", method, 0))
    grid = f"grid: {{datasets: [tiny_us], methods: [{', '.join(METHODS)}]}}\n"
    run_job(layered(root, OVERLAY + grid), "aggregate")
    trained = {m: sorted(p.name for p in r.path.glob("*.safetensors")) for m, r in runs.items()}
    return {
        "trained": {
            m: [(r.path / name).read_bytes() for name in trained[m]] for m, r in runs.items()
        },
        "choices": {m: (r.metrics()["best_epoch"], r.metrics()["val"]) for m, r in runs.items()},
        "importance": (LAYOUT.importance_dir("tiny_us", 0) / "importance.safetensors").read_bytes(),
        "tuning": [LAYOUT.tuning_file("tiny_us", m).read_bytes() for m in METHODS],
        "best_other": pd.read_csv(LAYOUT.table("comparisons.csv"))[
            ["scope", "method", "best_other"]
        ].to_dict("records"),
        "test": {m: r.metrics()["test"] for m, r in runs.items()},
    }


def test_permuted_test_labels_change_no_weight_and_no_choice(in_tmp):
    original = _grid(in_tmp / "original", permute_test=False)
    permuted = _grid(in_tmp / "permuted", permute_test=True)
    assert permuted["trained"] == original["trained"]  # every trained part, byte for byte
    assert permuted["importance"] == original["importance"]
    assert permuted["tuning"] == original["tuning"]  # every candidate's scores and the choice
    assert permuted["choices"] == original["choices"]  # selected epochs, validation scores
    assert permuted["best_other"] == original["best_other"]
    assert permuted["test"] != original["test"]  # the test labels did change the test scores


def test_a_bound_file_written_again_has_the_same_bytes(tmp_path):
    """safetensors orders its metadata differently on each write; DVC would see a new file."""
    import torch
    from safetensors import safe_open

    from shpeft import bound

    tensors = {"b": torch.ones(3), "a": torch.arange(5, dtype=torch.int64)}
    metadata = {"model": "m", "model_args": "{}", "num_classes": "2", "run": "r"}
    written = [
        bound.write(tmp_path / f"{i}.safetensors", tensors, "sha", **metadata).read_bytes()
        for i in range(6)
    ]
    assert len(set(written)) == 1
    with safe_open(tmp_path / "0.safetensors", framework="pt") as handle:
        assert handle.metadata() == {"backbone_sha256": "sha", **metadata}
        assert torch.equal(handle.get_tensor("a"), tensors["a"])
