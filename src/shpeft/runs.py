"""A run folder (`results/runs/<dataset>/<method>/seed<seed>/`, or a sweep point's), written and
read in one place.

It holds `metrics.json` (test metrics scored once with the checkpoint selected on validation,
the selected epoch's validation metrics, trainable counts), `config.json` (everything resolved),
`history.csv` (per epoch), `predictions.csv` (test class probabilities), `locations.json` (where
the trainable parameters sit), the method's trained part (`Method.trained_file`) and `mlflow.json`
(the MLflow run, and what could not be logged to it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path, read_json, write_json
from shpeft.methods.locations import from_rows, to_rows


@dataclass
class RunRecord:
    """What a finished run writes, besides its trained part."""

    metrics: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, Any]]
    predictions: pd.DataFrame
    locations: Counter[tuple[int, str]]


class RunFolder:
    METRICS = "metrics.json"
    CONFIG = "config.json"
    HISTORY = "history.csv"
    PREDICTIONS = "predictions.csv"
    LOCATIONS = "locations.json"
    TRACKING = "mlflow.json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def write(
        cls,
        path: str | Path,
        record: RunRecord,
        save_trained: Callable[[Path], None],
        tracking: Callable[[RunFolder], dict[str, Any]],
    ) -> RunFolder:
        """Write the folder atomically: `save_trained` writes the trained part into it, then
        `tracking` logs what it wants of it and returns the record kept in `mlflow.json`."""
        with atomic_path(path) as tmp:
            tmp.mkdir()
            written = cls(tmp)
            write_json(tmp / cls.METRICS, record.metrics)
            write_json(tmp / cls.CONFIG, record.config)
            pd.DataFrame(record.history).to_csv(tmp / cls.HISTORY, index=False)
            record.predictions.to_csv(tmp / cls.PREDICTIONS, index=False)
            write_json(tmp / cls.LOCATIONS, to_rows(record.locations))
            save_trained(tmp)
            write_json(tmp / cls.TRACKING, tracking(written))
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def _read(self, name: str, reader: Callable[[Path], Any]) -> Any:
        try:
            return reader(self.path / name)
        except (OSError, ValueError) as exc:
            raise ShpeftError(
                f"{self.path / name}: run output missing or unreadable ({exc})"
            ) from None

    def metrics(self) -> dict[str, Any]:
        return self._read(self.METRICS, read_json)

    def config(self) -> dict[str, Any]:
        return self._read(self.CONFIG, read_json)

    def history(self) -> pd.DataFrame:
        return self._read(self.HISTORY, pd.read_csv)

    def predictions(self) -> pd.DataFrame:
        return self._read(self.PREDICTIONS, pd.read_csv)

    def locations(self) -> Counter[tuple[int, str]]:
        return from_rows(self._read(self.LOCATIONS, read_json))

    def tracking(self) -> dict[str, Any]:
        return self._read(self.TRACKING, read_json)

    def probabilities(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Test labels, class probabilities and class names from `predictions.csv`."""
        frame = self.predictions()
        columns = [c for c in frame.columns if c.startswith("prob_")]
        names = [c.removeprefix("prob_") for c in columns]
        return frame["label"].to_numpy(), frame[columns].to_numpy(), names


def predictions_frame(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> pd.DataFrame:
    """One row per test case: its index, true and predicted class, and every probability."""
    frame = pd.DataFrame(
        {"index": np.arange(len(labels)), "label": labels, "predicted": probs.argmax(1)}
    )
    for c, name in enumerate(class_names):
        frame[f"prob_{name}"] = probs[:, c]
    return frame
