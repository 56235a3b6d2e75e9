"""What the demo data sets contain: class lists, palettes, counts and sizes.

The three demo sets share one shape library (:mod:`demo_data.shapes`);
this module fixes which shapes are the classes of each task, how many images
each split holds and how large they are. Configs that train on the demo data
use these names (see :func:`metainfo`).
"""
from dataclasses import asdict, dataclass
from typing import Dict, Tuple

__all__ = [
    'CLS_CLASSES', 'DET_CLASSES', 'SEG_STUFF_CLASSES', 'SEG_CLASSES',
    'SplitSpec', 'DemoDataSpec', 'palette', 'metainfo'
]

#: Classification classes (label ``i`` is ``CLS_CLASSES[i]``): one large
#: shape per image, among smaller shapes of other classes.
CLS_CLASSES: Tuple[str, ...] = ('ellipse', 'rectangle', 'triangle', 'star',
                                'hexagon', 'cross', 'crescent', 'heart',
                                'arrow', 'ring')

#: Detection classes (COCO ``category_id`` ``i + 1`` is ``DET_CLASSES[i]``).
DET_CLASSES: Tuple[str, ...] = CLS_CLASSES[:4] + ('cross', )

#: Background ("stuff") classes that make the segmentation maps dense.
SEG_STUFF_CLASSES: Tuple[str, ...] = ('sky', 'ground')

#: Segmentation classes. The ADE20K-layout PNGs store ``i + 1`` for
#: ``SEG_CLASSES[i]`` and 0 for "other" pixels (clutter), which
#: ``reduce_zero_label=True`` turns into the ignore index.
SEG_CLASSES: Tuple[str, ...] = SEG_STUFF_CLASSES + DET_CLASSES

_PALETTE: Dict[str, Tuple[int, int, int]] = {
    'sky': (70, 130, 180),
    'ground': (140, 110, 60),
    'ellipse': (220, 20, 60),
    'rectangle': (0, 160, 80),
    'triangle': (250, 170, 30),
    'star': (106, 0, 228),
    'hexagon': (0, 200, 220),
    'cross': (255, 77, 255),
    'crescent': (120, 166, 157),
    'heart': (255, 120, 120),
    'arrow': (60, 60, 200),
    'ring': (160, 160, 0),
}


def palette(classes: Tuple[str, ...]) -> Tuple[Tuple[int, int, int], ...]:
    """RGB colours for ``classes``, one per class, for visualisers.

    Args:
        classes: Names from :data:`CLS_CLASSES` or :data:`SEG_CLASSES`.

    Returns:
        One ``(r, g, b)`` tuple per class, in the order given.
    """
    unknown = [name for name in classes if name not in _PALETTE]
    if unknown:
        raise KeyError(f'No demo colour for {unknown}; known classes are '
                       f'{sorted(_PALETTE)}.')
    return tuple(_PALETTE[name] for name in classes)


def metainfo(task: str) -> dict:
    """``dict(classes=..., palette=...)`` of a demo task, for datasets.

    Args:
        task: ``'cls'``, ``'det'`` or ``'seg'``.

    Example:
        >>> print(metainfo('det')['classes'])
        ('ellipse', 'rectangle', 'triangle', 'star', 'cross')
    """
    classes = {'cls': CLS_CLASSES, 'det': DET_CLASSES, 'seg': SEG_CLASSES}
    if task not in classes:
        raise KeyError(f'Unknown task {task!r}; allowed tasks are '
                       f'{list(classes)}.')
    return dict(classes=classes[task], palette=palette(classes[task]))


@dataclass(frozen=True)
class SplitSpec:
    """Counts and image sizes of one demo task.

    Args:
        train: Training images (for classification: per class).
        val: Validation images (for classification: per class).
        min_size: Smallest height or width in pixels.
        max_size: Largest height or width in pixels. Height and width are
            drawn independently in ``[min_size, max_size]``, and a side that
            is a multiple of 32 is moved by one pixel.
    """

    train: int
    val: int
    min_size: int
    max_size: int

    def __post_init__(self) -> None:
        if self.train < 1 or self.val < 1:
            raise ValueError('train and val counts must be >= 1, got '
                             f'train={self.train}, val={self.val}.')
        if not 48 <= self.min_size < self.max_size <= 2048:
            raise ValueError(
                'Sizes must satisfy 48 <= min_size < max_size <= 2048, got '
                f'min_size={self.min_size}, max_size={self.max_size}.')


@dataclass(frozen=True)
class DemoDataSpec:
    """Counts and sizes of all three demo data sets.

    The defaults give 3000 + 300 classification images (300 + 30 x 10
    classes), 360 + 60 detection images and 360 + 60 segmentation images:
    about 4k files, generated in about 25 s on two CPU cores. The
    classification set is the largest because the demo trains its backbone
    from scratch in about 900 iterations: with fewer distinct images the
    same number of steps generalises less.

    Args:
        cls: ImageNet-layout classification set; counts are per class.
        det: COCO-layout detection / instance segmentation set.
        seg: ADE20K-layout semantic segmentation set.
    """

    cls: SplitSpec = SplitSpec(300, 30, 72, 112)
    det: SplitSpec = SplitSpec(360, 60, 144, 256)
    seg: SplitSpec = SplitSpec(360, 60, 144, 256)

    @classmethod
    def tiny(cls) -> 'DemoDataSpec':
        """A spec for tests: a few images per split, generated in ~1 s."""
        return cls(
            cls=SplitSpec(3, 2, 72, 112),
            det=SplitSpec(8, 4, 144, 256),
            seg=SplitSpec(8, 4, 144, 256))

    def as_dict(self) -> dict:
        """The spec as plain JSON-serialisable data (for manifests)."""
        return asdict(self)
