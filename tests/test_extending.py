"""Adding a method or a data source is one module: here, each is defined in this file alone, and
goes through validation, the DAG, dvc.yaml and a real job without any other file changing."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import Field
from torch import nn

from conftest import LAYOUT, layered
from shpeft import dag
from shpeft.data import registry as data_registry
from shpeft.data.registry import TEST, TRAIN, VAL, DatasetConfig, RawDataset, register_source
from shpeft.dvc_yaml import stages
from shpeft.errors import ShpeftError
from shpeft.methods import registry as method_registry
from shpeft.methods.registry import MethodConfig, SubsetMethod, register_method
from shpeft.runs import RunFolder
from shpeft.steps import run_job


class NormConfig(MethodConfig):
    """Options of the toy method."""

    block: int = Field(0, ge=0)
    """The block whose first LayerNorm trains."""


class OneNorm(SubsetMethod):
    """A toy method: one block's first LayerNorm trains, with the head."""

    config_cls = NormConfig
    reference = "a test"
    trains = "one LayerNorm"

    def parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.blocks[self.cfg.block].norm1.parameters())


class CheckerConfig(DatasetConfig):
    """Options of the toy source."""

    n: int = Field(40, ge=6)
    """Images per split."""


def load_checkers(cfg: CheckerConfig) -> RawDataset:
    """Plain or checkered noise, two classes, generated."""
    rng = np.random.default_rng(0)
    labels = np.arange(3 * cfg.n) % 2
    yy, xx = np.mgrid[: cfg.image_size, : cfg.image_size]
    checker = ((yy // 4 + xx // 4) % 2) * 100
    images = rng.integers(0, 80, (3 * cfg.n, cfg.image_size, cfg.image_size, 1))
    images = images + labels[:, None, None, None] * checker[..., None]
    split = np.repeat(np.array([TRAIN, VAL, TEST], dtype=np.int8), cfg.n)
    rgb = np.repeat(images, 3, axis=-1).astype(np.uint8)
    return RawDataset(rgb, labels.astype(np.int64), ["plain", "checkered"], split)


@pytest.fixture
def registered():
    """The toy method and source registered for the test, and unregistered after it."""
    register_method("one-norm")(OneNorm)
    register_source("checkers", CheckerConfig)(load_checkers)
    yield
    del method_registry._METHODS["one-norm"]
    del data_registry._SOURCES["checkers"]


OVERLAY = """
grid: {datasets: [boards], methods: [toy, linear]}
datasets: {boards: {source: checkers, image_size: 16, n: 30}}
methods: {toy: {kind: one-norm, block: 1}}
backbone: {weights: none}
sweeps: {budget: {values: []}, rho: {values: []}}
tune: {enabled: true}
"""


def test_a_method_and_a_source_defined_here_run_through_the_pipeline(registered, in_tmp):
    params = layered(in_tmp, OVERLAY)  # validation knows both
    with pytest.raises(ShpeftError, match=r"'methods\.toy\.blok': unknown key \(did you mean"):
        layered(in_tmp, OVERLAY.replace("block: 1", "blok: 1"))
    finetunes = [job.wildcards for job in dag.jobs(params, dag.FINETUNE)]
    assert {"dataset": "boards", "method": "toy", "seed": "0"} in finetunes  # the DAG has it
    stage = stages(params)["finetune-toy"]  # and so has dvc.yaml
    assert stage["params"] == ["methods.toy", "finetune"]

    run_job(params, "prepare", dataset="boards")
    run_job(params, "backbone")
    run_job(params, "tune", dataset="boards", method="toy")  # tuned like every method
    run_job(params, "finetune", dataset="boards", method="toy", seed=0)
    run = RunFolder(LAYOUT.run_dir("boards", "toy", 0))
    assert run.metrics()["trainable_backbone"] == 2 * 32  # norm1 of block 1: scale and shift
    assert run.locations() == {(1, "other"): 64}
    assert run.config()["method_config"] == {"kind": "one-norm", "block": 1, **_no_overrides()}


def _no_overrides() -> dict:
    return {
        "finetune": {key: None for key in method_registry.FinetuneOverride.model_fields},
        "tune": {key: None for key in method_registry.TuneGridOverride.model_fields},
    }
