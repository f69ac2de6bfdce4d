"""Decoding image files and converting them explicitly to RGB uint8 at a fixed size.

Conversions (documented in the README): grayscale (L, 1-bit) is replicated over R, G and B;
16-bit and 32-bit grayscale are mapped linearly from their full range (0..65535) to 0..255;
palette images go through their palette; RGBA and LA are composited over black; CMYK and YCbCr
are converted with Pillow's standard formulas. Resizing uses Pillow's antialiased bicubic filter.
"""

from __future__ import annotations

import io
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shpeft.errors import ShpeftError

#: Refuse decompression bombs: an image with more pixels than this is an error, not a warning.
MAX_PIXELS = 64_000_000
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class ZipMember:
    """An image inside a zip archive, read without unpacking the archive."""

    archive: Path
    member: str

    def __str__(self) -> str:
        return f"{self.archive}:{self.member}"

    def as_path(self) -> Path:
        """Where the member would lie were the archive unpacked beside itself (what a
        `group_pattern` is matched against, so that it fits both layouts)."""
        return self.archive.parent / self.member

    def read(self) -> io.BytesIO:
        try:
            with zipfile.ZipFile(self.archive) as archive:
                return io.BytesIO(archive.read(self.member))
        except (OSError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as exc:
            # damaged deflate data, Deflate64 (which zipfile cannot read), an encrypted member
            raise ShpeftError(f"{self}: cannot be read from the archive ({exc})") from None


ImageFile = Path | ZipMember


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, explicitly and without per-image normalisation."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        scaled = np.clip(array / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(scaled, mode="L")
    elif mode == "F":
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), mode="L")
    elif mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def resize(image: Image.Image, size: int) -> np.ndarray:
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(image, dtype=np.uint8)


def read_image(path: ImageFile, size: int) -> np.ndarray:
    """Decode one file to an RGB uint8 array of shape (size, size, 3), or fail naming the file.

    The pixel limit is checked from the header, before decoding, without changing Pillow's global
    limit (whose warning, for sizes past it, is an error here too).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path.read() if isinstance(path, ZipMember) else path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise Image.DecompressionBombError(path)
                image.load()
                return resize(to_rgb(image), size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ShpeftError(f"{path}: refused, more than {MAX_PIXELS:,} pixels") from None
    except UnidentifiedImageError:
        raise ShpeftError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ShpeftError(f"{path}: corrupt or truncated image ({exc})") from None


def check_array(dtype: np.dtype, shape: tuple[int, ...], origin: str) -> None:
    """Refuse a stack of images that `array_to_rgb` cannot convert, before reading it."""
    if dtype != np.uint8:
        raise ShpeftError(f"{origin}: images must be uint8, found {dtype}")
    if len(shape) != 3 and not (len(shape) == 4 and shape[-1] in (1, 3)):
        raise ShpeftError(f"{origin}: expected images shaped (N, H, W[, 1|3]), found {shape}")


def array_to_rgb(images: np.ndarray, size: int, origin: str) -> np.ndarray:
    """Convert a stack of uint8 images (N, H, W) or (N, H, W, 1|3) to (N, size, size, 3)."""
    check_array(images.dtype, images.shape, origin)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.shape[1:3] == (size, size):
        return np.ascontiguousarray(images)
    return np.stack([resize(Image.fromarray(image), size) for image in images])
