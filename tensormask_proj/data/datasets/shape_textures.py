"""
Textures of the embedded "shapes" dataset: backgrounds and object fills.

Both are random mixtures of flat colour, gradients, stripes, checkers and smooth noise, in the
proportions of a ``SceneStyle``: with the "stress" style's mixture neither a colour threshold nor
an edge detector alone separates objects from the background. Every texture
is a pure function of its parameters and of image coordinates, which keeps stripes continuous
across crops and the whole dataset reproducible from a seed.

Arrays are float32 (H, W, 3) in [0, 255], channel order BGR (as written by cv2).
"""

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

from .shape_style import SceneStyle

__all__ = [
    "FillStyle",
    "smooth_noise",
    "make_background",
    "sample_fill",
    "render_fill",
    "pick_contrasting_color",
    "finish_image",
    "mean_color",
]

# Patterns a fill or background may use.
_PATTERNS = ("flat", "gradient", "stripes", "checker", "noise")


@dataclass
class FillStyle:
    """
    Parameters of one texture. ``color_a``/``color_b``: (3,) BGR in [0, 255]; ``pattern`` one of
    "flat", "gradient", "stripes", "checker", "noise"; ``period`` (px) and ``angle`` (radians) of
    stripes/checkers/gradients; ``noise_seed`` seeds the smooth-noise field of "noise".
    """

    pattern: str
    color_a: np.ndarray
    color_b: np.ndarray
    period: float
    angle: float
    noise_seed: int


def smooth_noise(
    rng: np.random.Generator, height: int, width: int, cell: float, channels: int = 1
) -> np.ndarray:
    """(height, width) (or (height, width, channels)) float32 noise in [0, 1] with features of
    about ``cell`` px: a coarse uniform grid, upsampled bicubically."""
    gh = int(np.ceil(height / cell)) + 1
    gw = int(np.ceil(width / cell)) + 1
    grid = rng.random((gh, gw, channels), dtype=np.float32)
    up = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(up.reshape(height, width, channels).squeeze(-1) if channels == 1 else up, 0, 1)


def _pattern_weight(style: FillStyle, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Blend weight in [0, 1] between color_a (0) and color_b (1) at image coordinates."""
    u = xs * np.cos(style.angle) + ys * np.sin(style.angle)
    if style.pattern == "flat":
        return np.zeros(np.broadcast(ys, xs).shape, dtype=np.float32)
    if style.pattern == "gradient":
        return ((np.sin(u * (np.pi / style.period)) + 1) / 2).astype(np.float32)
    if style.pattern == "stripes":
        return (np.floor(u / style.period) % 2).astype(np.float32)
    if style.pattern == "checker":
        v = -xs * np.sin(style.angle) + ys * np.cos(style.angle)
        return ((np.floor(u / style.period) + np.floor(v / style.period)) % 2).astype(np.float32)
    raise ValueError(f"Unknown texture pattern {style.pattern!r}; expected one of {_PATTERNS}")


def render_fill(style: FillStyle, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """The texture of ``style`` on the pixel window [y0, y1) x [x0, x1): (y1-y0, x1-x0, 3)."""
    h, w = y1 - y0, x1 - x0
    if style.pattern == "noise":
        # The noise field depends only on the style (not on the window), but it is generated for
        # the window's size: fills are only ever rendered once, on the object's own window.
        rng = np.random.default_rng(style.noise_seed)
        weight = smooth_noise(rng, h, w, style.period)
    else:
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        weight = np.broadcast_to(_pattern_weight(style, ys, xs), (h, w))
    a = style.color_a.astype(np.float32)
    b = style.color_b.astype(np.float32)
    return a + weight[..., None] * (b - a)


def pick_contrasting_color(
    rng: np.random.Generator, avoid: np.ndarray, min_distance: float = 70.0
) -> np.ndarray:
    """A random BGR colour at least ``min_distance`` (L2, 0..255 scale) from every row of
    ``avoid`` (M, 3); the farthest of a few tries when no candidate satisfies all of them."""
    best, best_d = None, -1.0
    for _ in range(24):
        c = rng.uniform(0, 255, size=3)
        d = float(np.min(np.linalg.norm(avoid - c, axis=1))) if len(avoid) else np.inf
        if d >= min_distance:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def sample_fill(
    rng: np.random.Generator, avoid: np.ndarray, size: float, style: SceneStyle
) -> FillStyle:
    """
    A random object fill whose main colour contrasts with the colours in ``avoid`` (M, 3)
    (what lies around the object). The second colour is a variation of the first
    (``style.fill_color_variation``), so an object stays one visual unit while its texture
    varies; periods scale with the object size.
    """
    pattern = _PATTERNS[rng.choice(len(_PATTERNS), p=style.fill_pattern_probs)]
    color_a = pick_contrasting_color(rng, avoid, style.min_fill_contrast)
    color_b = np.clip(color_a + rng.normal(0, style.fill_color_variation, size=3), 0, 255)
    period = float(rng.uniform(0.12, 0.4) * max(size, 8.0) + 2.0)
    return FillStyle(
        pattern=pattern,
        color_a=color_a,
        color_b=color_b,
        period=period,
        angle=float(rng.uniform(0, np.pi)),
        noise_seed=int(rng.integers(2**31)),
    )


def make_background(
    rng: np.random.Generator, height: int, width: int, style: SceneStyle
) -> np.ndarray:
    """
    A background: (height, width, 3) float32 BGR in [0, 255]. One base pattern with two colours
    (``style.background_contrast`` apart), overlaid with low-frequency colour noise and a few
    random thin lines (clutter with straight edges, so that edges alone do not mean "object").
    """
    color_a = rng.uniform(0, 255, size=3)
    low, high = style.background_contrast
    color_b = np.clip(color_a + rng.choice([-1.0, 1.0], size=3) * rng.uniform(low, high, 3), 0, 255)
    style_bg = FillStyle(
        pattern=_PATTERNS[rng.choice(len(_PATTERNS), p=style.background_pattern_probs)],
        color_a=color_a,
        color_b=color_b,
        period=float(rng.uniform(6, 60)),
        angle=float(rng.uniform(0, np.pi)),
        noise_seed=int(rng.integers(2**31)),
    )
    bg = render_fill(style_bg, 0, height, 0, width)
    # Mix in colour noise with a random strength: large smooth blotches.
    tint = smooth_noise(rng, height, width, rng.uniform(20, 80), channels=3)
    bg = bg + (tint - 0.5) * rng.uniform(*style.background_tint)
    for _ in range(int(rng.integers(0, style.max_clutter_lines + 1))):
        p0 = (int(rng.integers(width)), int(rng.integers(height)))
        p1 = (int(rng.integers(width)), int(rng.integers(height)))
        color = tuple(float(v) for v in rng.uniform(0, 255, size=3))
        cv2.line(bg, p0, p1, color, thickness=int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return np.clip(bg, 0, 255).astype(np.float32)


def finish_image(rng: np.random.Generator, image: np.ndarray, style: SceneStyle) -> np.ndarray:
    """Photometric finish: smooth illumination gain and sensor noise; returns (H, W, 3) uint8."""
    h, w = image.shape[:2]
    g = style.illumination_gain
    gain = (1 - g) + 2 * g * smooth_noise(rng, h, w, float(rng.uniform(60, 160)))
    sigma = np.float32(rng.uniform(*style.noise_sigma))
    noisy = image * gain[..., None] + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def mean_color(image: np.ndarray, window: Tuple[int, int, int, int]) -> np.ndarray:
    """Mean (3,) colour of ``image`` on the window (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = window
    return image[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
