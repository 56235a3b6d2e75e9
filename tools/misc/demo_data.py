"""Synthetic demo data in the on-disk layouts of ImageNet, COCO and ADE20K.

The images are synthetic: shapes of ten classes on a sky / ground
background, with clutter, occlusion, varied sizes and aspect ratios, and
image sides that are never a multiple of 32; no image comes from a real data
set. Labels, COCO boxes and polygons and ADE20K label maps are read off the
rendered pixels (one map of which object owns each pixel). Deterministic:
each image draws from its own random stream, seeded by ``(seed, task,
split, index)``, and files are encoded with fixed settings, so one seed
gives the same bytes. The layouts, as ``configs/demo`` reads them::

    imagenet/train/n00000003/n00000003_00012.JPEG  one folder per class
    imagenet/val/ILSVRC2012_val_00000004.JPEG      flat
    imagenet/meta/{train,val}.txt ("<file> <label>"), meta/classes.txt
    coco/{train,val}2017/000000000001.jpg, annotations/instances_*.json
    ADEChallengeData2016/images/{training,validation}/ADE_*_00000001.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_*.png

COCO annotations describe the visible part of each object (polygons that
``pycocotools`` rasterises back to exactly its pixels). The ADE20K PNGs
are uint8 label maps: 0 is clutter ("other"), ``i + 1`` is
``SEG_CLASSES[i]``. Each directory holds a ``demo_manifest.json`` of the
parameters and code that made it; a later call with the same ones skips it.

Command line: ``python tools/misc/make_demo_data.py --out data/demo``.
"""
import colorsys
import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

import cv2
import numpy as np

CLS_CLASSES = ('ellipse', 'rectangle', 'triangle', 'star', 'hexagon', 'cross',
               'crescent', 'heart', 'arrow', 'ring')
DET_CLASSES = CLS_CLASSES[:4] + ('cross', )
#: sky and ground make the label maps dense
SEG_CLASSES = ('sky', 'ground') + DET_CLASSES
# yapf: disable
PALETTE = {
    'sky': (70, 130, 180), 'ground': (140, 110, 60),
    'ellipse': (220, 20, 60), 'rectangle': (0, 160, 80),
    'triangle': (250, 170, 30), 'star': (106, 0, 228),
    'hexagon': (0, 200, 220), 'cross': (255, 77, 255),
    'crescent': (120, 166, 157), 'heart': (255, 120, 120),
    'arrow': (60, 60, 200), 'ring': (160, 160, 0),
}
# yapf: enable
#: task -> directory
TASKS = dict(cls='imagenet', det='coco', seg='ADEChallengeData2016')
MANIFEST = 'demo_manifest.json'


def metainfo(task: str) -> dict:
    """``dict(classes=..., palette=...)`` of ``'cls'``, ``'det'`` or
    ``'seg'``, as the demo configs spell them out."""
    classes = dict(cls=CLS_CLASSES, det=DET_CLASSES, seg=SEG_CLASSES)[task]
    return dict(classes=classes, palette=[PALETTE[c] for c in classes])


@dataclass(frozen=True)
class SplitSpec:
    """Train and val images (classification: per class) and the range
    that image heights and widths are drawn from."""
    train: int
    val: int
    min_size: int
    max_size: int


@dataclass(frozen=True)
class DemoDataSpec:
    """Counts and sizes of the three sets: by default 3000 + 300
    classification (the demo trains its backbone from scratch, which needs
    the most images), 360 + 60 detection and 360 + 60 segmentation images,
    about 25 s on two CPU cores."""
    cls: SplitSpec = SplitSpec(300, 30, 72, 112)
    det: SplitSpec = SplitSpec(360, 60, 144, 256)
    seg: SplitSpec = SplitSpec(360, 60, 144, 256)

    @classmethod
    def tiny(cls) -> 'DemoDataSpec':
        """A few images per split, for tests (about a second)."""
        return cls(
            SplitSpec(3, 2, 72, 112), SplitSpec(8, 4, 144, 256),
            SplitSpec(8, 4, 144, 256))


def _ngon(n: int, radius: float = 1., phase: float = 0., shift: float = 0.):
    angle = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angle) + shift, radius * np.sin(angle)],
                    1)


_T = np.linspace(0, 2 * math.pi, 64, endpoint=False)
# yapf: disable
#: kind -> (outline, hole or None) within the unit disc; the crescent's
#: "hole" reaches outside the disc, so it bites instead
SHAPES = {
    'ellipse': (_ngon(64), None),
    'rectangle': (np.array([[-1, -.75], [1, -.75], [1, .75], [-1, .75]]),
                  None),
    'triangle': (_ngon(3, phase=-math.pi / 2), None),
    'star': (_ngon(10, phase=-math.pi / 2) * np.tile([[1], [.42]], (5, 1)),
             None),
    'hexagon': (_ngon(6), None),
    'cross': (np.array([[-.3, -1], [.3, -1], [.3, -.3], [1, -.3], [1, .3],
                        [.3, .3], [.3, 1], [-.3, 1], [-.3, .3], [-1, .3],
                        [-1, -.3], [-.3, -.3]]), None),
    'crescent': (_ngon(64), _ngon(64, .8, shift=.45)),
    'heart': (np.stack([16 * np.sin(_T)**3, 2.5 - 13 * np.cos(_T) +
                        5 * np.cos(2 * _T) + 2 * np.cos(3 * _T) +
                        np.cos(4 * _T)], 1) / 16.5, None),
    'arrow': (np.array([[-1, -.22], [.2, -.22], [.2, -.6], [1, 0], [.2, .6],
                        [.2, .22], [-1, .22]]), None),
    'ring': (_ngon(64), _ngon(64, .55)),
}
#: the hue an object of a kind takes 65% of the time (a class colour prior:
#: colour alone identifies part of the objects, shape the rest)
HUES = dict(zip(CLS_CLASSES, (0, .6, .15, .8, .5, .35, .07, .92, .26, .7)))
# yapf: enable


class Scene(NamedTuple):
    """One image and what is where: ``owner`` (int16) is the index into
    ``kinds`` of the object that owns each pixel, or -1."""
    image: np.ndarray
    owner: np.ndarray
    is_sky: np.ndarray
    clutter: np.ndarray
    kinds: List[str]
    full_pixels: List[Tuple[int, float]]  # (pixels, min visible fraction)


def _color(rng: np.random.Generator, hue: Optional[float] = None):
    hue = rng.uniform() if hue is None else hue + rng.normal(0, .03)
    rgb = colorsys.hsv_to_rgb(hue % 1, rng.uniform(.25, 1), rng.uniform(.3, 1))
    return np.array(rgb, np.float32) * 255


def _noise(rng: np.random.Generator, h: int, w: int, cells: int):
    """Smooth noise in about [-1, 1], ``cells`` bumps a side."""
    grid = rng.normal(0, 1, (cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]


def _background(rng: np.random.Generator, h: int, w: int):
    """A smooth sky above a wavy horizon, rough ground below (15%: ground
    only); the float image and the sky mask."""
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(.25, .65) * h + rng.uniform(0, .08) * h * np.sin(
        rng.uniform(.5, 3) * 2 * math.pi / w * np.arange(w) +
        rng.uniform(0, 6.3))
    is_sky = (rows[..., 0] < horizon) & (rng.uniform() >= .15)
    top, low = (_color(rng, rng.choice([.58, .6, .07])) for _ in range(2))
    sky = top + (low - top) * rows / h + 10 * _noise(rng, h, w, 3)
    ground = (
        _color(rng, rng.choice([.25, .08, .11, 0])) * .8 +
        22 * _noise(rng, h, w, int(rng.integers(4, 9))) +
        rng.normal(0, rng.uniform(8, 20), (h, w, 1)))
    return np.where(is_sky[..., None], sky, ground), is_sky


def _clutter(rng: np.random.Generator, image: np.ndarray, count: int):
    """Scribbles and blobs of no class; the mask they cover."""
    h, w = image.shape[:2]
    covered = np.zeros((h, w), np.uint8)
    for _ in range(count):
        layer = np.zeros_like(covered)
        num = int(rng.integers(3, 7))
        points = np.round(rng.uniform(0, 1, (num, 2)) * (w, h)).astype(int)
        if rng.uniform() < .5:
            cv2.polylines(layer, [points], False, 1, int(rng.integers(1, 4)))
        else:  # a blob around the first point
            angle = np.sort(rng.uniform(0, 2 * math.pi, num))
            radius = min(h, w) * rng.uniform(.02, .12, (num, 1))
            blob = points[0] + radius * np.stack(
                [np.cos(angle), np.sin(angle)], 1)
            cv2.fillPoly(layer, [np.round(blob).astype(np.int32)], 1)
        image[layer > 0] = _color(rng)
        covered |= layer
    return covered > 0


def shape_mask(kind: str, center, radius: float, aspect: float, angle: float,
               h: int, w: int) -> np.ndarray:
    """The ``(h, w)`` bool mask of one placed shape (sub-pixel outline)."""
    outline, hole = SHAPES[kind]
    cos, sin = math.cos(angle), math.sin(angle)
    scale = radius * np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)])

    def place(points: np.ndarray) -> List[np.ndarray]:
        xy = (points * scale) @ np.array([[cos, sin], [-sin, cos]]) + center
        return [np.round(xy * 16).astype(np.int32)]

    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, place(outline), 1, cv2.LINE_8, 4)
    if hole is not None:
        cv2.fillPoly(canvas, place(hole), 0, cv2.LINE_8, 4)
    return canvas > 0


def _hides(owner: np.ndarray, mask: np.ndarray, full: List[tuple]) -> bool:
    """Whether painting ``mask`` over the objects of ``owner`` leaves one
    below its visible fraction, or punches a hole into it (which COCO
    polygons cannot express)."""

    def holes(mask: np.ndarray) -> int:
        _, tree = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        return 0 if tree is None else int((tree[0, :, 3] >= 0).sum())

    for i in np.unique(owner[mask]):
        rest = (owner == i) & ~mask
        if i >= 0 and (rest.sum() < full[i][1] * full[i][0]
                       or holes(rest) > holes(owner == i)):
            return True
    return False


def compose_scene(rng: np.random.Generator, h: int, w: int,
                  requests: Iterable[tuple], clutter: int) -> Scene:
    """Render one scene: background, ``clutter`` items, then each request
    ``(kind, (low, high) radius / shorter side, min visible fraction,
    centre margin, max aspect)`` on top of the earlier ones; one that
    :func:`_hides` an earlier object 30 times is dropped."""
    image, is_sky = _background(rng, h, w)
    clutter_mask = _clutter(rng, image, clutter)
    owner = np.full((h, w), -1, np.int16)
    kinds, full = [], []
    for kind, (low, high), min_visible, margin, max_aspect in requests:
        for _ in range(30):
            mask = shape_mask(
                kind,
                rng.uniform(margin, 1 - margin, 2) * (w, h),
                min(h, w) *
                math.exp(rng.uniform(math.log(low), math.log(high))),
                math.exp(rng.uniform(-1, 1) * math.log(max_aspect)),
                rng.uniform(0, 2 * math.pi), h, w)
            if mask.sum() < 48 or _hides(owner, mask, full):
                continue
            under = image[mask].mean(0)
            for _ in range(8):  # stand out from what it covers
                color = _color(rng,
                               HUES[kind] if rng.uniform() < .65 else None)
                if np.linalg.norm(color - under) >= 60:
                    break
            fill = color + rng.uniform(0, 30) * _noise(rng, h, w, 4)
            image[mask] = fill[mask]
            owner[mask] = len(kinds)
            kinds.append(kind)
            full.append((int(mask.sum()), min_visible))
            break
    image = image * rng.uniform(.8, 1.15) + rng.uniform(-20, 20)
    image += rng.normal(0, rng.uniform(2, 8), image.shape)
    if rng.uniform() < .5:
        image = cv2.GaussianBlur(
            image.astype(np.float32), (0, 0), rng.uniform(.4, .9))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return Scene(image, owner, is_sky, clutter_mask & (owner < 0), kinds, full)


def classification_scene(rng: np.random.Generator, h: int, w: int,
                         label: int) -> Scene:
    """One large shape of ``CLS_CLASSES[label]`` (``kinds[0]``) among up
    to two small shapes of other classes, which hide at most 20% of it."""
    others = [c for i, c in enumerate(CLS_CLASSES) if i != label]
    requests = [(CLS_CLASSES[label], (.26, .42), .8, .3, 1.8)
                ] + [(others[rng.integers(len(others))], (.07, .14), .5, 0, 2)
                     for _ in range(rng.integers(0, 3))]
    return compose_scene(rng, h, w, requests, int(rng.integers(0, 4)))


def multi_object_scene(rng: np.random.Generator, h: int, w: int) -> Scene:
    """Two to seven shapes of the detection classes, radii 7-38% of the
    shorter side, aspect ratios up to 2, each at least 45% visible."""
    requests = [(DET_CLASSES[rng.integers(len(DET_CLASSES))], (.07, .38), .45,
                 0, 2) for _ in range(rng.integers(2, 8))]
    return compose_scene(rng, h, w, requests, int(rng.integers(1, 5)))


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """COCO polygons of a hole-free bool mask, one per piece.

    Contours are traced on the 2x nearest-upsampled mask and mapped back
    with ``(u + 0.5) / 2``: every edge runs 0.25 px outside the centres of
    the boundary pixels, so ``pycocotools`` (which fills the pixels whose
    centre is inside) gives back exactly ``mask``.
    """
    big = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polygons = [(cv2.approxPolyDP(c, .4, True).reshape(-1, 2) + .5) / 2
                for c in contours]
    return [p.ravel().tolist() for p in polygons if len(p) >= 3]


def label_map(scene: Scene) -> np.ndarray:
    """The ADE20K-style uint8 label map of a multi-object scene."""
    labels = np.where(scene.is_sky, 1, 2).astype(np.uint8)
    labels[scene.clutter] = 0
    objects = np.array([SEG_CLASSES.index(k) + 1 for k in scene.kinds],
                       np.uint8)
    labels[scene.owner >= 0] = objects[scene.owner[scene.owner >= 0]]
    return labels


def _write(path: Path, data: Union[bytes, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def _encode(suffix: str, image: np.ndarray) -> np.ndarray:
    """Fixed encoder settings: the same pixels give the same bytes."""
    if image.ndim == 3:  # RGB -> OpenCV's BGR
        image = np.ascontiguousarray(image[..., ::-1])
    params = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_OPTIMIZE, 0
              ] if suffix == '.jpg' else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    return cv2.imencode(suffix, image, params)[1]


def _images(seed: int, task: str, split: str, count: int, spec: SplitSpec):
    """``(index, rng, height, width)`` of each image of a split; a side
    that is a multiple of 32 moves by one pixel (models must pad)."""
    for index in range(count):
        rng = np.random.default_rng(
            [seed,
             list(TASKS).index(task) + 1, 1 + (split == 'val'), index])
        sides = rng.integers(spec.min_size, spec.max_size + 1, 2)
        h, w = (
            int(s + (s % 32 == 0) * (1 if s < spec.max_size else -1))
            for s in sides)
        yield index, rng, h, w


def write_imagenet(root: Path, seed: int, spec: SplitSpec) -> None:
    """Classes interleaved: image ``i`` of a split has label ``i % 10``."""
    for split, per_class in (('train', spec.train), ('val', spec.val)):
        lines = []
        for i, rng, h, w in _images(seed, 'cls', split,
                                    per_class * len(CLS_CLASSES), spec):
            label = i % len(CLS_CLASSES)
            folder = f'n{label:08d}'
            rel = (f'{folder}/{folder}_{i // len(CLS_CLASSES):05d}.JPEG'
                   if split == 'train' else f'ILSVRC2012_val_{i + 1:08d}.JPEG')
            scene = classification_scene(rng, h, w, label)
            _write(root / split / rel, _encode('.jpg', scene.image))
            lines.append(f'{rel} {label}')
        _write(root / 'meta' / f'{split}.txt',
               ''.join(f'{line}\n' for line in sorted(lines)).encode())
    _write(root / 'meta' / 'classes.txt',
           ''.join(f'{name}\n' for name in CLS_CLASSES).encode())


def write_coco(root: Path, seed: int, spec: SplitSpec) -> None:
    """Val image ids start above 1,000,000: unique across the splits."""
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(DET_CLASSES)
    ]
    for split, count in (('train', spec.train), ('val', spec.val)):
        images, annotations = [], []
        for i, rng, h, w in _images(seed, 'det', split, count, spec):
            image_id = i + 1 + (1_000_000 if split == 'val' else 0)
            name = f'{image_id:012d}.jpg'
            scene = multi_object_scene(rng, h, w)
            _write(root / f'{split}2017' / name, _encode('.jpg', scene.image))
            images.append(dict(id=image_id, file_name=name, height=h, width=w))
            for k, kind in enumerate(scene.kinds):
                ys, xs = np.nonzero(scene.owner == k)
                x, y = int(xs.min()), int(ys.min())
                box = [x, y, int(xs.max()) + 1 - x, int(ys.max()) + 1 - y]
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        bbox=box,
                        category_id=DET_CLASSES.index(kind) + 1,
                        iscrowd=0,
                        segmentation=mask_to_polygons(scene.owner == k),
                        area=len(xs)))
        data = dict(
            info=dict(description='saevit_mm synthetic demo data'),
            licenses=[],
            images=images,
            annotations=annotations,
            categories=categories)
        _write(root / 'annotations' / f'instances_{split}2017.json',
               json.dumps(data, separators=(',', ':')).encode())


def write_ade20k(root: Path, seed: int, spec: SplitSpec) -> None:
    for split, folder, count in (('train', 'training', spec.train),
                                 ('val', 'validation', spec.val)):
        for i, rng, h, w in _images(seed, 'seg', split, count, spec):
            scene = multi_object_scene(rng, h, w)
            name = f'ADE_{split}_{i + 1:08d}'
            _write(root / 'images' / folder / f'{name}.jpg',
                   _encode('.jpg', scene.image))
            _write(root / 'annotations' / folder / f'{name}.png',
                   _encode('.png', label_map(scene)))


def make_demo_data(root: Union[str, Path],
                   seed: int = 0,
                   tasks: Iterable[str] = tuple(TASKS),
                   spec: Optional[DemoDataSpec] = None) -> Dict[str, Path]:
    """Generate the synthetic sets under ``root``, skipping up-to-date ones.

    Each set is written to a staging directory and moved into place when
    complete, so an interrupted run never leaves one that looks finished.

    Args:
        root: Output directory, e.g. ``data/demo``.
        seed: Random seed (>= 0). Defaults to 0.
        tasks: Any of :data:`TASKS`. Defaults to all.
        spec: Counts and sizes. Defaults to ``DemoDataSpec()``.

    Returns:
        Task -> its data root (a config's ``data_root``).
    """
    spec, tasks = spec or DemoDataSpec(), list(dict.fromkeys(tasks))
    if not tasks or set(tasks) - set(TASKS):
        raise ValueError(f'Unknown or no tasks {tasks}; allowed tasks are '
                         f'{list(TASKS)}.')
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f'seed must be an int >= 0, got {seed!r}.')
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    writers = dict(cls=write_imagenet, det=write_coco, seg=write_ade20k)
    roots = {}
    for task in tasks:
        target = roots[task] = Path(root) / TASKS[task]
        params = dict(code=code, seed=seed, spec=asdict(getattr(spec, task)))
        if (target / MANIFEST).exists():
            if json.loads((target / MANIFEST).read_text()) == params:
                print(f'{task}: {target} (up to date)')
                continue
        elif target.exists():
            raise FileExistsError(
                f'{target} exists but was not made by the demo generator (no '
                f'{MANIFEST}); refusing to overwrite it.')
        staging = target.with_name(f'.{target.name}.partial')
        shutil.rmtree(staging, ignore_errors=True)
        writers[task](staging, seed, getattr(spec, task))
        (staging / MANIFEST).write_text(json.dumps(params, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        print(f'{task}: {target} (generated)')
    return roots
