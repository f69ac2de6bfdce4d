"""`shpeft bench loader`: images per second from prepared uint8 arrays to a batch ready for the
model (224 px by default), on datasets synthesised in the prepared format and memory-mapped as
training reads them, one stored at the model's size and one smaller (MedMNIST's 64 px, resized on
the fly). Variants (see `LOADER_VARIANTS`) share the batches' random indices and are timed in
turns.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shpeft.bench.report import write_report
from shpeft.fileio import write_json
from shpeft.train.devices import to_device

#: What each loader variant times, per batch, through the same `to_device` as training: `gather`
#: takes the batch's images from the memory-mapped array; `augment-cpu` then augments and resizes
#: on the CPU (what training without a GPU does); `augment-cuda` copies the batch through
#: page-locked memory to the GPU and augments there (what training with one does).
LOADER_VARIANTS = ("gather", "augment-cpu", "augment-cuda")


@dataclass
class LoaderBench:
    #: Images per synthetic dataset (uint8 on disk, so 224 px is 147 KiB an image).
    images: int = 1024
    #: Sizes the synthetic datasets are stored at; each is resized to `img_size` on the fly.
    stored_sizes: tuple[int, ...] = (224, 64)
    #: The model's input size.
    img_size: int = 224
    batch_size: int = 64
    #: CPU threads torch may use.
    threads: int = 2
    #: auto | cpu | cuda: `augment-cuda` runs when this resolves to CUDA.
    device: str = "auto"
    #: Batches per variant before timing.
    warmup: int = 2
    #: Timed batches per variant, taken in turns across variants.
    batches: int = 20
    #: Images per second that keeps a GPU training ViT-B/16 busy.
    target: float = 3000.0
    seed: int = 0


def synthetic_images(root: Path, n: int, size: int, seed: int) -> np.ndarray:
    """Random images written in the prepared format, memory-mapped back as training reads them."""
    from shpeft.data.prepared import PreparedDataset

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = np.lib.format.open_memmap(
        root / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3)
    )
    for start in range(0, n, 256):
        images[start : start + 256] = rng.integers(
            0, 256, images[start : start + 256].shape, np.uint8
        )
    images.flush()
    np.save(root / "labels.npy", rng.integers(0, 2, n))
    np.save(root / "split.npy", np.zeros(n, dtype=np.int8))
    write_json(root / "manifest.json", {"class_names": ["a", "b"]})
    return PreparedDataset.load(root).images


class _LoaderVariant:
    """One variant's batch: gather onto the preprocessing's device, then (unless `prep` is None)
    preprocess."""

    def __init__(self, name: str, images: np.ndarray, prep: nn.Module | None, cfg: LoaderBench):
        self.name, self.images, self.prep = name, images, prep
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def batch(self, index: np.ndarray) -> None:
        device = torch.device("cpu") if self.prep is None else self.prep.mean.device
        batch = to_device(self.images[index], device)
        if self.prep is None:
            return
        self.prep(batch, generator=self.generator)
        if device.type == "cuda":
            torch.cuda.synchronize()


def loader(cfg: LoaderBench, out_dir: str | Path) -> dict[str, Any]:
    """Time every variant on every stored size; write `loader-*.json`; return the report."""
    import timm

    from shpeft.train.config import AugmentConfig
    from shpeft.train.devices import resolve_device
    from shpeft.train.preprocess import Preprocess

    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = timm.create_model("vit_tiny_patch16_224", img_size=cfg.img_size, num_classes=2)
    preps = {"gather": None, "augment-cpu": Preprocess(model, AugmentConfig())}
    if device.type == "cuda":
        preps["augment-cuda"] = Preprocess(model, AugmentConfig()).to(device)
    rng = np.random.default_rng(cfg.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="shpeft-bench-") as tmp:
        for stored in cfg.stored_sizes:
            images = synthetic_images(Path(tmp) / f"{stored}px", cfg.images, stored, cfg.seed)
            variants = [_LoaderVariant(n, images, p, cfg) for n, p in preps.items()]
            times: dict[str, list[float]] = {v.name: [] for v in variants}
            for step in range(cfg.warmup + cfg.batches):
                index = rng.choice(cfg.images, cfg.batch_size, replace=False)
                for variant in variants:
                    started = time.perf_counter()
                    variant.batch(index)
                    if step >= cfg.warmup:
                        times[variant.name].append(time.perf_counter() - started)
            for name, values in times.items():
                seconds = statistics.median(values)
                rate = cfg.batch_size / seconds
                rows.append(
                    {
                        "stored_px": stored,
                        "variant": name,
                        "batch_seconds": seconds,
                        "images_per_second": rate,
                        "meets_target": rate >= cfg.target,
                    }
                )
    out = Path(out_dir) / f"loader-{cfg.img_size}px-{device.type}.json"
    return write_report(cfg, device, {"variants": rows}, out)


def loader_table(report: dict[str, Any]) -> str:
    """The loader report as a Markdown table."""
    target = report["config"]["target"]
    lines = [
        f"| stored px | variant | ms / batch | images / s | >= {target:,.0f} / s |",
        "| ---: | --- | ---: | ---: | --- |",
    ]
    for row in report["variants"]:
        lines.append(
            f"| {row['stored_px']} | {row['variant']} | {1000 * row['batch_seconds']:.1f} "
            f"| {row['images_per_second']:,.0f} | {'yes' if row['meets_target'] else 'no'} |"
        )
    return "\n".join(lines)
