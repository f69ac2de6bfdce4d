"""`shpeft bench train-step`: what one training step costs under each way of training a ViT.

All variants run in one process, on copies of the same model, with the same batch and device:
step time (median of repeated steps after warm-up), peak memory during the steps (CUDA's max
allocated on GPU; growth of the resident set on CPU, sampled) and optimizer-state bytes. Ratios are
to full fine-tuning in the same run. Variants:

- `full`: every weight trains;
- `dense-mask`: GPS-style masking, a full backward for the eligible weights, then the unselected
  gradients are zeroed (optimizer state for every eligible weight);
- `sparse`: the sparse engine, the same k entries as trainable deltas;
- `lora-r8`: the `lora` method at rank 8 (Hugging Face peft on qkv/proj/fc1/fc2);
- `sparse-deterministic`: `sparse` with torch's deterministic algorithms on during its steps
  (what `finetune.deterministic` costs the engine: on CUDA `index_add_` then takes its
  deterministic path; every variant runs with `CUBLAS_WORKSPACE_CONFIG=:4096:8`, which
  deterministic mode needs);
- `floor`: nothing trains but the head, yet input gradients flow through every block (the least a
  method with trainable entries in the first block can cost);
- `linear`: the head only.
"""

from __future__ import annotations

import copy
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shpeft.bench.report import write_report
from shpeft.methods.registry import RunContext, create_method
from shpeft.selection.importance import BLOCK_WEIGHTS, eligible_parameters
from shpeft.selection.masks import random_selection, split_flat
from shpeft.sparse.inject import inject
from shpeft.surgery import BLOCK_LINEARS, freeze, unfreeze_head

VARIANTS = ("full", "dense-mask", "sparse", "sparse-deterministic", "lora-r8", "floor", "linear")


@dataclass
class TrainStepBench:
    model: str = "vit_small_patch16_224"
    img_size: int = 112
    batch_size: int = 32
    #: CPU threads torch may use.
    threads: int = 2
    #: auto | cpu | cuda
    device: str = "auto"
    #: bf16 autocast (as training does on CUDA).
    bf16: bool = False
    #: Fraction of the backbone's weights the masked variants train.
    budget: float = 1e-4
    #: Steps per variant before timing (peak memory is measured over these).
    warmup: int = 3
    #: Timed steps per variant, taken in turns across variants.
    steps: int = 20
    seed: int = 0


class _RssPeak:
    """Samples the resident set size in a thread; `peak` is the largest seen while running."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> _RssPeak:
        self.peak = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _selection(model: nn.Module, budget: float, seed: int) -> dict[str, np.ndarray]:
    sizes = {n: p.numel() for n, p in eligible_parameters(model, BLOCK_WEIGHTS).items()}
    backbone = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("head."))
    k = max(1, round(budget * backbone))
    return split_flat(random_selection(sum(sizes.values()), k, seed), sizes)


def _dense_mask(model: nn.Module, selection: dict[str, np.ndarray]) -> Callable[[], None]:
    """Make the eligible weights trainable; return the hook that zeroes unselected gradients."""
    freeze(model)
    params = dict(model.named_parameters())
    masks = {}
    for name, positions in selection.items():
        params[name].requires_grad_(True)
        mask = torch.zeros(params[name].numel(), dtype=torch.bool, device=params[name].device)
        mask[torch.as_tensor(positions, device=mask.device)] = True
        masks[name] = mask.view_as(params[name])
    unfreeze_head(model)

    def zero_unselected() -> None:
        for name, mask in masks.items():
            params[name].grad.mul_(mask)

    return zero_unselected


def _floor(model: nn.Module) -> None:
    """Head trainable; the first block's input requires grad, so every block backpropagates."""
    freeze(model)
    unfreeze_head(model)
    model.blocks[0].register_forward_pre_hook(lambda _, args: (args[0].detach().requires_grad_(),))


def prepare_variant(
    name: str, base: nn.Module, selection: dict[str, np.ndarray], device: torch.device
) -> tuple[nn.Module, Callable[[], None] | None]:
    """A copy of `base` on `device`, set up for one variant, and the hook to run before `step`."""
    model = copy.deepcopy(base).to(device)
    after_backward = None
    methods = {
        "full": {"kind": "full"},
        "lora-r8": {"kind": "lora", "rank": 8, "targets": list(BLOCK_LINEARS)},
        "linear": {"kind": "linear"},
    }
    if name in methods:
        create_method(methods[name]).apply(model, RunContext("bench", 0, None))
    elif name == "dense-mask":
        after_backward = _dense_mask(model, selection)
    elif name in ("sparse", "sparse-deterministic"):
        freeze(model)
        for layer in inject(model, selection, "bench").values():
            layer.values.requires_grad_(True)
        unfreeze_head(model)
    elif name == "floor":
        _floor(model)
    else:
        raise ValueError(f"unknown variant {name}")
    return model, after_backward


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the OS, so the next variant's RSS growth is its own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value) and value.ndim > 0
    )


@dataclass
class _Trainer:
    """One variant, ready to take training steps on the benchmark batch."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    after_backward: Callable[[], None] | None
    batch: tuple[torch.Tensor, torch.Tensor]
    bf16: bool

    def step(self) -> None:
        images, targets = self.batch
        torch.use_deterministic_algorithms(self.name.endswith("-deterministic"))
        try:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = nn.functional.cross_entropy(self.model(images).float(), targets)
            loss.backward()
            if self.after_backward is not None:
                self.after_backward()
            self.optimizer.step()
            if images.device.type == "cuda":
                torch.cuda.synchronize()
        finally:
            torch.use_deterministic_algorithms(False)


def warm_up(
    name: str, base: nn.Module, selection, batch, cfg: TrainStepBench, device: torch.device
) -> tuple[_Trainer, dict[str, Any]]:
    """Set up a variant and take its warm-up steps, measuring the memory they need.

    Peak memory is measured from the set-up model (before its first step) to the highest point
    during the warm-up steps: gradients, optimizer state and activations.
    """
    _release_freed_memory()
    model, after_backward = prepare_variant(name, base, selection, device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    trainer = _Trainer(name, model, optimizer, after_backward, batch, cfg.bf16)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_bytes = torch.cuda.memory_allocated()
    with _RssPeak() as rss:
        start_rss = rss.peak
        for _ in range(cfg.warmup):
            trainer.step()
    peak = torch.cuda.max_memory_allocated() - start_bytes if cuda else rss.peak - start_rss
    return trainer, {
        "variant": name,
        "trainable": sum(p.numel() for p in params),
        "peak_memory_bytes": int(peak),
        "memory_kind": "cuda max allocated" if cuda else "resident-set growth",
        "optimizer_state_bytes": _optimizer_bytes(optimizer),
    }


def time_steps(trainers: list[_Trainer], steps: int) -> dict[str, float]:
    """Median step time per variant, taking steps in turns so that drift hits all alike."""
    times: dict[str, list[float]] = {t.name: [] for t in trainers}
    for _ in range(steps):
        for trainer in trainers:
            started = time.perf_counter()
            trainer.step()
            times[trainer.name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def train_step(cfg: TrainStepBench, out_dir: str | Path) -> dict[str, Any]:
    """Run every variant, add ratios to `full`, write `train_step.json`; return the report."""
    import timm

    from shpeft.train.devices import resolve_device, seed_everything

    torch.set_num_threads(cfg.threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA starts
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    base = timm.create_model(cfg.model, img_size=cfg.img_size, num_classes=10)
    selection = _selection(base, cfg.budget, cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    images = torch.randn(cfg.batch_size, 3, cfg.img_size, cfg.img_size, generator=generator)
    targets = torch.randint(0, 10, (cfg.batch_size,), generator=generator)
    batch = (images.to(device), targets.to(device))
    trainers, rows = zip(
        *(warm_up(name, base, selection, batch, cfg, device) for name in VARIANTS), strict=True
    )
    for row, seconds in zip(rows, time_steps(list(trainers), cfg.steps).values(), strict=True):
        row["step_seconds"] = seconds
    full = rows[0]
    for row in rows:
        for key in ("step_seconds", "peak_memory_bytes", "optimizer_state_bytes"):
            row[f"{key.split('_')[0]}_vs_full"] = row[key] / full[key] if full[key] else None
    floor = next(row for row in rows if row["variant"] == "floor")
    sparse = next(r for r in rows if r["variant"] == "sparse")
    strict = next(r for r in rows if r["variant"] == "sparse-deterministic")
    results = {
        "k": sum(len(p) for p in selection.values()),
        "sparse_step_vs_floor": sparse["step_seconds"] / floor["step_seconds"],
        "deterministic_step_vs_sparse": strict["step_seconds"] / sparse["step_seconds"],
        "variants": rows,
    }
    out = Path(out_dir) / f"train_step-{cfg.model}-{cfg.img_size}px-{device.type}.json"
    return write_report(cfg, device, results, out)


def table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        "| variant | trainable | step (s) | step / full | peak memory (MiB) | memory / full "
        "| optimizer state (MiB) | state / full |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["variants"]:
        lines.append(
            f"| {row['variant']} | {row['trainable']:,} | {row['step_seconds']:.3f} "
            f"| {row['step_vs_full']:.3f} | {row['peak_memory_bytes'] / 2**20:.1f} "
            f"| {row['peak_vs_full']:.3f} | {row['optimizer_state_bytes'] / 2**20:.3f} "
            f"| {row['optimizer_vs_full']:.5f} |"
        )
    return "\n".join(lines)
