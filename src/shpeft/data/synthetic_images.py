"""Synthetic stand-ins for medical image classification datasets, so the demo runs offline.

Each kind mimics one modality (breast ultrasound, chest X-ray, dermoscopy) plus a generic source
domain (`shapes`) for pretraining the demo backbone. Images are drawn in batches with numpy only.

The class signal is spatial by construction: lesion sizes and positions come from overlapping
ranges, every image gets a random contrast curve, and each channel is then standardised to a mean
and standard deviation drawn from one class-independent distribution, so global intensity and
colour statistics carry (almost) no information about the label.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft

KINDS: dict[str, tuple[str, ...]] = {
    "ultrasound": ("benign", "malignant", "normal"),
    "xray": ("normal", "pneumonia", "effusion"),
    "dermoscopy": ("nevus", "melanoma", "keratosis"),
    "shapes": (
        "disk",
        "square",
        "triangle",
        "ring",
        "cross",
        "horizontal_stripes",
        "vertical_stripes",
        "checkerboard",
    ),
}
#: Images are drawn in batches of this many; a constant, so output never depends on the machine.
_CHUNK = 256
_MIN_SIZE = 16
_ANGLES = 360  # resolution of the tabulated border of irregular blobs

Array = np.ndarray
Rng = np.random.Generator


# ---------------------------------------------------------------------------------------------
# Primitives. Coordinates are in image units (0..1); per-image parameters have shape (n, 1, 1)
# so they broadcast against the (size, 1) and (1, size) grids to (n, size, size).


def _u(rng: Rng, low: float, high: float, n: int) -> Array:
    """n per-image uniform draws, shaped to broadcast over images."""
    return rng.uniform(low, high, n).astype(np.float32)[:, None, None]


def _grid(size: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates: y as a column and x as a row, both in 0..1."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return c[:, None], c[None, :]


def _step(x: Array, width: float | Array) -> Array:
    """A linear ramp from 0 (x <= -width/2) to 1 (x >= width/2): a soft-edged threshold."""
    return np.clip(0.5 + x / width, 0.0, 1.0)


def _rotate(yy: Array, xx: Array, cy: Array, cx: Array, angle: Array) -> tuple[Array, Array]:
    """Coordinates (u along, v across) in a frame centred on (cy, cx) and turned by angle."""
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * cos + dy * sin, dy * cos - dx * sin


def _ellipse(yy: Array, xx: Array, cy: Array, cx: Array, ry: Array, rx: Array, angle: Array
             ) -> tuple[Array, Array]:
    """Normalised radius (1 on the border of the turned ellipse) and polar angle of each pixel."""
    u, v = _rotate(yy, xx, cy, cx, angle)
    a, b = u / rx, v / ry
    return np.sqrt(a * a + b * b), np.arctan2(b, a)


def _blob(rng: Rng, yy: Array, xx: Array, cy: Array, cx: Array, ry: Array, rx: Array,
          angle: Array, wobble: Array) -> Array:
    """Normalised radius of an ellipse whose border is modulated by radial noise: < 1 inside.

    wobble[:, k] is the largest relative amplitude of the border harmonic k + 1; amplitudes and
    phases are drawn at random. The border is tabulated over angles, then looked up per pixel.
    """
    n, harmonics = wobble.shape
    table = np.linspace(-np.pi, np.pi, _ANGLES, endpoint=False)[None, :, None]
    k = np.arange(1, harmonics + 1)
    amplitude = wobble * rng.uniform(0, 1, (n, harmonics))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, harmonics))
    border = 1 + (amplitude[:, None, :] * np.cos(k * table + phase)).sum(axis=-1)
    radius, theta = _ellipse(yy, xx, cy, cx, ry, rx, angle)
    index = np.rint((theta + np.pi) * (_ANGLES / (2 * np.pi))).astype(np.intp) % _ANGLES
    border = np.take_along_axis(border, index.reshape(n, -1), axis=1).reshape(radius.shape)
    return radius / np.maximum(border, 0.2).astype(np.float32)


def _blur(field: Array, sigma_y: float, sigma_x: float) -> Array:
    """Periodic Gaussian blur of each image in a batch (sigmas in pixels), via the FFT."""
    size = field.shape[-1]
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    gain = np.exp(-2.0 * np.pi**2 * ((sigma_y * fy) ** 2 + (sigma_x * fx) ** 2))
    return fft.irfft2(fft.rfft2(field) * gain.astype(np.float32), s=(size, size))


def _noise(rng: Rng, n: int, size: int, sigma: float, stretch: float = 1.0) -> Array:
    """Smooth Gaussian noise, unit std per image; sigma in image units, stretch widens along x."""
    white = rng.standard_normal((n, size, size), dtype=np.float32)
    field = _blur(white, sigma * size, sigma * size * stretch)
    field -= field.mean(axis=(1, 2), keepdims=True)
    return field / (field.std(axis=(1, 2), keepdims=True) + 1e-6)


def _speckle(rng: Rng, n: int, size: int, sigma: float, looks: int = 2) -> Array:
    """Speckle: magnitudes of smoothed complex Gaussian fields (Rayleigh), laterally wide,
    averaged in power over a few looks as spatial compounding does."""
    power = sum(_noise(rng, n, size, sigma, 2.0) ** 2 for _ in range(2 * looks))
    amplitude = np.sqrt(power)
    return amplitude / amplitude.mean(axis=(1, 2), keepdims=True)


def _line(yy: Array, xx: Array, cy: Array, cx: Array, angle: Array, bend: Array,
          width: float, size: int) -> Array:
    """A gently curved line through (cy, cx) with a Gaussian profile, intensity in 0..1."""
    u, v = _rotate(yy, xx, cy, cx, angle)
    drawn = max(width, 0.6 / size)  # thinner than a pixel: draw wider but fainter
    return (width / drawn) * np.exp(-(((v - bend * u * u) / drawn) ** 2))


def _hairs(rng: Rng, yy: Array, xx: Array, n: int, size: int, count: int) -> Array:
    """Up to `count` hair-like dark curves per image (each present with probability 1/2)."""
    hair = np.zeros((n, size, size), np.float32)
    for _ in range(count):
        present = _u(rng, 0, 1, n) < 0.5
        line = _line(yy, xx, _u(rng, 0, 1, n), _u(rng, 0, 1, n), _u(rng, 0, np.pi, n),
                     _u(rng, -1, 1, n), float(rng.uniform(0.004, 0.01)), size)
        hair = np.maximum(hair, present * line)
    return hair


def _dots(rng: Rng, n: int, size: int, per_area: Array, radius: float) -> Array:
    """Random small round dots, about per_area of them per unit image area, peak 1."""
    centres = rng.random((n, size, size), dtype=np.float32) < per_area / size**2
    sigma_px = max(radius * size, 0.5)
    spots = _blur(centres.astype(np.float32), sigma_px, sigma_px)
    return np.clip(spots * 2 * np.pi * sigma_px**2, 0, 1)


def _standardise(rng: Rng, image: Array, mean: Array, std: Array) -> Array:
    """Random contrast curve, then each channel to the given mean and std: uint8 (n, S, S, 3).

    image is (n, S, S) for grayscale (replicated to RGB) or (n, S, S, 3); mean and std are (n, C).
    """
    if image.ndim == 3:
        image = image[..., None]
    n = image.shape[0]
    low = image.min(axis=(1, 2, 3), keepdims=True)
    high = image.max(axis=(1, 2, 3), keepdims=True)
    gamma = np.exp(rng.normal(0.0, 0.3, n)).astype(np.float32)[:, None, None, None]
    image = ((image - low) / (high - low + 1e-6)) ** gamma
    image = image - image.mean(axis=(1, 2), keepdims=True)
    image /= image.std(axis=(1, 2), keepdims=True) + 1e-6
    image = image * std[:, None, None, :] + mean[:, None, None, :]
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.broadcast_to(image, (*image.shape[:3], 3))


def _gray_tone(rng: Rng, n: int, mean: tuple[float, float], std: tuple[float, float]
               ) -> tuple[Array, Array]:
    return rng.uniform(*mean, (n, 1)), rng.uniform(*std, (n, 1))


# ---------------------------------------------------------------------------------------------
# Kinds. Each draws a batch of images for the given labels and returns uint8 (n, S, S, 3).


def _ultrasound(rng: Rng, labels: Array, size: int) -> Array:
    n = len(labels)
    yy, xx = _grid(size)
    benign, malignant = [(labels == KINDS["ultrasound"].index(c))[:, None, None]
                         for c in ("benign", "malignant")]
    # Tissue layers: bright skin line, darker subcutaneous fat, brighter wavy glandular tissue.
    wave = 0.04 * np.sin(2 * np.pi * (_u(rng, 0.5, 2.0, n) * xx + _u(rng, 0, 1, n)))
    echo = 0.5 + 0.5 * _step(yy - _u(rng, 0.15, 0.35, n) - wave, 0.08)
    echo += np.exp(-(((yy - _u(rng, 0.03, 0.08, n)) / 0.015) ** 2))
    echo *= np.exp(0.25 * _noise(rng, n, size, 0.05))
    # Hypoechoic lesion: smooth, wider-than-tall oval (benign) or spiculated taller-than-wide.
    cy, cx, radius = _u(rng, 0.45, 0.7, n), _u(rng, 0.3, 0.7, n), _u(rng, 0.1, 0.18, n)
    aspect = np.where(malignant, _u(rng, 0.95, 1.5, n), _u(rng, 0.45, 0.85, n))
    ry, rx = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    harmonics = np.arange(1, 17)
    wobble = np.where(malignant[:, :, 0], 0.12, 0.08 * (harmonics <= 2))
    dist = _blob(rng, yy, xx, cy, cx, ry, rx, _u(rng, -0.3, 0.3, n), wobble)
    lesion = (benign | malignant) * _step(1 - dist, np.where(malignant, 0.3, 0.12))
    echo *= 1 - _u(rng, 0.6, 0.85, n) * lesion
    # Posterior acoustic enhancement (benign) or shadowing (malignant) below the lesion.
    column = _step(0.7 * rx - np.abs(xx - cx), 0.1) * _step(yy - cy, 0.1) * (1 - lesion)
    posterior = np.where(malignant, -_u(rng, 0.3, 0.6, n), _u(rng, 0.3, 0.8, n))
    echo *= 1 + (benign | malignant) * posterior * column
    # Depth attenuation, speckle, log compression.
    echo *= np.exp(-_u(rng, 0.3, 1.5, n) * yy)
    echo *= _speckle(rng, n, size, 0.6 / min(size, 64))
    image = np.log1p(_u(rng, 2, 6, n) * echo)
    return _standardise(rng, image, *_gray_tone(rng, n, (60, 110), (35, 55)))


def _xray(rng: Rng, labels: Array, size: int) -> Array:
    n = len(labels)
    yy, xx = _grid(size)
    pneumonia, effusion = [(labels == KINDS["xray"].index(c))[:, None, None]
                           for c in ("pneumonia", "effusion")]
    cx = _u(rng, 0.46, 0.54, n)
    # Body: soft tissue inside a wide rounded silhouette, dark air outside, spine in the middle.
    body = _step(1 - ((xx - cx) / _u(rng, 0.42, 0.5, n)) ** 4 - ((yy - 0.65) / 0.75) ** 4, 0.15)
    density = 0.15 + 0.6 * body + 0.12 * _step(0.035 - np.abs(xx - cx), 0.02)
    # Lungs: two fields, wider towards the domed diaphragm; side -1 is image left.
    half_gap, cy = _u(rng, 0.17, 0.21, n), _u(rng, 0.4, 0.46, n)
    ry, rx = _u(rng, 0.3, 0.36, n), _u(rng, 0.12, 0.15, n)
    lungs, thorax = [], []
    for side in (-1, 1):
        across = (xx - cx - side * half_gap) / (rx * (0.85 + 0.25 * (yy - cy) / ry))
        dist = across**2 + ((yy - cy) / ry) ** 2
        dome = cy + ry * (0.75 - 0.2 * (1 - across**2))
        lungs.append(_step(1 - dist, 0.25) * _step(dome - yy, 0.04))
        thorax.append(_step(1.5 - dist, 0.3))
    # Opacities replace the air of a lung: heart shadow; pathology in one lung.
    heart = _ellipse(yy, xx, cy + 0.6 * ry, cx + _u(rng, 0.03, 0.08, n), _u(rng, 0.1, 0.14, n),
                     _u(rng, 0.13, 0.17, n), _u(rng, -0.3, 0.1, n))[0]
    side = np.where(_u(rng, 0, 1, n) < 0.5, -1, 1)
    lcx = cx + side * half_gap
    # Pneumonia: patchy consolidation around a random point of the lung.
    py, px = cy + _u(rng, -0.4, 0.6, n) * ry, lcx + _u(rng, -0.4, 0.4, n) * rx
    envelope = np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * _u(rng, 0.06, 0.1, n) ** 2))
    patches = envelope * np.clip(0.6 + 0.8 * _noise(rng, n, size, 0.025), 0, 1)
    # Effusion: homogeneous opacity of the lung base, meniscus rising towards the chest wall.
    lateral = side * (xx - lcx) / rx
    level = cy + _u(rng, 0.25, 0.55, n) * ry - _u(rng, 0.06, 0.12, n) * (lateral + 1) ** 2
    fluid = _step(yy - level, 0.03)
    sick = pneumonia * _u(rng, 0.6, 0.9, n) * patches + effusion * _u(rng, 0.8, 0.95, n) * fluid
    for i, s in enumerate((-1, 1)):
        opacity = np.maximum(_step(1 - heart, 0.2), (side == s) * sick)
        markings = 1 + 0.15 * _noise(rng, n, size, 0.02)
        density -= 0.45 * lungs[i] * (1 - opacity) * markings
    # Ribs curving down laterally, seen over the thorax.
    period = _u(rng, 0.075, 0.095, n)
    arc = yy - 0.5 * (xx - cx) ** 2 - _u(rng, 0, 1, n) * period
    ribs = np.clip(3 * np.cos(2 * np.pi * arc / period) - 1.5, 0, 1)
    density += 0.1 * ribs * np.maximum(*thorax) * _step(cy + 0.8 * ry - yy, 0.05)
    density += 0.02 * rng.standard_normal(density.shape, dtype=np.float32)
    return _standardise(rng, density, *_gray_tone(rng, n, (90, 130), (40, 60)))


_PIGMENTS = np.array(  # RGB reflectance of typical dermoscopic colours, shared by all classes
    [[0.45, 0.28, 0.18], [0.62, 0.42, 0.30], [0.20, 0.14, 0.12], [0.42, 0.45, 0.55],
     [0.70, 0.38, 0.36]], np.float32)


def _dermoscopy(rng: Rng, labels: Array, size: int) -> Array:
    n = len(labels)
    yy, xx = _grid(size)
    nevus, melanoma, keratosis = [(labels == i)[:, None, None, None] for i in range(3)]
    # Skin: tone, mottling, vignetting of the dermatoscope's round field.
    skin = _u(rng, 0.8, 1.0, n)[..., None] * np.array([0.9, 0.68, 0.58], np.float32)
    image = skin * (1 + 0.04 * _noise(rng, n, size, 0.03)[..., None])
    # Palette: three pigments per image, drawn identically whatever the class.
    palette = _PIGMENTS[rng.choice(len(_PIGMENTS), (n, 3), p=[0.35, 0.3, 0.15, 0.1, 0.1])]
    palette *= rng.uniform(0.85, 1.15, (n, 3, 3)).astype(np.float32)
    base, second, third = (palette[:, i, None, None, :] for i in range(3))
    # Lesion outline: round and smooth (nevus), oval stuck-on (keratosis), asymmetric notched.
    cy, cx, radius = _u(rng, 0.4, 0.6, n), _u(rng, 0.4, 0.6, n), _u(rng, 0.2, 0.3, n)
    aspect = np.where(keratosis[..., 0], _u(rng, 0.55, 0.85, n), _u(rng, 0.75, 1.0, n))
    harmonics = np.arange(1, 11)
    wobble = np.where(melanoma[:, :, 0, 0], 0.3 / harmonics, 0.06 * (harmonics <= 3))
    dist = _blob(rng, yy, xx, cy, cx, radius * np.sqrt(aspect), radius / np.sqrt(aspect),
                 _u(rng, 0, np.pi, n), wobble)
    lesion = _step(1 - dist, np.where(keratosis[..., 0], 0.06, 0.15))[..., None]
    # Pigment: nevus uniform with a darker centre; melanoma blotches of other colours, eccentric;
    # keratosis cerebriform furrows, milia-like bright dots and comedo-like dark openings.
    shade = np.clip(1 - dist, 0, 1)[..., None]
    pigment = base * (1.1 - 0.2 * shade)
    blotch2 = _step(_noise(rng, n, size, 0.05) - 0.3, 0.6)[..., None]
    blotch3 = _step(_noise(rng, n, size, 0.05) - 0.5, 0.6)[..., None]
    tilt = _rotate(yy, xx, cy, cx, _u(rng, 0, 2 * np.pi, n))[0][..., None] / radius[..., None]
    mixed = base + (second - base) * blotch2
    mixed = (mixed + (third - mixed) * blotch3) * (1 - 0.25 * np.clip(tilt, -1, 1))
    furrows = _step(0.35 - np.abs(_noise(rng, n, size, 0.025)), 0.3)[..., None]
    milia = _dots(rng, n, size, _u(rng, 60, 140, n), 0.012)[..., None]
    comedo = _dots(rng, n, size, _u(rng, 20, 60, n), 0.015)[..., None]
    cerebriform = base * (1 - 0.45 * furrows) * (1 - 0.6 * comedo)
    cerebriform += (0.95 - cerebriform) * milia
    pigment = np.where(melanoma, mixed, np.where(keratosis, cerebriform, pigment))
    image += (pigment - image) * lesion
    image *= 1 - 0.85 * _hairs(rng, yy, xx, n, size, 4)[..., None]
    rho = np.hypot(yy - 0.5, xx - 0.5)
    image *= (0.1 + 0.9 * _step(_u(rng, 0.55, 0.9, n) - rho, 0.08))[..., None]
    mean = rng.uniform(150, 200, (n, 1)) * np.array([1.0, 0.75, 0.68]) + rng.normal(0, 8, (n, 3))
    std = rng.uniform(25, 45, (n, 1)) * rng.uniform(0.9, 1.1, (n, 3))
    return _standardise(rng, image, mean, std)


def _shapes(rng: Rng, labels: Array, size: int) -> Array:
    n = len(labels)
    yy, xx = _grid(size)
    # Textured background and a contrasting foreground colour.
    back = rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
    fore = rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32)
    close = np.abs(fore - back).sum(axis=-1, keepdims=True) < 0.6
    fore = np.where(close, 1 - back, fore)
    texture = _noise(rng, n, size, float(rng.uniform(0.01, 0.06)))[..., None]
    back = back + 0.15 * texture * rng.uniform(-1, 1, (n, 1, 1, 3)).astype(np.float32)
    # Shape as a signed distance (normalised units, < 0 inside) in a rotated frame.
    cy, cx, r = _u(rng, 0.3, 0.7, n), _u(rng, 0.3, 0.7, n), _u(rng, 0.15, 0.3, n)
    u, v = _rotate(yy, xx, cy, cx, _u(rng, 0, 2 * np.pi, n))
    au, av = np.abs(u), np.abs(v)
    corners = [u * np.cos(a) + v * np.sin(a) for a in (np.pi / 2, np.pi * 7 / 6, np.pi * 11 / 6)]
    period = _u(rng, 0.1, 0.2, n)
    along_x, along_y = _rotate(yy, xx, cy, cx, _u(rng, -0.15, 0.15, n))
    patch = np.maximum(np.abs(along_x), np.abs(along_y)) - 1.5 * r
    wave = period / (2 * np.pi)
    distances = [
        np.hypot(u, v) - r,  # disk
        np.maximum(au, av) - 0.85 * r,  # square
        np.maximum(np.maximum(*corners[:2]), corners[2]) - 0.5 * r,  # triangle
        np.abs(np.hypot(u, v) - 0.75 * r) - 0.25 * r,  # ring
        np.minimum(np.maximum(au - r, av - 0.3 * r), np.maximum(av - r, au - 0.3 * r)),  # cross
        np.maximum(patch, -np.sin(2 * np.pi * along_y / period) * wave),  # horizontal stripes
        np.maximum(patch, -np.sin(2 * np.pi * along_x / period) * wave),  # vertical stripes
        np.maximum(patch, -np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period) * wave),
    ]
    sd = np.choose(labels[:, None, None], distances)
    alpha = _step(-sd * size, 1.0)[..., None]
    image = back + (fore - back) * alpha
    mean = rng.uniform(60, 190, (n, 3))
    return _standardise(rng, image, mean, rng.uniform(25, 60, (n, 3)))


_DRAW: dict[str, Callable[[Rng, Array, int], Array]] = {
    "ultrasound": _ultrasound,
    "xray": _xray,
    "dermoscopy": _dermoscopy,
    "shapes": _shapes,
}


def generate(kind: str, n: int, image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return images uint8 (n, image_size, image_size, 3) and labels int64 (n,).

    Classes are balanced (round-robin, then shuffled); the output is fully determined by
    (kind, n, image_size, seed).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind '{kind}' (known: {', '.join(sorted(KINDS))})")
    classes = KINDS[kind]
    if n < len(classes):
        raise ValueError(f"n={n} is less than the {len(classes)} classes of kind '{kind}'")
    if image_size < _MIN_SIZE:
        raise ValueError(f"image_size={image_size} is below the minimum of {_MIN_SIZE}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(classes)).astype(np.int64)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    for start in range(0, n, _CHUNK):
        images[start : start + _CHUNK] = _DRAW[kind](rng, labels[start : start + _CHUNK],
                                                     image_size)
    return images, labels
