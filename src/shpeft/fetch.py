"""`shpeft fetch`: download, where there is internet, everything a study's jobs would fetch.

Compute nodes of many clusters have no internet. Run this on a login node (or any machine that
shares the cache and data folders with them): it fills the Hugging Face cache with the backbone's
hub weights (`weights: hub`; `HF_HOME` or `HF_HUB_CACHE` say where) and downloads the MedMNIST
files of datasets with `download: true`. Jobs then find them there: set `HF_HUB_OFFLINE=1` where
they run, so that timm reads the cache without trying the network. What was fetched, with each
file's sha256, goes to `results/<experiment>/fetched.json`.

For hub weights, `backbone.sha256` is the hash of the loaded tensors (names and bytes), not of
the file: the same weights hash alike whatever file format or cache they came from. This
records both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shpeft.backbone.weights import create, hash_tensors
from shpeft.data.registry import fetch_inputs
from shpeft.errors import ShpeftError
from shpeft.fileio import sha256_file, write_json

if TYPE_CHECKING:
    from shpeft.backbone.config import BackboneConfig
    from shpeft.params import Params

log = logging.getLogger(__name__)

#: The weight files timm looks for on the hub, in its order.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def fetch(params: Params) -> list[dict[str, Any]]:
    """Fetch what the params' backbone and datasets need; record it; return the records."""
    records = []
    if params.backbone.weights == "hub":
        records.append(fetch_backbone(params.backbone))
    for name in params.grid.datasets:
        for path in fetch_inputs(params.datasets[name]):
            records.append(
                {"what": f"dataset {name}", "file": str(path), "sha256": sha256_file(path)}
            )
    out = params.layout.root / "fetched.json"
    write_json(out, records)
    log.info("fetched %d file(s); recorded in %s", len(records), out)
    return records


def fetch_backbone(cfg: BackboneConfig) -> dict[str, Any]:
    """Load the hub weights once (timm downloads them into the cache, or finds them there)."""
    model = create(cfg, pretrained=True)
    path = cached_file(model.pretrained_cfg)
    if path is None:
        raise ShpeftError(f"backbone.model: '{cfg.model}' loaded, but no hub file is cached")
    return {
        "what": f"backbone {cfg.model}",
        "file": str(path),
        "sha256": sha256_file(path),
        "tensors_sha256": hash_tensors(model.state_dict()),
    }


def cached_file(pretrained_cfg: dict[str, Any]) -> Path | None:
    """The cached hub file timm loaded the weights from."""
    from huggingface_hub import try_to_load_from_cache

    repo = pretrained_cfg.get("hf_hub_id")
    if not repo:
        return None
    repo, _, revision = repo.partition("@")
    for name in HUB_FILES:
        found = try_to_load_from_cache(repo, name, revision=revision or None)
        if isinstance(found, str):
            return Path(found)
    return None
