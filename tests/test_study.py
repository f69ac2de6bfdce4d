"""The study stages: a change built into known entries is found exactly, and one number of each
table is recomputed here from the saved tensors alone (numpy, not the study's code)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

from shpeft import bound
from shpeft.analysis.tables import main_table
from shpeft.backbone.model import WEIGHTS_FILE
from shpeft.selection.masks import load_mask
from shpeft.steps import run_job
from shpeft.study import hybridity
from shpeft.study.change import top_positions
from tests.conftest import layered

GRID = (
    "backbone: {weights: none}\n"
    "grid: {datasets: [tiny_us], methods: [full, sh-peft, sparse-random, sparse-oracle]}\n"
    "methods: {sparse-oracle: {kind: sparse-oracle}}\n"
    "sweeps: {budget: {values: []}, rho: {values: []}}\n"
)
QKV = "blocks.1.attn.qkv.weight"
#: The entries the constructed fine-tuning moves, in blocks.1's qkv and fc2.
KNOWN = {QKV: [3, 40, 41, 500, 3000], "blocks.1.mlp.fc2.weight": [7, 70, 700]}


def _study(params, construct=None):
    """Prepare, train full, score, build the hybrid mask, (rewrite the run), oracle, study."""
    for step, extra in (
        ("prepare", {"dataset": "tiny_us"}),
        ("backbone", {}),
        ("finetune", {"dataset": "tiny_us", "method": "full", "seed": 0}),
        ("score", {"dataset": "tiny_us", "seed": 0}),
        ("mask", {"dataset": "tiny_us", "variant": "hybrid", "seed": 0}),
    ):
        run_job(params, step, **extra)
    if construct:
        construct(params)
    run_job(params, "oracle", dataset="tiny_us", seed=0)
    run_job(params, "study", dataset="tiny_us", seed=0)
    return params.layout.study_dir("tiny_us", 0)


def _tensors(params):
    """The pretrained backbone and the full run's trained tensors, as saved."""
    layout = params.layout
    pretrained = load_file(layout.backbone_dir() / WEIGHTS_FILE)
    trained = load_file(layout.run_dir("tiny_us", "full", 0) / "trained.safetensors")
    return pretrained, trained


def test_a_change_built_into_known_entries_is_found_exactly(in_tmp):
    def construct(params):
        """Trained = pretrained, but for tiny changes everywhere and large ones at KNOWN."""
        run = params.layout.run_dir("tiny_us", "full", 0) / "trained.safetensors"
        pretrained, trained = _tensors(params)
        rng = np.random.default_rng(0)
        for name, value in pretrained.items():
            moved = value + rng.normal(0, 1e-6, value.shape).astype(value.dtype)
            flat = moved.reshape(-1)
            flat[KNOWN.get(name, [])] += 1.0
            trained[name] = moved
        with bound.read(run, None, framework="np", what="run") as reader:
            sha, metadata = reader.backbone_sha256, reader.metadata
        bound.write(
            run, {k: torch.from_numpy(v) for k, v in trained.items()}, sha, kind=metadata["kind"]
        )

    params = layered(in_tmp, GRID + "masks: {hybrid: {budget_count: 8}}\n")
    study = _study(params, construct)
    oracle = load_mask(params.layout.oracle_mask_file("tiny_us", 0), None)
    assert {n: sorted(p.tolist()) for n, p in oracle.selection.items()} == KNOWN
    masks = pd.read_csv(study / "masks.csv").set_index("selection")
    assert masks.loc["sparse-oracle", "key covered"] == 1.0
    layers = pd.read_csv(study / "layers.csv", dtype={"depth": str})
    keyed = layers[layers["key"] > 0].set_index(["layer", "depth"])["key"].to_dict()
    assert keyed == {("qkv", "1"): 5, ("fc2", "1"): 3}
    # Over every backbone entry, the first share that keeps the 8 moved ones holds nearly all
    # the change, and every share keeping fewer holds about count / 8 of it.
    sparsity = pd.read_csv(study / "sparsity.csv")
    first = sparsity[sparsity["entries kept"] >= 8].iloc[0]
    assert first["change held"] > 0.99
    fewer = sparsity[(sparsity["entries kept"] > 0) & (sparsity["entries kept"] < 8)]
    assert np.allclose(fewer["change held"], fewer["entries kept"] / 8, atol=0.01)


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("study")
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("SHPEFT_PARAMS", raising=False)
        params = layered(folder, GRID)
        run_job(params, "prepare", dataset="tiny_us")
        run_job(params, "backbone")
        run_job(params, "finetune", dataset="tiny_us", method="full", seed=0)
        yield params, _study(params), _tensors(params)


def _key_and_sets(params, pretrained, trained):
    """Recomputed here: the candidates' change, the key weights (top k, ties to the lower
    index), and the two top sets of the importance file restricted to the candidates."""
    with open(params.layout.oracle_stats("tiny_us", 0)) as f:
        k = json.load(f)["k"]
    candidates = [
        n
        for n in pretrained
        if n.startswith("blocks.")
        and n.endswith(("qkv.weight", "proj.weight", "fc1.weight", "fc2.weight"))
    ]
    change = np.concatenate([np.abs(trained[n] - pretrained[n]).ravel() for n in candidates])
    key = np.sort(np.argsort(-change, kind="stable")[:k])
    scores_dir = params.layout.importance_dir("tiny_us", 0)
    scores = load_file(scores_dir / "importance.safetensors")
    with bound.read(scores_dir / "importance.safetensors", None, framework="np") as reader:
        scored = json.loads(reader.metadata["eligible"])
    starts = dict(zip(scored, np.cumsum([0, *scored.values()])[:-1], strict=True))
    offsets = dict(
        zip(candidates, np.cumsum([0, *(pretrained[n].size for n in candidates)])[:-1], strict=True)
    )

    def top(criterion):
        out = []
        for index in scores[f"{criterion}.indices"]:
            name = next(n for n in reversed(list(starts)) if starts[n] <= index)
            if name in offsets:
                out.append(index - starts[name] + offsets[name])
        return np.sort(np.array(out[:k]))

    return change, key, top("cross_entropy/grad_sum"), top("magnitude_l1"), candidates


def test_each_table_has_a_number_recomputed_from_the_saved_tensors(studied):
    params, study, (pretrained, trained) = studied
    backbone = list(pretrained)
    everything = np.concatenate([np.abs(trained[n] - pretrained[n]).ravel() for n in backbone])
    sparsity = pd.read_csv(study / "sparsity.csv").set_index("share")
    top = np.sort(everything)[::-1]
    count = round(0.1 * len(everything))
    assert sparsity.loc[0.1, "change held"] == pytest.approx(top[:count].sum() / top.sum())
    run_metrics = json.loads(
        (params.layout.run_dir("tiny_us", "full", 0) / "metrics.json").read_text()
    )
    assert sparsity.loc[1.0, "test accuracy"] == pytest.approx(run_metrics["test"]["accuracy"])

    change, key, specific, agnostic, candidates = _key_and_sets(params, pretrained, trained)
    regions = pd.read_csv(study / "regions.csv").set_index("region")
    assert regions.loc["task-agnostic", "share"] == pytest.approx(np.isin(key, agnostic).mean())
    assert regions.loc["task-specific", "chance"] == pytest.approx(len(specific) / len(change))
    overlaps = pd.read_csv(study / "overlaps.csv").set_index("pair")
    shared = len(np.intersect1d(key, specific))
    assert overlaps.loc["key weights / task-specific", "jaccard"] == pytest.approx(
        shared / (2 * len(key) - shared)
    )
    layers = pd.read_csv(study / "layers.csv", dtype={"depth": str})
    qkv0 = layers[(layers["layer"] == "qkv") & (layers["depth"] == "0")].iloc[0]
    size = pretrained["blocks.0.attn.qkv.weight"].size
    assert qkv0["key"] == int(np.sum(key < size))  # blocks.0's qkv is the first candidate
    mask = load_mask(params.layout.mask_file("tiny_us", "hybrid", 0), None)
    offsets = dict(
        zip(candidates, np.cumsum([0, *(pretrained[n].size for n in candidates)])[:-1], strict=True)
    )
    flat = np.concatenate([p + offsets[n] for n, p in mask.selection.items()])
    masks = pd.read_csv(study / "masks.csv").set_index("selection")
    assert masks.loc["sh-peft", "key weights"] == pytest.approx(np.isin(flat, key).mean())


def test_the_study_names_what_it_measured_and_logs_it(studied):
    params, study, _ = studied
    summary = json.loads((study / "study.json").read_text())
    assert summary["title"].startswith("tiny_us, seed 0, vit_tiny_patch16_224")
    assert "budget 0.002" in summary["title"]
    assert {"sparsity.png", "hybridity.pdf", "masks.tex", "layers.md"} <= {
        p.name for p in study.iterdir()
    }
    assert (study / "regions.md").read_text().startswith("Key weights")
    assert "\\begin{tabular}" in (study / "sparsity.tex").read_text()


def test_a_reference_is_shown_but_neither_ranked_tested_nor_bold():
    runs = pd.DataFrame(
        {
            "dataset": ["a", "a", "a"],
            "method": ["sh-peft", "full", "sparse-oracle"],
            "seed": [0, 0, 0],
            "accuracy": [0.5, 0.6, 0.9],
            "trainable_fraction": [0.01, 1.0, 0.01],
        }
    )
    ranks = pd.DataFrame({"method": ["sh-peft", "full"], "mean_rank": [2.0, 1.0]})
    table, best = main_table(
        runs, pd.DataFrame(), ranks, ["accuracy"], "sh-peft", 0.95, ["sparse-oracle"]
    )
    oracle = table.set_index("method").loc["sparse-oracle"]
    assert oracle["mean rank"] == "reference"
    assert oracle["p vs sh-peft (Holm)"] == "reference"
    assert best["a Acc"] == "full"


def test_shares_per_region_against_chance_on_a_known_case():
    # 10 candidates; top sets S = {0, 1, 2}, A = {2, 3, 4}; key weights {1, 2, 9}.
    key, s, a = np.array([1, 2, 9]), np.array([0, 1, 2]), np.array([2, 3, 4])
    found = hybridity.region_table(key, s, a, 10).set_index("region")
    assert found.loc["task-specific", "share"] == pytest.approx(2 / 3)
    assert found.loc["both", "share"] == pytest.approx(1 / 3)
    assert found.loc["neither", "share"] == pytest.approx(1 / 3)
    assert found.loc["task-specific", "chance"] == pytest.approx(0.3)
    assert found.loc["both", "chance"] == pytest.approx(0.1)
    assert found.loc["neither", "chance"] == pytest.approx(0.5)
    pairs = hybridity.overlap_table({"key": key, "s": s}, 10).set_index("pair")
    assert pairs.loc["key / s", "jaccard"] == pytest.approx(2 / 4)
    assert pairs.loc["key / s", "chance"] == pytest.approx(0.9 / (6 - 0.9))
    assert hybridity.layer_of("blocks.3.attn.qkv.weight") == ("qkv", "3")
    assert hybridity.layer_of("blocks.0.norm1.weight") == ("norm1", "0")
    assert top_positions(torch.tensor([0.1, 5.0, 0.2, 5.0]), 2).tolist() == [1, 3]
