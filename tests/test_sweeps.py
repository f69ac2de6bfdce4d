"""Sweeps: points named as the workflow names them, their params, and the summary table."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from shpeft import paths
from shpeft.errors import ShpeftError
from shpeft.fileio import write_json
from shpeft.params import validate
from shpeft.stats import StatsConfig, seed_mean_interval
from shpeft.sweeps import point, sweep_table


def test_point_changes_only_its_key_of_the_method_mask(tiny_params):
    found = point(tiny_params, "budget=0.004")
    assert (found.sweep, found.value, found.method, found.variant) == (
        "budget",
        "0.004",
        "sh-peft",
        "hybrid",
    )
    mask = found.params["masks"]["hybrid"]
    assert mask["budget"] == 0.004 and mask["budget_count"] is None
    assert mask["rho"] == tiny_params["masks"]["hybrid"]["rho"]
    assert tiny_params["masks"]["hybrid"]["budget"] == 0.002  # the params are not modified
    assert point(tiny_params, "rho=0.0").params["masks"]["hybrid"]["rho"] == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("budget", "expected SWEEP=VALUE"),
        ("width=3", "no sweep named 'width'"),
        ("budget=0.0040", r"0.0040 is not one of sweeps.budget.values \[0.001, 0.004\]"),
    ],
)
def test_bad_points_are_refused(tiny_params, text, message):
    with pytest.raises(ShpeftError, match=message):
        point(tiny_params, text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "linear"}, "key 'sweeps.budget.method': 'linear' is not a method with a mask"),
        ({"datasets": ["elsewhere"]}, "key 'sweeps.budget.datasets': elsewhere not in grid"),
        ({"values": [0.0]}, "key 'sweeps.budget.values.0'"),
    ],
)
def test_sweep_params_are_checked(tiny_params, change, message):
    config = copy.deepcopy(tiny_params)
    config["sweeps"]["budget"].update(change)
    with pytest.raises(ShpeftError, match=message):
        validate(config, "params.yaml")


def test_seed_mean_interval_covers_the_true_accuracy():
    """Two seeds of a classifier right with probability 0.8: the interval holds 0.8 ~95% of the
    time, and is about as wide as one seed's (the seeds share the test cases)."""
    rng = np.random.default_rng(0)
    cfg = StatsConfig(bootstrap=300, seed=1)
    covered = 0
    for _ in range(60):
        labels = rng.integers(0, 2, 300)
        right = rng.random((2, 300)) < 0.8
        predicted = np.where(right, labels, 1 - labels)
        low, high = seed_mean_interval(labels, predicted, cfg)
        assert low < (predicted == labels).mean() < high
        covered += low <= 0.8 <= high
    assert 0.85 <= covered / 60 <= 1.0
    assert np.isnan(seed_mean_interval(labels, predicted, StatsConfig(bootstrap=0))).all()


def test_sweep_table_from_runs(tiny_params, in_tmp):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    for value, correct in (("0.001", 30), ("0.004", 40)):
        run = paths.sweep_run_dir("budget", value, "tiny_us", 0)
        run.mkdir(parents=True)
        predicted = np.where(np.arange(50) < correct, labels, (labels + 1) % 3)
        pd.DataFrame({"label": labels, "predicted": predicted}).to_csv(
            run / "predictions.csv", index=False
        )
        write_json(
            run / "metrics.json",
            {
                "test": {"accuracy": correct / 50},
                "trainable_backbone": 28,
                "trainable_fraction": 1e-3,
            },
        )
    table = sweep_table(tiny_params, "budget")
    assert list(table["value"]) == [0.001, 0.004]
    assert list(table["accuracy"]) == [0.6, 0.8]
    assert (table["accuracy_low"] < table["accuracy"]).all()
    assert (table["accuracy"] < table["accuracy_high"]).all()
    assert table["accuracy_std"].isna().all()  # one seed: no std, still a table
    with pytest.raises(ShpeftError, match="rho/points/0.0/tiny_us/seed0: run outputs missing"):
        sweep_table(tiny_params, "rho")
