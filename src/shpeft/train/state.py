"""What a training run carries from epoch to epoch, and the file that lets a killed job resume.

`TrainingState` holds the trainable parameters, the optimizer, the scheduler, every random
generator and the progress so far (history, best epoch and its weights); its `state_dict` and
`load_state_dict` are all a resumed `fit` needs. `Checkpoint` is where that state is saved after
every epoch, bound to one job by a fingerprint: a state saved under another is deleted, not
resumed.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shpeft.fileio import atomic_path
from shpeft.train.config import SelectMetric
from shpeft.train.devices import to_numpy

log = logging.getLogger(__name__)


class TrainingState:
    """The trainable parameters with their optimizer, schedule, data order and progress."""

    def __init__(
        self,
        named: list[tuple[str, nn.Parameter]],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        order: torch.Generator,
    ) -> None:
        self.named, self.optimizer, self.scheduler, self.order = named, optimizer, scheduler, order
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, float] | None = None
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] = {}

    def record(self, row: dict[str, Any], val: dict[str, float], select: SelectMetric) -> None:
        """Close an epoch: its history row, and its weights if validation is the best so far."""
        self.epoch = row["epoch"]
        self.history.append(row)
        if _better(val, self.best, select):
            self.best, self.best_epoch = val, self.epoch
            self.best_state = {n: p.detach().clone() for n, p in self.named}

    def restore_best(self) -> None:
        with torch.no_grad():
            for name, param in self.named:
                param.copy_(self.best_state[name])

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "trainable": {n: p.detach() for n, p in self.named},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(self.order),
            "history": self.history,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for name, param in self.named:
                param.copy_(state["trainable"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], self.order)
        self.epoch, self.history, self.best = state["epoch"], state["history"], state["best"]
        self.best_epoch = state["best_epoch"]
        device = self.named[0][1].device
        self.best_state = {n: t.to(device) for n, t in state["best_state"].items()}


def selection_key(val: dict[str, float], select: SelectMetric) -> tuple[float, ...]:
    """How validation scores rank (higher is better): by `select`, ties (frequent on small
    validation sets) to the lower validation loss. Epochs and tuned recipes rank alike."""
    if select == "loss":
        return (-val["loss"],)
    return (val[select], -val["loss"])


def _better(new: dict[str, float], best: dict[str, float] | None, select: SelectMetric) -> bool:
    return best is None or selection_key(new, select) > selection_key(best, select)


def _rng_state(order: torch.Generator) -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "order": order.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], order: torch.Generator) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    numpy_state["state"]["key"] = to_numpy(numpy_state["state"]["key"]).astype(np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    order.set_state(state["order"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    """Where `fit` saves its `TrainingState` at every epoch's end, so that a killed job resumes.

    `fingerprint` binds the file to one job: a state saved under another is deleted, not resumed.
    """

    path: Path
    fingerprint: str
    #: Saved with the state and restored by `load` (finetune keeps its MLflow run id here).
    meta: dict[str, str] = field(default_factory=dict)
    #: The state `fit` resumes from, set by `load`; None to start afresh.
    state: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Checkpoint:
        checkpoint = cls(Path(path), fingerprint)
        if not checkpoint.path.is_file():
            return checkpoint
        try:  # weights_only: tensors and plain containers, no pickled code runs
            state = torch.load(checkpoint.path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
            log.warning("%s cannot be read (%s): deleted", checkpoint.path, type(exc).__name__)
            checkpoint.delete()
            return checkpoint
        if state.get("fingerprint") != fingerprint:
            log.warning("%s was saved for another configuration: deleted", checkpoint.path)
            checkpoint.delete()
            return checkpoint
        checkpoint.meta, checkpoint.state = dict(state["meta"]), state
        return checkpoint

    def save(self, state: dict[str, Any]) -> None:
        with atomic_path(self.path) as tmp:
            torch.save({**state, "fingerprint": self.fingerprint, "meta": self.meta}, tmp)

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # the job's own directory, if nothing else is there
            self.path.parent.rmdir()
