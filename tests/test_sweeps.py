"""Sweeps: points named as the workflow names them, their params, and the summary table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import LAYOUT
from shpeft.analysis.stats import StatsConfig, seed_mean_interval
from shpeft.analysis.sweep_table import sweep_table
from shpeft.errors import ShpeftError
from shpeft.fileio import write_json
from shpeft.sweeps import point_mask, swept_value


def test_a_point_changes_only_its_key_of_the_method_mask(tiny_params):
    assert tiny_params.sweep_method("budget") == "sh-peft"
    assert tiny_params.sweep_variant("budget") == "hybrid"
    mask = tiny_params.masks["hybrid"].model_copy(update={"budget_count": 55})
    point = point_mask(mask, "budget", 0.004)
    assert point.budget == 0.004 and point.budget_count is None  # the swept fraction applies
    assert point.rho == mask.rho and mask.budget_count == 55  # the variant itself is untouched
    assert point_mask(mask, "rho", 0.0).rho == 0.0
    assert point_mask(mask, "rho", 0.0).budget_count == 55


def test_values_are_read_back_from_their_folder_names():
    for value in (0.004, 1e-05, 0, 1, 0.25):
        assert swept_value(str(value)) == value and type(swept_value(str(value))) is type(value)
    with pytest.raises(ShpeftError, match="--value x: not a number"):
        swept_value("x")


def test_a_point_is_checked_as_its_variant_is(tiny_params):
    with pytest.raises(ShpeftError, match="--value 2: .*less than or equal to 1 for rho"):
        point_mask(tiny_params.masks["hybrid"], "rho", 2)


def test_sweep_values_keep_the_form_they_are_written_in(in_tmp):
    """`rho: [0, 1]` names folders `0` and `1`, as DVC renders `${item.value}`, not `0.0`."""
    from conftest import layered
    from shpeft import dag

    params = layered(in_tmp, "sweeps: {rho: {values: [0, 0.5, 1]}}\n")
    values = {job["value"] for job in dag.jobs(params, dag.SWEEP_FINETUNE) if job["sweep"] == "rho"}
    assert values == {"0", "0.5", "1"}


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


def test_sweep_table_from_runs(in_tmp):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    runs = []
    # Validation prefers the smaller budget, test the larger: validation's choice is marked.
    for value, correct, val in ((0.001, 30, 0.7), (0.004, 40, 0.6)):
        run = LAYOUT.sweep_run_dir("budget", str(value), "tiny_us", 0)
        run.mkdir(parents=True)
        predicted = np.where(np.arange(50) < correct, labels, (labels + 1) % 3)
        pd.DataFrame({"label": labels, "predicted": predicted}).to_csv(
            run / "predictions.csv", index=False
        )
        metrics = {
            "test": {"accuracy": correct / 50},
            "val": {"accuracy": val, "loss": 1.0},
            "trainable_backbone": 28,
        }
        write_json(run / "metrics.json", {**metrics, "trainable_fraction": 1e-3})
        point = {"sweep": "budget", "value": value}
        write_json(run / "config.json", {"dataset": "tiny_us", "method": "m", "sweep_point": point})
        runs.append(run)
    stats = StatsConfig(bootstrap=200)
    table = sweep_table(runs, stats)
    assert list(table["value"]) == [0.001, 0.004]
    assert list(table["accuracy"]) == [0.6, 0.8]
    assert (table["accuracy_low"] < table["accuracy"]).all()
    assert (table["accuracy"] < table["accuracy_high"]).all()
    assert table["accuracy_std"].isna().all()  # one seed: no std, still a table
    assert list(table["val_accuracy"]) == [0.7, 0.6] and list(table["chosen"]) == [True, False]
    missing = LAYOUT.sweep_run_dir("rho", "0.0", "tiny_us", 0)
    with pytest.raises(ShpeftError, match="rho/points/0.0/tiny_us/seed0/config.json: run output"):
        sweep_table([missing], stats)
