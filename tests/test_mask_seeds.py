"""Each seed scores and builds its own masks (the spread over seeds includes the selection's);
`score.seed` shares one mask between all seeds instead."""

from __future__ import annotations

from conftest import LAYOUT, layered
from shpeft import dag, dvc_yaml
from shpeft.steps import run_job

TWO_SEEDS = "seeds: [0, 1]\ntune: {enabled: true, seeds: [2]}\n"


def _inputs(params, step: str, **wildcards) -> dict:
    job = dag.Job(dag.STEPS[step], {k: str(v) for k, v in wildcards.items()}, params.layout)
    return job.inputs(params)


def test_every_seed_trains_on_its_own_mask_by_default(in_tmp):
    params = layered(in_tmp, TWO_SEEDS)
    assert params.mask_seeds() == [0, 1, 2]  # the grid's seeds and the tune job's
    scored = {(j["dataset"], j["seed"]) for j in dag.jobs(params, dag.STEPS["score"])}
    assert scored == {(d, s) for d in ("tiny_us", "tiny_derm") for s in ("0", "1", "2")}
    for seed in (0, 1):
        found = _inputs(params, "finetune", dataset="tiny_us", method="sh-peft", seed=seed)
        assert found["mask"] == LAYOUT.mask_file("tiny_us", "hybrid", seed)
    tune = _inputs(params, "tune", dataset="tiny_us", method="sh-peft")
    assert tune["masks"] == [LAYOUT.mask_file("tiny_us", "hybrid", 2)]
    point = _inputs(
        params, "sweep_finetune", sweep="budget", value=0.001, dataset="tiny_us", seed=0
    )
    assert point["mask"] == LAYOUT.sweep_mask_file("budget", "0.001", "tiny_us", 0)
    # The union of seeds is not the `seeds` list: DVC gets the values written out.
    assert dvc_yaml.stages(params)["score"]["matrix"]["seed"] == [0, 1, 2]


def test_score_seed_shares_one_mask_between_all_seeds(in_tmp):
    params = layered(in_tmp, TWO_SEEDS + "score: {seed: 7}\n")
    assert params.mask_seeds() == [7] and params.score_seeds() == [7]
    assert {j["seed"] for j in dag.jobs(params, dag.STEPS["mask"])} == {"7"}
    for seed in (0, 1):
        found = _inputs(params, "finetune", dataset="tiny_us", method="sh-peft", seed=seed)
        assert found["mask"] == LAYOUT.mask_file("tiny_us", "hybrid", 7)
    assert dvc_yaml.stages(params)["mask"]["matrix"]["seed"] == [7]


def test_dvc_iterates_the_seeds_list_when_each_seed_has_its_mask(in_tmp):
    params = layered(in_tmp, "seeds: [0, 1]\n")
    stage = dvc_yaml.stages(params)["finetune-sh-peft"]
    assert stage["matrix"]["seed"] == "${seeds}"
    assert "results/tiny/masks/${item.dataset}/seed${item.seed}/hybrid.safetensors" in stage["deps"]
    assert dvc_yaml.stages(params)["mask"]["matrix"]["seed"] == "${seeds}"


def test_two_scoring_seeds_select_different_entries(in_tmp):
    params = layered(in_tmp, "backbone: {weights: none}\nseeds: [0, 1]\n")
    run_job(params, "prepare", dataset="tiny_us")
    run_job(params, "backbone")
    scores = []
    for seed in (0, 1):
        run_job(params, "score", dataset="tiny_us", seed=seed)
        run_job(params, "mask", dataset="tiny_us", variant="taskspecific", seed=seed)
        scores.append(LAYOUT.mask_file("tiny_us", "taskspecific", seed).read_bytes())
    assert scores[0] != scores[1]  # another probe and other batches: another selection
