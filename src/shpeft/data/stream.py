"""Images as a stream of chunks, so that preparing a dataset never holds all of its pixels.

A source hands `prepare` an `ImageStream` (or a plain array, for small generated data); the
prepared `images.npy` is written chunk by chunk through an ordinary file handle (no memory map,
whose written pages would count as the process's memory), and each image's pixels are hashed on
the way for the leakage guard. Peak memory is a few times one chunk of about `CHUNK_BYTES`, plus,
for image files, one decoded original per decoding thread, whatever the dataset's size
(`shpeft bench prepare` measures it on an npz archive).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from shpeft.errors import ShpeftError

#: About this many bytes of prepared pixels are held at once.
CHUNK_BYTES = 16 << 20


def chunk_length(image_size: int, source_bytes: int = 0) -> int:
    """Images per chunk at this side length, or at this many bytes per source image if larger."""
    return max(1, CHUNK_BYTES // max(source_bytes, image_size * image_size * 3))


class ImageStream(ABC):
    """A source's images in order, (n, S, S, 3) uint8 chunks at the target side S."""

    def __init__(self, count: int, image_size: int) -> None:
        self.count, self.image_size = count, image_size

    def __len__(self) -> int:
        return self.count

    @abstractmethod
    def chunks(self) -> Iterator[np.ndarray]:
        """The images in order, at most `chunk_length(image_size)` at a time."""

    @abstractmethod
    def name(self, index: int) -> str:
        """How a message names image `index` (a file, or an array and row)."""


class ArrayImages(ImageStream):
    """Images already in memory, such as generated data."""

    def __init__(self, images: np.ndarray, origin: str) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ShpeftError(
                f"{origin}: images must be (N, S, S, 3) uint8, got {images.dtype} {images.shape}"
            )
        super().__init__(len(images), images.shape[1])
        self.images = images

    def chunks(self) -> Iterator[np.ndarray]:
        step = chunk_length(self.image_size)
        for start in range(0, self.count, step):
            yield self.images[start : start + step]

    def name(self, index: int) -> str:
        return f"image {index}"


def as_stream(images: np.ndarray | ImageStream, origin: str) -> ImageStream:
    return images if isinstance(images, ImageStream) else ArrayImages(images, origin)


def write_images(stream: ImageStream, path: Path) -> list[bytes]:
    """Write `images.npy` (the bytes `numpy.save` writes) chunk by chunk; return each image's
    pixel digest (BLAKE2b, 16 bytes)."""
    size, written, digests = stream.image_size, 0, []
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": (stream.count, size, size, 3),
    }
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for chunk in stream.chunks():
            if chunk.dtype != np.uint8 or chunk.shape[1:] != (size, size, 3):
                raise ShpeftError(
                    f"{stream.name(written)}: decoded as {chunk.dtype} {chunk.shape[1:]}, "
                    f"expected uint8 {(size, size, 3)}"
                )
            chunk = np.ascontiguousarray(chunk)
            digests.extend(hashlib.blake2b(image, digest_size=16).digest() for image in chunk)
            handle.write(chunk.data)
            written += len(chunk)
    if written != stream.count:
        raise ShpeftError(f"{stream.name(0)}: {written} images decoded, {stream.count} expected")
    return digests
