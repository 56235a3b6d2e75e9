"""Synthetic demo data in the on-disk layouts of ImageNet, COCO and ADE20K.

Deterministic, seedable and download-free: shapes of several classes on a
textured two-region background, with clutter, occlusion and varied scales
and aspect ratios, in image sizes that are not multiples of 32. One shape
library and one scene composer serve all three tasks; the labels, boxes,
polygons and label maps are read off the rendered pixels.

Command line: ``python tools/misc/make_demo_data.py --out data/demo``.
"""
from .generate import (MANIFEST, TASKS, generator_digest, is_up_to_date,
                       make_demo_data, read_manifest)
from .spec import (CLS_CLASSES, DET_CLASSES, SEG_CLASSES, SEG_STUFF_CLASSES,
                   DemoDataSpec, SplitSpec, metainfo, palette)

__all__ = [
    'make_demo_data', 'is_up_to_date', 'read_manifest', 'DemoDataSpec',
    'SplitSpec', 'metainfo', 'palette', 'CLS_CLASSES', 'DET_CLASSES',
    'SEG_CLASSES', 'SEG_STUFF_CLASSES', 'TASKS', 'MANIFEST', 'generator_digest'
]
