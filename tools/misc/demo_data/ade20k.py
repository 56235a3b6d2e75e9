"""The segmentation demo set in the on-disk layout of ADE20K (SceneParsing).

::

    ADEChallengeData2016/
    ├── images/training/ADE_train_00000001.jpg ...
    ├── images/validation/ADE_val_00000001.jpg ...
    ├── annotations/training/ADE_train_00000001.png ...
    └── annotations/validation/ADE_val_00000001.png ...

The PNGs are single-channel uint8 label maps, as in ADE20K: 0 is "other"
(here: clutter pixels), ``i + 1`` is ``SEG_CLASSES[i]``. Every non-clutter
pixel is labelled (sky, ground, or a shape), so the maps are dense.

mmseg's ``ADE20KDataset`` only accepts a class list that is a subset of the
150 ADE20K names (its ``get_label_map`` raises otherwise), so load the demo
set with ``BaseSegDataset`` and the ADE20K settings::

    dict(type='BaseSegDataset', data_root=..., img_suffix='.jpg',
         seg_map_suffix='.png', reduce_zero_label=True,
         metainfo=dict(classes=SEG_CLASSES, palette=palette(SEG_CLASSES)),
         data_prefix=dict(img_path='images/training',
                          seg_map_path='annotations/training'))
"""
from pathlib import Path

import numpy as np

from .files import (Progress, image_rng, image_size, no_progress, write_jpeg,
                    write_png)
from .recipes import multi_object_scene
from .scene import Scene
from .spec import DET_CLASSES, SEG_CLASSES, SplitSpec

__all__ = ['write_ade20k', 'label_map']

_FOLDERS = {
    'train': ('training', 'ADE_train'),
    'val': ('validation', 'ADE_val')
}


def label_map(scene: Scene) -> np.ndarray:
    """The ADE20K-style uint8 label map of a scene (0 = other).

    Args:
        scene: A scene whose object kinds are in :data:`SEG_CLASSES`.
    """
    labels = np.where(scene.is_sky,
                      SEG_CLASSES.index('sky') + 1,
                      SEG_CLASSES.index('ground') + 1).astype(np.uint8)
    labels[scene.clutter] = 0
    object_labels = np.array(
        [SEG_CLASSES.index(obj.kind) + 1 for obj in scene.objects],
        dtype=np.uint8)
    owned = scene.instance_map >= 0
    labels[owned] = object_labels[scene.instance_map[owned]]
    return labels


def write_ade20k(root: Path,
                 seed: int,
                 spec: SplitSpec,
                 progress: Progress = no_progress) -> None:
    """Generate the segmentation set under ``root``.

    Args:
        root: The ``ADEChallengeData2016`` directory to fill.
        seed: Random seed.
        spec: Train / val image counts and the image size range.
        progress: Progress reporter. Defaults to none.
    """
    for split, count in (('train', spec.train), ('val', spec.val)):
        folder, prefix = _FOLDERS[split]
        for index in progress(range(count), f'ade20k/{folder}', count):
            rng = image_rng(seed, 'seg', split, index)
            height, width = image_size(rng, spec.min_size, spec.max_size)
            scene = multi_object_scene(rng, height, width, DET_CLASSES)
            name = f'{prefix}_{index + 1:08d}'
            write_jpeg(root / 'images' / folder / f'{name}.jpg', scene.image)
            write_png(root / 'annotations' / folder / f'{name}.png',
                      label_map(scene))
