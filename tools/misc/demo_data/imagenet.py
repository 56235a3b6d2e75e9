"""The classification demo set in the on-disk layout of ImageNet.

::

    imagenet/
    ├── train/n00000000/n00000000_00000.JPEG ...   one folder per class
    ├── val/ILSVRC2012_val_00000001.JPEG ...      flat, like the real val set
    └── meta/
        ├── train.txt     "n00000003/n00000003_00012.JPEG 3"
        ├── val.txt       "ILSVRC2012_val_00000004.JPEG 3"
        └── classes.txt   one class name per line, in label order

mmpretrain's ``ImageNet(data_root=..., split='train')`` reads it through the
meta lists; pass ``classes=<root>/meta/classes.txt`` (or
``metainfo=dict(classes=CLS_CLASSES)``), since ``ImageNet`` otherwise
reports the 1000 ImageNet-1k names. Folder names sort in label order, so a
folder-scanning ``CustomDataset(data_prefix='train')`` gets the same labels.
"""
from pathlib import Path
from typing import List, Tuple

from .files import (Progress, image_rng, image_size, no_progress, write_jpeg,
                    write_lines)
from .recipes import classification_scene
from .spec import CLS_CLASSES, SplitSpec

__all__ = ['write_imagenet', 'class_folder']


def class_folder(label: int) -> str:
    """The WordNet-id-like folder name of class ``label``."""
    return f'n{label:08d}'


def write_imagenet(root: Path,
                   seed: int,
                   spec: SplitSpec,
                   progress: Progress = no_progress) -> None:
    """Generate the classification set under ``root``.

    Args:
        root: The ``imagenet`` directory to fill.
        seed: Random seed.
        spec: Per-class train / val counts and the image size range.
        progress: Progress reporter. Defaults to none.
    """
    num_classes = len(CLS_CLASSES)
    for split, per_class in (('train', spec.train), ('val', spec.val)):
        # Interleave classes so that the index encodes (sample, class).
        jobs: List[Tuple[int,
                         int]] = [(index, index % num_classes)
                                  for index in range(per_class * num_classes)]
        lines = []
        for index, label in progress(jobs, f'imagenet/{split}', len(jobs)):
            rng = image_rng(seed, 'cls', split, index)
            height, width = image_size(rng, spec.min_size, spec.max_size)
            scene = classification_scene(rng, height, width, CLS_CLASSES,
                                         label)
            if split == 'train':
                folder = class_folder(label)
                rel = f'{folder}/{folder}_{index // num_classes:05d}.JPEG'
            else:
                rel = f'ILSVRC2012_val_{index + 1:08d}.JPEG'
            write_jpeg(root / split / rel, scene.image)
            lines.append(f'{rel} {label}')
        write_lines(root / 'meta' / f'{split}.txt', sorted(lines))
    write_lines(root / 'meta' / 'classes.txt', CLS_CLASSES)
