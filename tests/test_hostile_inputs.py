"""Hostile and malformed inputs: each stops its step with one line naming the file or key at fault.

One table, one entry per case: how to build the bad input under a scratch folder, which step reads
it, and a regex its message must match. Every case must also leave nothing behind: no output, no
temporary file, and no file written by code hidden in the input (pickle payloads, shell names).
The NaN-loss case (a finetune job stops instead of writing NaN metrics) is in test_resume.py.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import ROOT
from helpers import dataset, image_folder, png, tiny_backbone, tiny_weights
from shpeft.data.prepared import prepare_dataset as prepare
from shpeft.errors import ShpeftError
from shpeft.params import load
from shpeft.steps.backbone import build

HOSTILE_NAMES = ["../evil", "a;rm -rf x", "$(touch pwned)", "a/b", "a b", "-rf", "tiny\n"]


class Payload:
    """Pickled, it would create the file `pwned` when unpickled."""

    def __reduce__(self):
        return (open, ("pwned", "w"))


# Steps: each runs on what a builder returned, writing its output (if any) to `out`.


def prepare_step(params: dict, out: Path) -> None:
    prepare("bad", dataset(params), out)


def backbone_step(weights: tuple[Path, dict], out: Path) -> None:
    path, overrides = weights
    build(tiny_backbone(weights=f"file:{path}", **overrides), out)


def params_step(files: list[Path], out: Path) -> None:
    load(files)


# Builders: each makes one bad input under `tmp` and returns what its step reads.


def npz(tmp: Path, **arrays: Any) -> dict:
    """A tiny MedMNIST-style file; `arrays` replace (or, as None, remove) official arrays."""
    rng = np.random.default_rng(0)
    official = {}
    for split, n in (("train", 20), ("val", 6), ("test", 6)):
        official[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        official[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8)
    official.update(arrays)
    (tmp / "npz").mkdir()
    np.savez_compressed(
        tmp / "npz" / "breastmnist.npz", **{k: v for k, v in official.items() if v is not None}
    )
    return {"source": "medmnist", "name": "breastmnist", "root": str(tmp / "npz"), "image_size": 28}


def edited_npz(tmp: Path, edit: Callable[[bytes], bytes]) -> dict:
    """An npz whose bytes `edit` changes; its first array compresses, so edits hit zlib data."""
    params = npz(tmp, train_images=np.resize(np.arange(7, dtype=np.uint8), (20, 28, 28)))
    path = tmp / "npz" / "breastmnist.npz"
    path.write_bytes(edit(path.read_bytes()))
    return params


def flipped(data: bytes, offset: int, count: int = 10) -> bytes:
    end = offset + count
    return data[:offset] + bytes(b ^ 0xFF for b in data[offset:end]) + data[end:]


def central_directory_flipped(data: bytes) -> bytes:
    """The zip's directory, which np.load reads first, made unreadable (its end record stays)."""
    return flipped(data, struct.unpack("<I", data[-6:-2])[0], 4)


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((2, 28, 28), np.uint8))
    return buffer.getvalue()


def ragged() -> np.ndarray:
    images = np.empty(2, dtype=object)
    images[:] = [np.zeros((28, 28), np.uint8), np.zeros((30, 30), np.uint8)]
    return images


def folder(tmp: Path, edit: Callable[[Path], Any]) -> dict:
    """Class folders a/ and b/ of tiny PNGs, changed by `edit(root)`."""
    root = image_folder(tmp / "imgs", per_class=4, modes=("L",))
    edit(root)
    return {"source": "imagefolder", "root": str(root), "image_size": 16}


def declaredpng(path: Path, width: int, height: int) -> None:
    """A small file whose header declares width x height 1-bit pixels; data for 4 rows only, so a
    decoder that went past the header would fail on truncation, not on the pixel limit."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (2 + width // 8) * 4)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def csv(tmp: Path, *rows: str, data: bytes | None = None) -> dict:
    """A CSV manifest over a/0..3.png and b/0..3.png; `rows` follow the header and one good row."""
    root = image_folder(tmp / "imgs", per_class=4, modes=("L",))
    png(tmp / "outside.png")
    (root / "link.png").symlink_to(tmp / "outside.png")
    text = "\n".join(["path,label,split", "a/0.png,a,train", *rows]) + "\n"
    (root / "labels.csv").write_bytes(text.encode() if data is None else data)
    return {"source": "csv", "root": str(root), "image_size": 16}


def weights(
    tmp: Path, name: str, content: Callable[[Path], Any], **overrides: Any
) -> tuple[Path, dict]:
    path = tmp / name
    content(path)
    return path, overrides


def pickled(path: Path) -> None:
    """A bare pickle, as legacy torch files are (protocol 2, as torch writes them)."""
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {"w": Payload()}}, handle, protocol=2)


def truncated(path: Path) -> None:
    tiny_weights(path)
    path.write_bytes(path.read_bytes()[:1000])


def overlay(tmp: Path, content: dict) -> list[Path]:
    (tmp / "bad.yaml").write_text(yaml.safe_dump(content))
    return [ROOT / "params.yaml", tmp / "bad.yaml"]


def named_dataset(tmp: Path, name: str) -> list[Path]:
    spec = {"source": "synthetic", "image_size": 16}
    return overlay(tmp, {"datasets": {name: spec}})


def truncatedpng(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# (case id, build the bad input under tmp, the step that reads it, regex its message must match)
# fmt: off
CASES = [
    # MedMNIST npz files
    ("npz-missing", lambda t: {**npz(t), "root": str(t / "none")}, prepare_step,
     r"none/breastmnist\.npz: MedMNIST file not found"),
    ("npz-truncated", lambda t: edited_npz(t, lambda d: d[:500]), prepare_step,
     r"breastmnist\.npz: not an npz archive \(truncated, or another format\)"),
    ("npz-corrupt-array", lambda t: edited_npz(t, lambda d: flipped(d, 60)), prepare_step,
     r"breastmnist\.npz: array 'train_images' is corrupt or not a plain numeric array"),
    ("npz-corrupt-directory", lambda t: edited_npz(t, central_directory_flipped), prepare_step,
     r"breastmnist\.npz: corrupt npz \(BadZipFile: "),
    ("npz-is-a-pickle", lambda t: edited_npz(t, lambda d: pickle.dumps(Payload())), prepare_step,
     r"breastmnist\.npz: not an npz archive"),
    ("npz-is-a-npy", lambda t: edited_npz(t, lambda d: npy_bytes()), prepare_step,
     r"breastmnist\.npz: not an npz archive"),
    ("npz-missing-key", lambda t: npz(t, val_labels=None), prepare_step,
     r"breastmnist\.npz: missing array\(s\) val_labels"),
    ("npz-images-of-mixed-sizes",
     lambda t: npz(t, val_images=ragged(), val_labels=np.zeros((2, 1), np.uint8)), prepare_step,
     r"breastmnist\.npz: array 'val_images' is corrupt or not a plain numeric array "
     r"\(ValueError: an object array \(ragged images or pickled data\) cannot be read"),
    ("npz-images-wrong-shape", lambda t: npz(t, train_images=np.zeros((20, 28), np.uint8)),
     prepare_step, r"breastmnist\.npz:train_images: expected images shaped \(N, H, W"),
    ("npz-images-not-uint8", lambda t: npz(t, test_images=np.zeros((6, 28, 28), np.float32)),
     prepare_step, r"breastmnist\.npz:test_images: images must be uint8, found float32"),
    ("npz-fewer-labels-than-images", lambda t: npz(t, train_labels=np.zeros((19, 1), np.uint8)),
     prepare_step, r"breastmnist\.npz: train_labels is uint8 \(19, 1\); expected .*\(20, 1\)"),
    ("npz-label-out-of-range", lambda t: npz(t, test_labels=np.full((6, 1), 7, np.uint8)),
     prepare_step, r"breastmnist\.npz: dataset 'bad': label 7 at index \d+ is outside"),
    ("npz-test-split-lacks-a-class", lambda t: npz(t, test_labels=np.zeros((6, 1), np.uint8)),
     prepare_step,
     r"breastmnist\.npz: dataset 'bad': split 'test' has no example of class\(es\) \['normal"),
    # Image files
    ("image-not-an-image", lambda t: folder(t, lambda r: (r / "a/x.png").write_text("text")),
     prepare_step, r"imgs/a/x\.png: not an image file"),
    ("image-truncated-png", lambda t: folder(t, lambda r: truncatedpng(r / "b/n.png")),
     prepare_step, r"imgs/b/n\.png: corrupt or truncated image \(image file is truncated"),
    ("image-bomb-past-pillow-limit",
     lambda t: folder(t, lambda r: declaredpng(r / "a/bomb.png", 50_000, 50_000)),
     prepare_step, r"imgs/a/bomb\.png: refused, more than 64,000,000 pixels"),
    ("image-bomb-past-our-limit",
     lambda t: folder(t, lambda r: declaredpng(r / "a/bomb.png", 9_000, 9_000)),
     prepare_step, r"imgs/a/bomb\.png: refused, more than 64,000,000 pixels"),
    ("imagefolder-empty-class", lambda t: folder(t, lambda r: (r / "c").mkdir()), prepare_step,
     r"imgs/c: class folder holds no image files"),
    ("imagefolder-link-outside-root",
     lambda t: folder(t, lambda r: (r / "a/l.png").symlink_to(png(t / "secret.png"))),
     prepare_step, r"imgs/a/l\.png: refused, it resolves outside the data root"),
    # CSV manifests
    ("csv-path-with-dotdot", lambda t: csv(t, "../outside.png,b,train"), prepare_step,
     r"labels\.csv:3: path '\.\./outside\.png' leaves the data root"),
    ("csv-absolute-path", lambda t: csv(t, f"{t / 'outside.png'},b,train"), prepare_step,
     r"labels\.csv:3: absolute path '/\S+/outside\.png' refused"),
    ("csv-link-outside-root", lambda t: csv(t, "link.png,b,train"), prepare_step,
     r"labels\.csv:3: path 'link\.png' leaves the data root"),
    ("csv-row-without-label", lambda t: csv(t, "b/0.png"), prepare_step,
     r"labels\.csv:3: the row needs a path and a label"),
    ("csv-not-text", lambda t: csv(t, data=b"\xff\xfe\x00binary"), prepare_step,
     r"labels\.csv: not a readable UTF-8 CSV file"),
    ("csv-test-split-lacks-a-class",
     lambda t: csv(t, "a/1.png,a,val", "a/2.png,a,test", "b/0.png,b,train", "b/1.png,b,val"),
     prepare_step, r"labels\.csv: dataset 'bad': split 'test' has no example of class\(es\) \['b"),
    # Backbone weights
    ("weights-pickle-payload", lambda t: weights(t, "evil.pth", pickled), backbone_step,
     r"evil\.pth: refused; it is corrupt or holds pickled objects other than tensors"),
    ("weights-pickle-payload-in-torch-zip",
     lambda t: weights(t, "evil.bin", lambda p: torch.save({"w": Payload()}, p)), backbone_step,
     r"evil\.bin: refused; it is corrupt or holds pickled objects other than tensors"),
    ("weights-truncated", lambda t: weights(t, "w.safetensors", truncated), backbone_step,
     r"w\.safetensors: corrupt safetensors file"),
    ("weights-other-architecture",
     lambda t: weights(t, "w.safetensors", lambda p: tiny_weights(p, embed_dim=48)), backbone_step,
     r"w\.safetensors: weights do not fit backbone 'VisionTransformer' \(shape: "),
    ("weights-sha256-mismatch",
     lambda t: weights(t, "w.pth", tiny_weights, sha256="0" * 64), backbone_step,
     r"w\.pth: sha256 is [0-9a-f]{64}, but backbone\.sha256 says 0{64}"),
    # Params files
    ("params-wrong-type", lambda t: overlay(t, {"finetune": {"lr": "fast"}}), params_step,
     r"bad\.yaml: key 'finetune\.lr': 'fast' is refused: input should be a valid number"),
    ("params-unknown-key", lambda t: overlay(t, {"finetune": {"lrr": 0.1}}), params_step,
     r"bad\.yaml: key 'finetune\.lrr': unknown key \(did you mean 'lr'\?\)"),
    *(
        (f"params-dataset-named-{name!r}", lambda t, n=name: named_dataset(t, n), params_step,
         rf"bad\.yaml: key 'datasets\.[^']+': the name {re.escape(repr(name))} is refused")
        for name in HOSTILE_NAMES
    ),
    ("params-method-in-grid-named-$(touch pwned)",
     lambda t: overlay(t, {"grid": {"methods": ["$(touch pwned)"]}}), params_step,
     r"bad\.yaml: key 'grid\.methods\.0': the name '\$\(touch pwned\)' is refused"),
]
# fmt: on


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize(
    ("build", "step", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_stops_with_one_line_naming_the_culprit_and_leaves_nothing(in_tmp, build, step, expected):
    inputs = build(in_tmp)
    before = _files(in_tmp)
    out = in_tmp / "results" / "out"
    with pytest.raises(ShpeftError) as info:
        step(inputs, out)
    message = str(info.value)
    assert re.search(expected, message), message
    assert "\n" not in message
    assert not out.exists()
    assert not (in_tmp / "pwned").exists()  # no pickled code ran
    assert _files(in_tmp) == before  # no output, no temporary file
    assert not list(in_tmp.rglob("*.tmp"))


def test_workflow_wildcards_refuse_hostile_names():
    """A name that slipped past the params check still could not form a rule's path or command:
    Snakemake's wildcard constraints and the command line's options both use `dag.WILDCARDS`."""
    from shpeft import dag

    for wildcard in ("dataset", "method", "variant"):
        assert re.fullmatch(dag.WILDCARDS[wildcard], "tiny_us-2"), wildcard
        for name in HOSTILE_NAMES:
            assert not re.fullmatch(dag.WILDCARDS[wildcard], name), (wildcard, name)
    assert "**dag.WILDCARDS" in (ROOT / "workflow" / "rules" / "common.smk").read_text()
