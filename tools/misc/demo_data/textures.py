"""Colours, object fill textures and the two-region background.

All functions take a ``numpy.random.Generator`` and return float32 RGB
arrays in ``[0, 255]`` (values may overshoot; the scene clips once at the
end). Nothing here knows about labels.
"""
import colorsys
import math
from typing import Optional, Tuple

import cv2
import numpy as np

__all__ = [
    'random_color', 'sky_color', 'ground_color', 'fill_texture',
    'smooth_noise', 'background'
]

Color = np.ndarray  # float32 array of shape (3,), RGB in [0, 255]


def _hsv_to_rgb(hue: float, sat: float, val: float) -> Color:
    """One HSV colour (all in ``[0, 1]``, hue wraps) to RGB in [0, 255]."""
    rgb = colorsys.hsv_to_rgb(hue % 1.0, min(max(sat, 0.0), 1.0),
                              min(max(val, 0.0), 1.0))
    return np.array(rgb, dtype=np.float32) * 255


def random_color(rng: np.random.Generator,
                 hue: Optional[float] = None) -> Color:
    """Medium to full saturation and value; any hue, or one near ``hue``.

    Args:
        rng: Random stream.
        hue: Centre hue in ``[0, 1)``, jittered by a normal of s.d. 0.03.
            Defaults to None (uniform hue).
    """
    hue = rng.uniform(0, 1) if hue is None else hue + rng.normal(0, 0.03)
    return _hsv_to_rgb(hue, rng.uniform(0.25, 1.0), rng.uniform(0.3, 1.0))


def sky_color(rng: np.random.Generator) -> Color:
    """Light blues, greys and dusk oranges."""
    hue = rng.choice([0.58, 0.6, 0.07, 0.55])
    return _hsv_to_rgb(hue + rng.normal(0, 0.03), rng.uniform(0.05, 0.55),
                       rng.uniform(0.6, 1.0))


def ground_color(rng: np.random.Generator) -> Color:
    """Greens, browns, sand and dark greys."""
    hue = rng.choice([0.25, 0.3, 0.08, 0.11, 0.0])
    return _hsv_to_rgb(hue + rng.normal(0, 0.03), rng.uniform(0.0, 0.7),
                       rng.uniform(0.2, 0.75))


def smooth_noise(rng: np.random.Generator, height: int, width: int,
                 cells: int) -> np.ndarray:
    """Low-frequency noise in about ``[-1, 1]``, ``cells`` bumps per side."""
    grid = rng.normal(0, 1, size=(cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _mix(first: Color, second: Color, weight: np.ndarray) -> np.ndarray:
    weight = weight[..., None].astype(np.float32)
    return first * (1 - weight) + second * weight


def fill_texture(rng: np.random.Generator, height: int, width: int,
                 color: Color, second: Color) -> np.ndarray:
    """A ``(height, width, 3)`` fill: solid, gradient, stripes, checks or
    mottled noise, in ``color`` (and ``second`` for two-colour patterns),
    with a soft shading ramp."""
    kind = rng.choice(['solid', 'gradient', 'stripes', 'checks', 'mottled'],
                      p=[0.4, 0.25, 0.1, 0.05, 0.2])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    along = xx * math.cos(theta) + yy * math.sin(theta)
    if kind == 'solid':
        fill = np.broadcast_to(color, (height, width, 3)).astype(np.float32)
    elif kind == 'gradient':
        span = max(float(along.max() - along.min()), 1.0)
        fill = _mix(color, 0.5 * (color + second),
                    (along - along.min()) / span)
    elif kind == 'stripes':
        period = rng.uniform(3, 9)
        fill = _mix(color, second, (along // period) % 2)
    elif kind == 'checks':
        cell = int(rng.integers(3, 8))
        fill = _mix(color, second, ((xx // cell + yy // cell) % 2))
    else:
        noise = smooth_noise(rng, height, width, int(rng.integers(2, 6)))
        fill = color + 28 * noise[..., None]
    shade = 1 + rng.uniform(-0.25, 0.25) * (along - along.mean()) / max(
        float(np.ptp(along)), 1.0)
    return fill * shade[..., None]


def background(rng: np.random.Generator, height: int,
               width: int) -> Tuple[np.ndarray, np.ndarray]:
    """A sky region above a wavy horizon and a rough ground region below.

    The sky is smooth (a vertical gradient plus faint clouds); the ground
    is rough (fine noise over mid-frequency blotches). With probability
    0.15 the view is top-down: ground only.

    Returns:
        ``(image, is_sky)``: the float RGB image and a bool sky mask.
    """
    yy = np.mgrid[0:height, 0:width][0].astype(np.float32)
    if rng.uniform() < 0.15:
        horizon = np.full(width, -1.0, dtype=np.float32)
    else:
        level = rng.uniform(0.25, 0.65) * height
        amplitude = rng.uniform(0, 0.08) * height
        freq = rng.uniform(0.5, 3) * 2 * math.pi / width
        horizon = level + amplitude * np.sin(
            freq * np.arange(width, dtype=np.float32) + rng.uniform(0, 6.3))
    is_sky = yy < horizon[None, :]

    top, low = sky_color(rng), sky_color(rng)
    sky = _mix(top, low, yy / max(height - 1, 1))
    sky += 10 * smooth_noise(rng, height, width, 3)[..., None]

    base = ground_color(rng)
    ground = base + 22 * smooth_noise(rng, height, width,
                                      int(rng.integers(4, 9)))[..., None]
    ground += rng.normal(0, rng.uniform(8, 20), size=(height, width, 1))
    ground *= (0.8 + 0.3 * yy / max(height - 1, 1))[..., None]
    image = np.where(is_sky[..., None], sky, ground).astype(np.float32)
    return image, is_sky
