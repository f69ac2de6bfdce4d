"""Fine-tuning end to end in-process: determinism, what is saved, what stays frozen."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import LAYOUT
from shpeft.backbone.model import load_backbone
from shpeft.runs import RunFolder
from shpeft.steps import run_job
from shpeft.train.metrics import classification_metrics


def _run(params, method, seed):
    run_job(params, "finetune", dataset="tiny_us", method=method, seed=seed)
    return RunFolder(LAYOUT.run_dir("tiny_us", method, seed))


def test_same_seed_gives_identical_metrics(tiny_ready, in_tmp):
    first = _run(tiny_ready, "full", 0).path
    os.rename(first, in_tmp / "a")
    again = _run(tiny_ready, "full", 0).path
    assert (in_tmp / "a" / "metrics.json").read_bytes() == (again / "metrics.json").read_bytes()
    other = _run(tiny_ready, "full", 1).path
    assert (again / "metrics.json").read_bytes() != (other / "metrics.json").read_bytes()


def test_run_outputs(tiny_ready):
    run = _run(tiny_ready, "linear", 0)
    metrics = run.metrics()
    assert {p.name for p in run.path.iterdir()} == {
        "metrics.json",
        "config.json",
        "history.csv",
        "predictions.csv",
        "locations.json",
        "trained.safetensors",
        "mlflow.json",
    }
    assert len(run.history()) == tiny_ready.finetune.epochs
    assert metrics["trainable_backbone"] == 0 and metrics["trainable_head"] == 32 * 3 + 3
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert run.locations() == {}  # linear probing trains nothing of the backbone
    assert run.config()["finetune"] == tiny_ready.finetune.model_dump()


def test_linear_saves_only_the_head_and_leaves_the_backbone_unchanged(tiny_ready):
    run = _run(tiny_ready, "linear", 0)
    trained = load_file(run.file("trained.safetensors"))
    assert set(trained) == {"head.weight", "head.bias"}
    model, _ = load_backbone(LAYOUT.backbone_dir(), num_classes=3)
    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    model.load_state_dict(trained, strict=False)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())


def test_full_saves_every_tensor(tiny_ready):
    run = _run(tiny_ready, "full", 0)
    metrics = run.metrics()
    trained = load_file(run.file("trained.safetensors"))
    model, info = load_backbone(LAYOUT.backbone_dir(), num_classes=3)
    assert set(trained) == {n for n, _ in model.named_parameters()}
    assert metrics["trainable_backbone"] == info.num_params
    assert metrics["trainable_fraction"] == 1.0
    assert sum(run.locations().values()) == info.num_params


def test_metrics_known_answers():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])
    m = classification_metrics(labels, probs)
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.75 and m["auc"] == 1.0
    three = classification_metrics(np.array([0, 1, 2]), np.eye(3))
    assert three["macro_f1"] == 1.0 and three["auc"] == 1.0


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_metrics_agree_with_scikit_learn(n_classes):
    from sklearn import metrics as sk

    rng = np.random.default_rng(n_classes)
    labels = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, 200)])
    logits = rng.normal(size=(len(labels), n_classes)) + 1.5 * np.eye(n_classes)[labels]
    logits[:20] = np.round(logits[:20])  # ties in the scores
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ours = classification_metrics(labels, probs)
    classes = np.arange(n_classes)
    predicted = probs.argmax(1)
    auc = (
        sk.roc_auc_score(labels, probs[:, 1])
        if n_classes == 2
        else sk.roc_auc_score(labels, probs, multi_class="ovr", labels=classes)
    )
    expected = {
        "accuracy": sk.accuracy_score(labels, predicted),
        "balanced_accuracy": sk.balanced_accuracy_score(labels, predicted),
        "macro_f1": sk.f1_score(labels, predicted, average="macro", labels=classes),
        "auc": auc,
        "loss": sk.log_loss(labels, probs, labels=classes),
    }
    assert ours == pytest.approx(expected, abs=1e-12)


def test_tracking_store_and_artifacts_stay_in_the_project(tiny_ready, in_tmp):
    import mlflow

    folder = _run(tiny_ready, "linear", 0)
    experiment = mlflow.get_experiment_by_name("tiny")
    assert experiment.artifact_location == (in_tmp / "mlartifacts").as_uri()
    assert (in_tmp / "mlflow.db").is_file() and not (in_tmp / "mlruns").exists()
    run = mlflow.get_run(folder.tracking()["run_id"])
    assert run.info.run_name == "tiny_us-linear-s0" and run.data.tags["method"] == "linear"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, tiny_ready.finetune.epochs + 1))


def test_a_sparse_run_logs_its_mask_configuration(tiny_ready):
    import mlflow

    run_job(tiny_ready, "score", dataset="tiny_us", seed=0)
    run_job(tiny_ready, "mask", dataset="tiny_us", variant="hybrid", seed=0)
    folder = _run(tiny_ready, "sh-peft", 0)
    logged = mlflow.get_run(folder.tracking()["run_id"]).data.params
    mask = tiny_ready.masks["hybrid"]
    assert logged["mask.config.rule"] == mask.rule
    assert float(logged["mask.config.rho"]) == mask.rho
    assert logged["mask.config.task_specific"] == mask.task_specific
    assert int(logged["mask.k"]) == folder.config()["mask"]["k"]


@pytest.mark.parametrize(
    ("name", "kind"),
    [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)],
)
def test_each_optimizer_of_the_recipe_trains_with_its_settings(name, kind):
    from shpeft.train.config import FinetuneConfig
    from shpeft.train.loop import new_state

    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 1)
    cfg = FinetuneConfig(optimizer=name, lr=0.05, momentum=0.5, weight_decay=0.01, warmup=0)
    state = new_state(list(layer.named_parameters()), cfg, steps_per_epoch=50, seed=0)
    assert type(state.optimizer) is kind
    decay, no_decay = state.optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0  # not on the bias
    assert state.optimizer.defaults.get("momentum", 0.5) == 0.5
    x = torch.randn(64, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 1.0
    losses = []
    for _ in range(50):
        loss = ((layer(x).squeeze(1) - y) ** 2).mean()
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
