"""Scene composition: background, clutter and occluding shapes.

A :class:`Scene` is the single source of truth for one image. Its
``instance_map`` says which object owns each pixel after occlusion, so the
classification label, the COCO boxes and polygons and the ADE20K label map
are all read off the same pixels that were painted.

Z-order, bottom to top: background (sky / ground), clutter (scribbles, dots
and irregular blobs that belong to no class), then the objects in placement
order. Clutter never covers an object, so occlusion only happens between
objects, and it is constrained: every object keeps a minimum visible fraction
and never gets a hole punched into it (COCO polygons cannot express holes).
"""
import math
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from .shapes import TYPICAL_HUES, Shape
from .textures import background, fill_texture, random_color

__all__ = [
    'HUE_PRIOR', 'ObjectRequest', 'PlacedObject', 'Scene', 'compose_scene'
]

#: Probability that an object takes its kind's typical hue
#: (:data:`demo_data.shapes.TYPICAL_HUES`) instead of a uniform one.
#: Colour alone then identifies the class of only part of the objects (and
#: clutter and backgrounds share the same hues); shape is needed for the
#: rest.
HUE_PRIOR = 0.65

_MAX_TRIES = 30
_MIN_CONTRAST = 60.0  # RGB distance between an object and what it covers


@dataclass(frozen=True)
class ObjectRequest:
    """How to place one object.

    Args:
        kind: Shape kind (see :data:`demo_data.shapes.SHAPE_KINDS`).
        radius: ``(low, high)`` radius as a fraction of the shorter image
            side, drawn log-uniformly.
        min_visible: Fraction of its in-image area the object must keep when
            later objects occlude it. Defaults to 0.45.
        min_inside: Fraction of the unclipped shape that must fall inside
            the image. Defaults to 0.6.
        center_margin: The centre is drawn at least this fraction of the
            width / height away from the borders. Defaults to 0.
        max_aspect: The aspect ratio is drawn log-uniformly in
            ``[1 / max_aspect, max_aspect]``. Defaults to 2.
    """

    kind: str
    radius: Tuple[float, float]
    min_visible: float = 0.45
    min_inside: float = 0.6
    center_margin: float = 0.0
    max_aspect: float = 2.0


@dataclass
class PlacedObject:
    """An object of a scene: its shape and its in-image pixel count."""

    kind: str
    shape: Shape
    full_pixels: int
    min_visible: float


@dataclass
class Scene:
    """One rendered image and what is where in it.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        instance_map: ``(H, W)`` int16, the index into ``objects`` of the
            object that owns each pixel, or -1.
        is_sky: ``(H, W)`` bool, the sky region of the background.
        clutter: ``(H, W)`` bool, background pixels covered by clutter.
        objects: The placed objects, bottom to top.
    """

    image: np.ndarray
    instance_map: np.ndarray
    is_sky: np.ndarray
    clutter: np.ndarray
    objects: List[PlacedObject] = field(default_factory=list)

    def visible_mask(self, index: int) -> np.ndarray:
        """Bool mask of the visible pixels of ``objects[index]``."""
        return self.instance_map == index


def _num_holes(mask: np.ndarray) -> int:
    _, hierarchy = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return 0
    return int((hierarchy[0, :, 3] >= 0).sum())


def _sample_shape(rng: np.random.Generator, request: ObjectRequest,
                  height: int, width: int) -> Shape:
    short = min(height, width)
    low, high = request.radius
    radius = short * math.exp(rng.uniform(math.log(low), math.log(high)))
    log_aspect = math.log(request.max_aspect)
    m = request.center_margin
    return Shape(
        kind=request.kind,
        center=(rng.uniform(m, 1 - m) * width, rng.uniform(m, 1 - m) * height),
        radius=radius,
        aspect=math.exp(rng.uniform(-log_aspect, log_aspect)),
        angle=rng.uniform(0, 2 * math.pi))


def _occlusion_ok(instance_map: np.ndarray, mask: np.ndarray,
                  objects: Sequence[PlacedObject]) -> bool:
    """Whether painting ``mask`` on top keeps every object valid."""
    covered = np.unique(instance_map[mask])
    for index in covered[covered >= 0]:
        before = instance_map == index
        after = before & ~mask
        obj = objects[index]
        if after.sum() < obj.min_visible * obj.full_pixels:
            return False
        if _num_holes(after) > _num_holes(before):
            return False
    return True


def _paint_object(rng: np.random.Generator, image: np.ndarray,
                  mask: np.ndarray, kind: str) -> None:
    """Paint a textured fill (and maybe an outline) into ``mask``."""
    hue = TYPICAL_HUES[kind] if rng.uniform() < HUE_PRIOR else None
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = mask[y0:y1, x0:x1]
    under = image[y0:y1, x0:x1][crop].mean(axis=0)
    for _ in range(8):
        color = random_color(rng, hue)
        if np.linalg.norm(color - under) >= _MIN_CONTRAST:
            break
    second = random_color(rng)
    fill = fill_texture(rng, y1 - y0, x1 - x0, color, second)
    if rng.uniform() < 0.3:
        edge = crop & ~cv2.erode(
            crop.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        fill[edge] = color * rng.uniform(0.2, 0.5)
    region = image[y0:y1, x0:x1]
    region[crop] = fill[crop]


def _draw_clutter(rng: np.random.Generator, image: np.ndarray,
                  count: int) -> np.ndarray:
    """Scribbles, dots and irregular blobs; returns the covered mask."""
    height, width = image.shape[:2]
    short = min(height, width)
    covered = np.zeros((height, width), dtype=np.uint8)
    for _ in range(count):
        layer = np.zeros_like(covered)
        kind = rng.choice(['scribble', 'dots', 'blob'])
        if kind == 'scribble':
            num = int(rng.integers(3, 7))
            points = np.stack(
                [rng.uniform(0, width, num),
                 rng.uniform(0, height, num)],
                axis=1)
            cv2.polylines(layer, [np.round(points).astype(np.int32)], False, 1,
                          int(rng.integers(1, 4)))
        elif kind == 'dots':
            for _ in range(int(rng.integers(3, 12))):
                center = (int(rng.integers(0, width)),
                          int(rng.integers(0, height)))
                cv2.circle(layer, center, int(rng.integers(1, 4)), 1, -1)
        else:
            num = int(rng.integers(7, 13))
            angles = np.sort(rng.uniform(0, 2 * math.pi, num))
            radii = short * rng.uniform(0.03, 0.12) * rng.uniform(
                0.45, 1.0, num)
            center = rng.uniform(0, 1, 2) * (width, height)
            points = center + radii[:, None] * np.stack(
                [np.cos(angles), np.sin(angles)], axis=1)
            cv2.fillPoly(layer, [np.round(points).astype(np.int32)], 1)
        mask = layer.astype(bool)
        if mask.any():
            image[mask] = random_color(rng)
            covered |= layer
    return covered.astype(bool)


def compose_scene(rng: np.random.Generator,
                  height: int,
                  width: int,
                  requests: Sequence[ObjectRequest],
                  clutter: Tuple[int, int] = (1, 4),
                  min_pixels: int = 48) -> Scene:
    """Render one scene.

    Objects are placed in the order of ``requests``, each on top of the
    earlier ones. A request whose placement still breaks a constraint after
    30 tries is dropped.

    Args:
        rng: The only source of randomness.
        height: Image height.
        width: Image width.
        requests: The objects to place, bottom to top.
        clutter: ``(low, high)`` inclusive number of clutter items.
            Defaults to (1, 4).
        min_pixels: Smallest in-image pixel count of an object.
            Defaults to 48.

    Returns:
        The scene, with uint8 image and the maps described in
        :class:`Scene`.
    """
    image, is_sky = background(rng, height, width)
    clutter_mask = _draw_clutter(rng, image,
                                 int(rng.integers(clutter[0], clutter[1] + 1)))
    instance_map = np.full((height, width), -1, dtype=np.int16)
    objects: List[PlacedObject] = []
    for request in requests:
        for _ in range(_MAX_TRIES):
            shape = _sample_shape(rng, request, height, width)
            mask = shape.mask(height, width)
            pixels = int(mask.sum())
            if pixels < max(min_pixels, request.min_inside * shape.area()):
                continue
            if not _occlusion_ok(instance_map, mask, objects):
                continue
            _paint_object(rng, image, mask, request.kind)
            instance_map[mask] = len(objects)
            objects.append(
                PlacedObject(request.kind, shape, pixels, request.min_visible))
            break
    clutter_mask &= instance_map < 0
    image = _finish(rng, image)
    return Scene(image, instance_map, is_sky, clutter_mask, objects)


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Global photometric jitter, sensor noise, slight blur; to uint8."""
    image = image * rng.uniform(0.8, 1.15) + rng.uniform(-20, 20)
    image += rng.normal(0, rng.uniform(2, 8), size=image.shape)
    if rng.uniform() < 0.5:
        image = cv2.GaussianBlur(
            image.astype(np.float32), (0, 0), rng.uniform(0.4, 0.9))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
