"""The detection demo set in the on-disk layout of COCO 2017.

::

    coco/
    ├── train2017/000000000001.jpg ...
    ├── val2017/000001000001.jpg ...
    └── annotations/
        ├── instances_train2017.json
        └── instances_val2017.json

Each JSON holds ``info``, ``licenses``, ``images`` (``id``, ``file_name``,
``height``, ``width``), ``annotations`` and ``categories`` (ids 1..K in the
order of :data:`~demo_data.spec.DET_CLASSES`). An annotation describes
the *visible* part of an object after occlusion:

* ``segmentation``: polygons (one per visible piece) traced on the pixel-
  corner grid, so ``pycocotools`` rasterises them back to exactly the
  visible pixels;
* ``bbox``: ``[x, y, w, h]``, the tight box of those pixels;
* ``area``: their count; ``iscrowd``: 0.

Load with ``CocoDataset(metainfo=dict(classes=DET_CLASSES), ...)``.
"""
from pathlib import Path
from typing import List

import cv2
import numpy as np

from .files import (Progress, image_rng, image_size, no_progress, write_jpeg,
                    write_json)
from .recipes import multi_object_scene
from .spec import DET_CLASSES, SplitSpec

__all__ = ['write_coco', 'mask_to_polygons', 'VAL_ID_OFFSET']

#: Val image ids start above this, so ids are unique across splits.
VAL_ID_OFFSET = 1_000_000

# Contours are traced on a 2x nearest-upsampled mask and mapped back with
# (u + 0.5) / 2: every polygon edge then runs 0.25 px outside the centres of
# the boundary pixels, and pycocotools (which fills pixels whose centre is
# inside) reproduces the mask exactly. Simplification stays below that
# margin.
_UPSAMPLE = 2
_SIMPLIFY = 0.2


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons (flat ``[x0, y0, x1, y1, ...]`` lists) of a bool mask.

    Args:
        mask: ``(H, W)`` bool mask without holes.

    Returns:
        One polygon per 8-connected piece, each with at least 3 points.
    """
    upsampled = cv2.resize(
        mask.astype(np.uint8),
        None,
        fx=_UPSAMPLE,
        fy=_UPSAMPLE,
        interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(upsampled, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        contour = cv2.approxPolyDP(contour, _SIMPLIFY * _UPSAMPLE, True)
        points = (contour.reshape(-1, 2) + 0.5) / _UPSAMPLE
        if len(points) >= 3:
            polygons.append([float(v) for v in points.ravel()])
    return polygons


def _annotations(mask_owner: np.ndarray, kinds: List[str], image_id: int,
                 first_id: int) -> List[dict]:
    annotations = []
    for index, kind in enumerate(kinds):
        mask = mask_owner == index
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        annotations.append({
            'id':
            first_id + len(annotations),
            'image_id':
            image_id,
            'category_id':
            DET_CLASSES.index(kind) + 1,
            'segmentation':
            mask_to_polygons(mask),
            'area':
            int(mask.sum()),
            'bbox': [x0, y0,
                     int(xs.max()) + 1 - x0,
                     int(ys.max()) + 1 - y0],
            'iscrowd':
            0,
        })
    return annotations


def write_coco(root: Path,
               seed: int,
               spec: SplitSpec,
               progress: Progress = no_progress) -> None:
    """Generate the detection set under ``root``.

    Args:
        root: The ``coco`` directory to fill.
        seed: Random seed.
        spec: Train / val image counts and the image size range.
        progress: Progress reporter. Defaults to none.
    """
    categories = [{
        'id': i + 1,
        'name': name,
        'supercategory': 'shape'
    } for i, name in enumerate(DET_CLASSES)]
    for split, count in (('train', spec.train), ('val', spec.val)):
        folder = f'{split}2017'
        images, annotations = [], []
        for index in progress(range(count), f'coco/{folder}', count):
            rng = image_rng(seed, 'det', split, index)
            height, width = image_size(rng, spec.min_size, spec.max_size)
            scene = multi_object_scene(rng, height, width, DET_CLASSES)
            image_id = index + 1 + (VAL_ID_OFFSET if split == 'val' else 0)
            file_name = f'{image_id:012d}.jpg'
            write_jpeg(root / folder / file_name, scene.image)
            images.append({
                'id': image_id,
                'file_name': file_name,
                'height': height,
                'width': width
            })
            annotations += _annotations(scene.instance_map,
                                        [obj.kind for obj in scene.objects],
                                        image_id,
                                        len(annotations) + 1)
        write_json(
            root / 'annotations' / f'instances_{folder}.json', {
                'info': {
                    'description': 'saevit_mm synthetic demo data '
                    f'(seed {seed})',
                    'version': '1.0'
                },
                'licenses': [],
                'images': images,
                'annotations': annotations,
                'categories': categories,
            })
