"""The train-step benchmark runs every variant and reports what each trains and keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shpeft.bench.loader import LoaderBench, loader, loader_table
from shpeft.bench.train_step import VARIANTS, TrainStepBench, table, train_step
from shpeft.errors import ShpeftError


def test_train_step_reports_every_variant(tmp_path):
    cfg = TrainStepBench(
        model="vit_tiny_patch16_224", img_size=32, batch_size=4, warmup=1, steps=1, budget=1e-3
    )
    report = train_step(cfg, tmp_path)
    rows = {row["variant"]: row for row in report["variants"]}
    assert list(rows) == list(VARIANTS)
    head = rows["linear"]["trainable"]
    assert head == 192 * 10 + 10
    assert rows["sparse"]["trainable"] == report["k"] + head
    assert rows["sparse-deterministic"]["trainable"] == rows["sparse"]["trainable"]
    assert report["deterministic_step_vs_sparse"] > 0
    assert rows["floor"]["trainable"] == head
    assert rows["full"]["step_vs_full"] == 1.0
    # AdamW keeps two moments per trained value: state is O(k) for the sparse engine.
    assert rows["sparse"]["optimizer_state_bytes"] == 2 * 4 * (report["k"] + head)
    state = {name: row["optimizer_state_bytes"] for name, row in rows.items()}
    assert state["dense-mask"] > 100 * state["sparse"]
    assert json.loads((tmp_path / report["file"].split("/")[-1]).read_text())["k"] == report["k"]
    assert "| sparse |" in table(report)


def test_loader_reports_every_variant_and_stored_size(tmp_path):
    cfg = LoaderBench(
        images=16, stored_sizes=(32, 8), img_size=32, batch_size=4, batches=2, device="cpu"
    )
    report = loader(cfg, tmp_path)
    rows = report["variants"]
    assert [(r["stored_px"], r["variant"]) for r in rows] == [
        (size, variant) for size in (32, 8) for variant in ("gather", "augment-cpu")
    ]
    assert all(r["images_per_second"] > 0 and isinstance(r["meets_target"], bool) for r in rows)
    assert json.loads((tmp_path / "loader-32px-cpu.json").read_text())["variants"] == rows
    assert "| 8 | augment-cpu |" in loader_table(report)


def test_prepare_bench_measures_each_variant_in_its_own_process(tmp_path):
    from shpeft.bench.prepare import PREPARE_VARIANTS, PrepareBench, prepare_memory, prepare_table

    report = prepare_memory(PrepareBench(gigabytes=0.0002, stored_size=28, img_size=28), tmp_path)
    assert [row["variant"] for row in report["rows"]] == list(PREPARE_VARIANTS)
    images = sum(report["images"].values())
    assert 250 <= images <= 255 and report["archive_pixels_bytes"] == images * 28 * 28
    assert all(row["peak_bytes"] > 0 for row in report["rows"])
    assert report["stream_vs_whole"] > 0 and "| stream |" in prepare_table(report)
    assert json.loads(Path(report["file"]).read_text())["config"]["gigabytes"] == 0.0002
    assert not list(tmp_path.glob("shpeft-bench-*"))  # the archive is gone
    with pytest.raises(ShpeftError, match="--gigabytes must be positive"):
        PrepareBench(gigabytes=0)
