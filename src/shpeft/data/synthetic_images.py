"""Synthetic stand-ins for medical image classification datasets, so the demo runs offline.

Each kind mimics one modality (breast ultrasound, chest X-ray, dermoscopy) plus a generic source
domain (`shapes`) for pretraining the demo backbone. Images are drawn in vectorised batches
with numpy (and scipy.fft for smooth noise, imported where it is used).

The class signal is spatial by construction: lesion sizes and positions come from overlapping
ranges, every image gets a random contrast curve, and each channel is then standardised to a mean
and standard deviation drawn from one class-independent distribution, so global intensity and
colour statistics carry (almost) no information about the label.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

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
#: Images are drawn in batches of about this many pixels (cache-friendly); the batch size depends
#: only on image_size, so the output never depends on the machine.
_CHUNK_PIXELS = 2**16
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
    return np.clip(0.5 + x / np.asarray(width, np.float32), 0.0, 1.0)


def _rotate(yy: Array, xx: Array, cy: Array, cx: Array, angle: Array) -> tuple[Array, Array]:
    """Coordinates (u along, v across) in a frame centred on (cy, cx) and turned by angle."""
    dy, dx = yy - cy, xx - cx
    cos, sin = np.cos(angle), np.sin(angle)
    return dx * cos + dy * sin, dy * cos - dx * sin


def _ellipse(
    yy: Array, xx: Array, cy: Array, cx: Array, ry: Array, rx: Array, angle: Array
) -> tuple[Array, Array]:
    """Normalised radius (1 on the border of the turned ellipse) and polar angle of each pixel."""
    u, v = _rotate(yy, xx, cy, cx, angle)
    a, b = u / rx, v / ry
    return np.sqrt(a * a + b * b), np.arctan2(b, a)


def _blob(rng: Rng, radius: Array, theta: Array, wobble: Array) -> Array:
    """Normalised radius (< 1 inside) of a shape whose border is an ellipse's, radially noisy.

    radius and theta come from `_ellipse`. wobble[:, k] is the largest relative amplitude of the
    border harmonic k + 1; amplitudes and phases are drawn at random. The border is tabulated
    over angles, then looked up per pixel (much cheaper than evaluating harmonics per pixel).
    """
    n, harmonics = wobble.shape
    table = np.linspace(-np.pi, np.pi, _ANGLES, endpoint=False)[None, :, None]
    k = np.arange(1, harmonics + 1)
    amplitude = wobble * rng.uniform(0, 1, (n, harmonics))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, harmonics))
    border = 1 + (amplitude[:, None, :] * np.cos(k * table + phase)).sum(axis=-1)
    index = np.rint((theta + np.pi) * (_ANGLES / (2 * np.pi))).astype(np.intp) % _ANGLES
    border = np.take_along_axis(border, index.reshape(n, -1), axis=1).reshape(radius.shape)
    return radius / np.maximum(border, 0.2).astype(np.float32)


def _gain(size: int, sigma_y: float, sigma_x: float, half: bool = True) -> Array:
    """Transfer function of a Gaussian blur (sigmas in pixels) on the (r)FFT frequency grid."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = (np.fft.rfftfreq if half else np.fft.fftfreq)(size)[None, :]
    return np.exp(-2.0 * np.pi**2 * ((sigma_y * fy) ** 2 + (sigma_x * fx) ** 2))


def _blur(field: Array, sigma_y: float, sigma_x: float) -> Array:
    """Periodic Gaussian blur of each image in a batch (sigmas in pixels), via the FFT."""
    from scipy import fft  # here, not at import: params validation imports this module

    gain = _gain(field.shape[-1], sigma_y, sigma_x).astype(np.float32)
    return fft.irfft2(fft.rfft2(field) * gain, s=field.shape[-2:])


def _noise(rng: Rng, n: int, size: int, sigma: float, stretch: float = 1.0) -> Array:
    """Smooth zero-mean noise of about unit variance; sigma in image units, stretch widens x.

    Blurred uniform white noise (nearly Gaussian once blurred, and much cheaper to draw).
    """
    from scipy import fft

    sigma_y, sigma_x = sigma * size, sigma * size * stretch
    gain = _gain(size, sigma_y, sigma_x)
    gain[0, 0] = 0.0  # zero mean
    power = (np.sum(_gain(size, sigma_y, sigma_x, half=False) ** 2) - 1) / size**2 / 12
    gain = (gain / np.sqrt(power)).astype(np.float32)
    white = rng.random((n, size, size), dtype=np.float32)
    return fft.irfft2(fft.rfft2(white) * gain, s=(size, size))


def _speckle(rng: Rng, n: int, size: int, sigma: float, looks: int = 2) -> Array:
    """Multiplicative speckle of mean 1, grains wider than tall.

    The magnitude of a smoothed complex noise field (about Rayleigh distributed), with the power
    averaged over a few independent looks as spatial compounding does.
    """
    power = sum(_noise(rng, n, size, sigma, 2.0) ** 2 for _ in range(2 * looks))
    amplitude = np.sqrt(power)
    return amplitude / amplitude.mean(axis=(1, 2), keepdims=True)


def _hairs(rng: Rng, yy: Array, xx: Array, n: int, size: int, count: int) -> Array:
    """Up to `count` gently curved hair-like lines per image, intensity 0..1 (tent profile)."""
    hair = np.zeros((n, size, size), np.float32)
    for _ in range(count):
        u, v = _rotate(yy, xx, _u(rng, 0, 1, n), _u(rng, 0, 1, n), _u(rng, 0, np.pi, n))
        width = float(rng.uniform(0.004, 0.01))
        drawn = max(width, 1.0 / size)  # thinner than a pixel: draw wider but fainter
        line = np.clip(1 - np.abs(v - _u(rng, -1, 1, n) * u * u) / drawn, 0, 1)
        present = _u(rng, 0, 1, n) < 0.5
        hair = np.maximum(hair, present * (width / drawn) * line)
    return hair


def _dots(rng: Rng, n: int, size: int, per_area: Array, radius: float) -> Array:
    """Random small round dots, about per_area of them per unit image area, peak 1."""
    centres = rng.random((n, size, size), dtype=np.float32) < per_area / size**2
    sigma_px = max(radius * size, 0.5)
    spots = _blur(centres.astype(np.float32), sigma_px, sigma_px)
    return np.clip(spots * 2 * np.pi * sigma_px**2, 0, 1)


def _standardise(rng: Rng, image: Array, mean: Array, std: Array) -> Array:
    """Random contrast curve, then each channel to the given mean and std: uint8 (n, S, S, 3).

    image is (n, S, S) for grayscale (replicated to RGB) or (n, S, S, 3); mean and std are (n, C)
    and must be drawn independently of the class. Gain and offset need no randomising: the
    standardisation would undo them; the random gamma is what changes the contrast curve.
    """
    n, size = image.shape[:2]
    flat = image.reshape(n, size * size, -1)
    low = flat.min(axis=(1, 2), keepdims=True)
    flat = (flat - low) / (flat.max(axis=(1, 2), keepdims=True) - low + 1e-6)
    np.power(flat, np.exp(rng.normal(0.0, 0.3, (n, 1, 1))).astype(np.float32), out=flat)
    flat -= flat.mean(axis=1, keepdims=True)
    flat *= (std[:, None, :] / (flat.std(axis=1, keepdims=True) + 1e-6)).astype(np.float32)
    flat += mean[:, None, :].astype(np.float32)
    image = np.clip(np.rint(flat), 0, 255).astype(np.uint8).reshape(n, size, size, -1)
    return np.broadcast_to(image, (n, size, size, 3))


def _gray_tone(
    rng: Rng, n: int, mean: tuple[float, float], std: tuple[float, float]
) -> tuple[Array, Array]:
    """Per-image target mean and std of a grayscale image, uniform in the given ranges."""
    return rng.uniform(*mean, (n, 1)), rng.uniform(*std, (n, 1))


# ---------------------------------------------------------------------------------------------
# Kinds. Each draws a batch of images for the given labels and returns uint8 (n, S, S, 3).


def _ultrasound(rng: Rng, labels: Array, size: int) -> Array:
    n = len(labels)
    yy, xx = _grid(size)
    malignant = (labels == KINDS["ultrasound"].index("malignant"))[:, None, None]
    abnormal = (labels != KINDS["ultrasound"].index("normal"))[:, None, None]
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
    dist = _blob(rng, *_ellipse(yy, xx, cy, cx, ry, rx, _u(rng, -0.3, 0.3, n)), wobble)
    lesion = abnormal * _step(1 - dist, np.where(malignant, 0.3, 0.12))
    echo *= 1 - _u(rng, 0.6, 0.85, n) * lesion
    # Posterior acoustic enhancement (benign) or shadowing (malignant) below the lesion.
    column = _step(0.7 * rx - np.abs(xx - cx), 0.1) * _step(yy - cy, 0.1) * (1 - lesion)
    posterior = np.where(malignant, -_u(rng, 0.3, 0.6, n), _u(rng, 0.3, 0.8, n))
    echo *= 1 + abnormal * posterior * column
    # Depth attenuation, speckle, log compression.
    echo *= np.exp(-_u(rng, 0.3, 1.5, n) * yy)
    echo *= _speckle(rng, n, size, 0.6 / min(size, 64))
    image = np.log1p(_u(rng, 2, 6, n) * echo)
    return _standardise(rng, image, *_gray_tone(rng, n, (60, 110), (35, 55)))


def _xray(rng: Rng, labels: Array, size: int) -> Array:
    n = len(labels)
    yy, xx = _grid(size)
    pneumonia, effusion = [
        (labels == KINDS["xray"].index(c))[:, None, None] for c in ("pneumonia", "effusion")
    ]
    cx = _u(rng, 0.46, 0.54, n)
    # Body: soft tissue inside a wide rounded silhouette, dark air outside, spine in the middle.
    body = _step(1 - ((xx - cx) / _u(rng, 0.42, 0.5, n)) ** 4 - ((yy - 0.65) / 0.75) ** 4, 0.15)
    density = 0.15 + 0.6 * body + 0.12 * _step(0.035 - np.abs(xx - cx), 0.02)
    # Lungs: two fields, wider towards the domed diaphragm; side -1 is image left.
    half_gap, cy = _u(rng, 0.17, 0.21, n), _u(rng, 0.4, 0.46, n)
    ry, rx = _u(rng, 0.3, 0.36, n), _u(rng, 0.12, 0.15, n)
    lungs, thorax = [], []
    for sign in (-1, 1):
        across = (xx - cx - sign * half_gap) / (rx * (0.85 + 0.25 * (yy - cy) / ry))
        dist = across**2 + ((yy - cy) / ry) ** 2
        dome = cy + ry * (0.75 - 0.2 * (1 - across**2))
        lungs.append(_step(1 - dist, 0.25) * _step(dome - yy, 0.04))
        thorax.append(_step(1.5 - dist, 0.3))
    # Opacities replace the air of a lung: heart shadow; pathology in one lung.
    heart_y, heart_x = cy + 0.6 * ry, cx + _u(rng, 0.03, 0.08, n)
    heart_ry, heart_rx, tilt = _u(rng, 0.1, 0.14, n), _u(rng, 0.13, 0.17, n), _u(rng, -0.3, 0.1, n)
    heart = _ellipse(yy, xx, heart_y, heart_x, heart_ry, heart_rx, tilt)[0]
    side = np.sign(_u(rng, -1, 1, n))
    lcx = cx + side * half_gap
    # Pneumonia: patchy consolidation around a random point of the lung.
    py, px = cy + _u(rng, -0.4, 0.6, n) * ry, lcx + _u(rng, -0.4, 0.4, n) * rx
    envelope = np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * _u(rng, 0.12, 0.18, n) ** 2))
    patches = envelope * np.clip(0.8 + 0.8 * _noise(rng, n, size, 0.025), 0, 1)
    # Effusion: homogeneous opacity of the lung base, meniscus rising towards the chest wall.
    lateral = side * (xx - lcx) / rx
    level = cy + _u(rng, -0.2, 0.2, n) * ry - _u(rng, 0.06, 0.12, n) * (lateral + 1) ** 2
    fluid = _step(yy - level, 0.03)
    sick = pneumonia * _u(rng, 0.75, 1.0, n) * patches + effusion * _u(rng, 0.8, 0.95, n) * fluid
    for lung, sign in zip(lungs, (-1, 1), strict=True):
        opacity = np.maximum(_step(1 - heart, 0.2), (side == sign) * sick)
        markings = 1 + 0.1 * _noise(rng, n, size, 0.02)  # vessels
        density -= 0.45 * lung * (1 - opacity) * markings
    # Ribs curving down laterally, seen over the thorax.
    period = _u(rng, 0.075, 0.095, n)
    arc = yy - 0.5 * (xx - cx) ** 2 - _u(rng, 0, 1, n) * period
    ribs = np.clip(3 * np.cos(2 * np.pi * arc / period) - 1.5, 0, 1)
    density += 0.1 * ribs * np.maximum(*thorax) * _step(cy + 0.8 * ry - yy, 0.05)
    density += 0.02 * rng.standard_normal(density.shape, dtype=np.float32)
    return _standardise(rng, density, *_gray_tone(rng, n, (90, 130), (40, 60)))


#: RGB of typical dermoscopic colours (light and dark brown, black, blue-grey, red), from which
#: every class draws its palette with the same probabilities.
_PIGMENTS = np.array(
    [
        [0.62, 0.42, 0.30],
        [0.45, 0.28, 0.18],
        [0.20, 0.14, 0.12],
        [0.42, 0.45, 0.55],
        [0.70, 0.38, 0.36],
    ],
    np.float32,
)


def _dermoscopy(rng: Rng, labels: Array, size: int) -> Array:
    n = len(labels)
    yy, xx = _grid(size)
    melanoma, keratosis = [
        (labels == KINDS["dermoscopy"].index(c))[:, None, None] for c in ("melanoma", "keratosis")
    ]
    # Colours: skin, three pigments and white per image, drawn alike whatever the class.
    skin = _u(rng, 0.8, 1.0, n) * np.array([0.9, 0.68, 0.58], np.float32)
    choice = rng.choice(len(_PIGMENTS), (n, 3), p=[0.35, 0.3, 0.15, 0.1, 0.1])
    pigments = _PIGMENTS[choice] * rng.uniform(0.85, 1.15, (n, 3, 3)).astype(np.float32)
    white = np.full((n, 1, 3), 0.95, np.float32)
    colours = np.concatenate([skin, pigments, white], axis=1)
    # Lesion outline: round and smooth (nevus), oval stuck-on (keratosis), asymmetric notched.
    cy, cx, radius = _u(rng, 0.4, 0.6, n), _u(rng, 0.4, 0.6, n), _u(rng, 0.2, 0.3, n)
    aspect = np.where(keratosis, _u(rng, 0.55, 0.85, n), _u(rng, 0.75, 1.0, n))
    harmonics = np.arange(1, 11)
    wobble = np.where(melanoma[:, :, 0], 0.3 / harmonics, 0.06 * (harmonics <= 3))
    ry, rx = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
    dist = _blob(rng, *_ellipse(yy, xx, cy, cx, ry, rx, _u(rng, 0, np.pi, n)), wobble)
    lesion = _step(1 - dist, np.where(keratosis, 0.06, 0.15))
    # Pigment pattern, mixing the palette in class-specific arrangements. Nevus: symmetric, an
    # optional darker centre of the second colour. Melanoma: blotches of the second and third
    # colours, eccentric shading. Keratosis: cerebriform furrows of the second colour, comedo-like
    # openings of the third, milia-like white dots.
    centre = np.clip(1.5 * (1 - dist), 0, 1)
    blotch2 = _step(_noise(rng, n, size, 0.05) - 0.3, 0.6)
    blotch3 = _step(_noise(rng, n, size, 0.05) - 0.5, 0.6)
    furrows = _step(0.35 - np.abs(_noise(rng, n, size, 0.025)), 0.3)
    comedo = _dots(rng, n, size, _u(rng, 20, 60, n), 0.015)
    milia = _dots(rng, n, size, _u(rng, 60, 140, n), 0.012)
    mix2 = np.where(melanoma, blotch2, np.where(keratosis, furrows, _u(rng, 0, 0.7, n) * centre))
    mix3 = np.where(melanoma, blotch3, keratosis * comedo)
    tilt = _rotate(yy, xx, cy, cx, _u(rng, 0, 2 * np.pi, n))[0] / radius
    shade = np.where(melanoma, 1 - 0.25 * np.clip(tilt, -1, 1), 1)
    # White: milia in keratoses, air bubbles or glare anywhere in any image.
    white = np.maximum(keratosis * lesion * milia, _dots(rng, n, size, _u(rng, 0, 30, n), 0.01))
    pigment = lesion * (1 - white) * shade
    mottle = 1 + 0.04 * _noise(rng, n, size, 0.03)
    weights = np.stack(
        [
            (1 - lesion) * (1 - white) * mottle,
            pigment * (1 - mix2) * (1 - mix3),
            pigment * mix2 * (1 - mix3),
            pigment * mix3,
            white,
        ],
        axis=-1,
    )
    # Dark hairs over everything; vignetting of the dermatoscope's round field.
    rim = _step(_u(rng, 0.55, 0.9, n) - np.hypot(yy - 0.5, xx - 0.5), 0.08)
    weights *= ((1 - 0.85 * _hairs(rng, yy, xx, n, size, 4)) * (0.1 + 0.9 * rim))[..., None]
    image = np.matmul(weights.reshape(n, size * size, 5), colours).reshape(n, size, size, 3)
    mean = rng.uniform(150, 200, (n, 1)) * np.array([1.0, 0.75, 0.68]) + rng.normal(0, 8, (n, 3))
    std = rng.uniform(25, 45, (n, 1)) * rng.uniform(0.9, 1.1, (n, 3))
    return _standardise(rng, image, mean, std)


def _patterned(u: Array, v: Array, r: Array, period: Array, wave: Array) -> Array:
    """A square patch of half-side 1.5 r filled by a periodic pattern (wave > 0: background)."""
    return np.maximum(np.maximum(np.abs(u), np.abs(v)) - 1.5 * r, wave * period / (2 * np.pi))


_TRIANGLE = [(math.cos(a), math.sin(a)) for a in (np.pi / 2, np.pi * 7 / 6, np.pi * 11 / 6)]
#: Signed distance (normalised units, < 0 inside) of each shape class, given the turned frame
#: (u, v), the shape's scale r and the period of patterns.
_SHAPE_DISTANCE: dict[str, Callable[[Array, Array, Array, Array], Array]] = {
    "disk": lambda u, v, r, p: np.hypot(u, v) - r,
    "square": lambda u, v, r, p: np.maximum(np.abs(u), np.abs(v)) - 0.85 * r,
    "triangle": lambda u, v, r, p: np.max([u * c + v * s for c, s in _TRIANGLE], axis=0) - r / 2,
    "ring": lambda u, v, r, p: np.abs(np.hypot(u, v) - 0.75 * r) - 0.25 * r,
    "cross": lambda u, v, r, p: np.minimum(
        np.maximum(np.abs(u) - r, np.abs(v) - 0.3 * r),
        np.maximum(np.abs(v) - r, np.abs(u) - 0.3 * r),
    ),
    "horizontal_stripes": lambda u, v, r, p: _patterned(u, v, r, p, -np.sin(2 * np.pi * v / p)),
    "vertical_stripes": lambda u, v, r, p: _patterned(u, v, r, p, -np.sin(2 * np.pi * u / p)),
    "checkerboard": lambda u, v, r, p: _patterned(
        u, v, r, p, -np.sin(2 * np.pi * u / p) * np.sin(2 * np.pi * v / p)
    ),
}


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
    # Shape as a signed distance (< 0 inside) in a frame turned freely, or a little for stripes.
    stripes = np.isin(
        labels, [KINDS["shapes"].index(c) for c in ("horizontal_stripes", "vertical_stripes")]
    )
    angle = np.where(stripes[:, None, None], _u(rng, -0.15, 0.15, n), _u(rng, 0, 2 * np.pi, n))
    u, v = _rotate(yy, xx, _u(rng, 0.3, 0.7, n), _u(rng, 0.3, 0.7, n), angle)
    scale, period = _u(rng, 0.15, 0.3, n), _u(rng, 0.1, 0.2, n)
    sd = np.empty((n, size, size), np.float32)
    for c, name in enumerate(KINDS["shapes"]):
        pick = labels == c
        sd[pick] = _SHAPE_DISTANCE[name](u[pick], v[pick], scale[pick], period[pick])
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
    chunk = max(1, _CHUNK_PIXELS // image_size**2)
    for start in range(0, n, chunk):
        images[start : start + chunk] = _DRAW[kind](rng, labels[start : start + chunk], image_size)
    return images, labels
