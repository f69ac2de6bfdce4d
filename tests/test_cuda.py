"""The tiny grid on a GPU: every step that trains runs on CUDA, as on a GPU box or a cluster.

Skipped, with the reason, on a machine without a CUDA device (see conftest.py).
"""

from __future__ import annotations

import pytest

from conftest import LAYOUT, layered
from shpeft.runs import RunFolder
from shpeft.steps import run_job

pytestmark = pytest.mark.gpu

OVERLAY = """
backbone: {weights: pretrain}
finetune: {device: cuda}
score: {batches: 2, batch_size: 16}
"""


def test_the_tiny_grid_runs_on_cuda(in_tmp):
    params = layered(in_tmp, OVERLAY)
    run_job(params, "prepare", dataset="tiny_us")
    run_job(params, "backbone")  # pretraining on the GPU
    run_job(params, "score", dataset="tiny_us", seed=0)  # gradients and magnitudes on the GPU
    run_job(params, "mask", dataset="tiny_us", variant="hybrid", seed=0)
    for method in ("full", "linear", "sh-peft"):
        run_job(params, "finetune", dataset="tiny_us", method=method, seed=0)
        run = RunFolder(LAYOUT.run_dir("tiny_us", method, 0))
        config = run.config()
        assert config["device"] == "cuda" and config["bf16"] is True, method
        assert 0 <= run.metrics()["test"]["accuracy"] <= 1
    assert RunFolder(LAYOUT.run_dir("tiny_us", "sh-peft", 0)).metrics()["trainable_backbone"] > 0
