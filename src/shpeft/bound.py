"""Files bound to one backbone: importance scores, masks, sparse deltas, trained parts, merges.

Each is a safetensors file whose metadata records the sha256 of the backbone it was made on
(`backbone.json`'s), stamped here when it is written and checked here when it is read back, so a
file made for another backbone is refused with a message naming it, never silently applied.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from shpeft.errors import ShpeftError
from shpeft.fileio import atomic_path

BACKBONE_KEY = "backbone_sha256"


def write(path: str | Path, tensors: dict[str, Any], backbone_sha256: str, **metadata: str) -> Path:
    """Write `tensors` (torch, contiguous, on the CPU) atomically, stamped with the backbone."""
    path = Path(path)
    data = save(tensors, metadata={BACKBONE_KEY: backbone_sha256, **metadata})
    with atomic_path(path) as tmp:
        tmp.write_bytes(canonical(data))
    return path


def canonical(data: bytes) -> bytes:
    """safetensors bytes with their header's keys sorted. safetensors writes the metadata in an
    order that changes from one write to the next (a hash map's), so the same tensors and
    metadata would give other bytes, and another DVC hash, on every rerun."""
    size = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + size]), sort_keys=True, separators=(",", ":"))
    encoded = header.encode() + b" " * (-len(header.encode()) % 8)  # aligned as safetensors does
    return len(encoded).to_bytes(8, "little") + encoded + data[8 + size :]


class Reader:
    """An open bound file: its metadata and its tensors, read one at a time."""

    def __init__(self, handle: Any, path: Path) -> None:
        self._handle, self.path = handle, path
        self.metadata: dict[str, str] = handle.metadata() or {}

    @property
    def backbone_sha256(self) -> str | None:
        return self.metadata.get(BACKBONE_KEY)

    def keys(self) -> list[str]:
        return list(self._handle.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._handle.keys()  # noqa: SIM118 (a safetensors handle, not a dict)

    def get(self, name: str) -> Any:
        return self._handle.get_tensor(name)

    def all(self) -> dict[str, Any]:
        return {name: self.get(name) for name in self.keys()}


@contextlib.contextmanager
def read(
    path: str | Path, backbone_sha256: str | None, framework: str = "pt", what: str = "file"
) -> Iterator[Reader]:
    """Open a bound file, refusing one made for another backbone than `backbone_sha256` (None:
    any; the caller reads `Reader.backbone_sha256`). `what` names the file in messages."""
    path = Path(path)
    if not path.is_file():
        raise ShpeftError(f"{path}: {what} not found (run the step that writes it first)")
    try:
        handle = safe_open(str(path), framework=framework)
    except (SafetensorError, OSError) as exc:
        raise ShpeftError(f"{path}: corrupt {what} ({exc})") from None
    with handle:
        reader = Reader(handle, path)
        if backbone_sha256 is not None and reader.backbone_sha256 != backbone_sha256:
            raise ShpeftError(
                f"{path}: made for backbone {reader.backbone_sha256}, not for this one "
                f"({backbone_sha256}); rerun the steps that depend on the backbone"
            )
        yield reader
