"""The shape library: unit geometries, placement, rasterisation.

Every demo set draws its objects from here, once: a :class:`Shape` is rendered
to a boolean mask, and the image pixels, the classification label, the COCO
boxes and polygons and the segmentation maps are all derived from these
masks (see :mod:`demo_data.scene`).
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

__all__ = ['SHAPE_KINDS', 'TYPICAL_HUES', 'Shape', 'unit_geometry']

#: Outer polygons and hole polygons, each an ``(N, 2)`` array of ``(x, y)``.
Geometry = Tuple[List[np.ndarray], List[np.ndarray]]

# Sub-pixel precision of cv2.fillPoly: coordinates are scaled by 2**_SHIFT.
_SHIFT = 4


def _regular(num: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    angles = phase + 2 * math.pi * np.arange(num) / num
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _ellipse() -> Geometry:
    return [_regular(64)], []


def _rectangle() -> Geometry:
    return [np.array([[-1, -0.75], [1, -0.75], [1, 0.75], [-1, 0.75]])], []


def _triangle() -> Geometry:
    return [_regular(3, phase=-math.pi / 2)], []


def _star() -> Geometry:
    points = _regular(10, phase=-math.pi / 2)
    points[1::2] *= 0.42
    return [points], []


def _hexagon() -> Geometry:
    return [_regular(6)], []


def _cross() -> Geometry:
    a, b = 0.3, 1.0
    return [
        np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b],
                  [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]])
    ], []


def _crescent() -> Geometry:
    # A disc minus a shifted disc that reaches outside it: no hole.
    bite = _regular(64, radius=0.8) + np.array([0.45, 0.0])
    return [_regular(64)], [bite]


def _heart() -> Geometry:
    t = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    x = 16 * np.sin(t)**3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) -
          np.cos(4 * t))
    points = np.stack([x, y + 2.5], axis=1) / 16.5
    return [points], []


def _arrow() -> Geometry:
    return [
        np.array([[-1, -0.22], [0.2, -0.22], [0.2, -0.6], [1, 0], [0.2, 0.6],
                  [0.2, 0.22], [-1, 0.22]])
    ], []


def _ring() -> Geometry:
    return [_regular(64)], [_regular(64, radius=0.55)]


_GEOMETRIES: Dict[str, Callable[[], Geometry]] = {
    'ellipse': _ellipse,
    'rectangle': _rectangle,
    'triangle': _triangle,
    'star': _star,
    'hexagon': _hexagon,
    'cross': _cross,
    'crescent': _crescent,
    'heart': _heart,
    'arrow': _arrow,
    'ring': _ring,
}

#: Every shape kind the library can draw.
SHAPE_KINDS: Tuple[str, ...] = tuple(_GEOMETRIES)

#: The hue (in ``[0, 1)``) that objects of a kind take more often than
#: others, like the colour prior of a real class (see
#: :data:`demo_data.scene.HUE_PRIOR`). The five detection classes are
#: spread around the colour wheel.
TYPICAL_HUES: Dict[str, float] = {
    'ellipse': 0.0,
    'rectangle': 0.6,
    'triangle': 0.15,
    'star': 0.8,
    'cross': 0.35,
    'hexagon': 0.5,
    'crescent': 0.07,
    'heart': 0.92,
    'arrow': 0.26,
    'ring': 0.7,
}


def unit_geometry(kind: str) -> Geometry:
    """The outer and hole polygons of ``kind``, centred, within the unit disc.

    Args:
        kind: One of :data:`SHAPE_KINDS`.

    Returns:
        ``(outer, holes)``: lists of ``(N, 2)`` float arrays.
    """
    if kind not in _GEOMETRIES:
        raise KeyError(f'Unknown shape kind {kind!r}; allowed kinds are '
                       f'{list(SHAPE_KINDS)}.')
    return _GEOMETRIES[kind]()


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(
        float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


@dataclass(frozen=True)
class Shape:
    """One placed shape.

    Args:
        kind: One of :data:`SHAPE_KINDS`.
        center: ``(x, y)`` in pixels.
        radius: Half the extent of the unit geometry in pixels, before the
            aspect ratio is applied.
        aspect: Width / height stretch; the area stays ``radius**2`` times
            the unit area.
        angle: Rotation in radians.

    Example:
        >>> shape = Shape('star', center=(40.0, 30.0), radius=20.0,
        ...               aspect=1.5, angle=0.3)
        >>> mask = shape.mask(64, 80)
        >>> print(mask.shape, mask.dtype, mask.sum() > 0)
        (64, 80) bool True
    """

    kind: str
    center: Tuple[float, float]
    radius: float
    aspect: float = 1.0
    angle: float = 0.0

    def polygons(self) -> Geometry:
        """Outer and hole polygons in pixel coordinates."""
        outer, holes = unit_geometry(self.kind)
        scale = np.array([math.sqrt(self.aspect), 1 / math.sqrt(self.aspect)])
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        rotation = np.array([[cos, sin], [-sin, cos]])
        offset = np.asarray(self.center, dtype=np.float64)

        def place(points: np.ndarray) -> np.ndarray:
            return (points * scale * self.radius) @ rotation + offset

        return [place(p) for p in outer], [place(p) for p in holes]

    def area(self) -> float:
        """Area in pixels of the unclipped shape (outer minus holes)."""
        outer, holes = self.polygons()
        return (sum(_polygon_area(p)
                    for p in outer) - sum(_polygon_area(p) for p in holes))

    def mask(self, height: int, width: int) -> np.ndarray:
        """Rasterise into a ``(height, width)`` bool mask, clipped to it."""
        outer, holes = self.polygons()
        canvas = np.zeros((height, width), dtype=np.uint8)
        scale = float(1 << _SHIFT)
        cv2.fillPoly(canvas,
                     [np.round(p * scale).astype(np.int32) for p in outer], 1,
                     cv2.LINE_8, _SHIFT)
        if holes:
            cv2.fillPoly(canvas,
                         [np.round(p * scale).astype(np.int32) for p in holes],
                         0, cv2.LINE_8, _SHIFT)
        return canvas.astype(bool)
