"""Deterministic file writing for the demo sets.

Same input, same bytes: JPEG quality and PNG compression are fixed, JSON is
written compactly in insertion order, and per-image random streams are
seeded from ``(seed, task, split, index)`` so no image depends on another.
"""
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, Tuple, TypeVar

import cv2
import numpy as np

__all__ = [
    'JPEG_QUALITY', 'Progress', 'no_progress', 'image_rng', 'image_size',
    'write_jpeg', 'write_png', 'write_json', 'write_lines', 'tree_digest'
]

#: JPEG quality of every demo image.
JPEG_QUALITY = 90

T = TypeVar('T')

#: ``progress(iterable, description, total)`` yields the items of
#: ``iterable`` while reporting them (e.g. ``rich.progress.track``).
Progress = Callable[[Iterable[T], str, int], Iterable[T]]

_TASK_KEYS = {'cls': 1, 'det': 2, 'seg': 3}
_SPLIT_KEYS = {'train': 1, 'val': 2}


def no_progress(items: Iterable[T], description: str,
                total: int) -> Iterable[T]:
    """The default :data:`Progress`: report nothing."""
    return items


def image_rng(seed: int, task: str, split: str,
              index: int) -> np.random.Generator:
    """The independent random stream of one image.

    Args:
        seed: The user's seed.
        task: ``'cls'``, ``'det'`` or ``'seg'``.
        split: ``'train'`` or ``'val'``.
        index: The image index inside the split.
    """
    if seed < 0:
        raise ValueError(f'seed must be >= 0, got {seed}.')
    return np.random.default_rng(
        [seed, _TASK_KEYS[task], _SPLIT_KEYS[split], index])


def image_size(rng: np.random.Generator, low: int,
               high: int) -> Tuple[int, int]:
    """``(height, width)`` drawn in ``[low, high]``, never a multiple of 32.

    A side that lands on a multiple of 32 moves one pixel (down if it would
    leave the range), so the data exercise padding in every stride-32 model.
    """

    def side() -> int:
        value = int(rng.integers(low, high + 1))
        if value % 32 == 0:
            value = value + 1 if value + 1 <= high else value - 1
        return value

    return side(), side()


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` uint8 RGB image as baseline JPEG."""
    ok, data = cv2.imencode(
        '.jpg', np.ascontiguousarray(rgb[..., ::-1]),
        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_OPTIMIZE, 0])
    if not ok:
        raise OSError(f'OpenCV could not encode {path} as JPEG.')
    _write_bytes(path, data.tobytes())


def write_png(path: Path, labels: np.ndarray) -> None:
    """Write an ``(H, W)`` uint8 label map as a single-channel PNG."""
    if labels.dtype != np.uint8 or labels.ndim != 2:
        raise ValueError('Label maps must be 2-D uint8, got '
                         f'{labels.ndim}-D {labels.dtype}.')
    ok, data = cv2.imencode('.png', labels, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise OSError(f'OpenCV could not encode {path} as PNG.')
    _write_bytes(path, data.tobytes())


def write_json(path: Path, obj: Any) -> None:
    """Write compact JSON (the layout of the official COCO files)."""
    _write_bytes(path, json.dumps(obj, separators=(',', ':')).encode())


def write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write ``lines``, each ending with a newline."""
    _write_bytes(path, ''.join(f'{line}\n' for line in lines).encode())


def tree_digest(root: Path, exclude: Sequence[str] = ()) -> str:
    """SHA-256 over the relative paths and bytes of every file in ``root``.

    Args:
        root: Directory to hash.
        exclude: Relative paths to leave out (e.g. the manifest itself).
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in exclude:
            continue
        digest.update(rel.encode() + b'\0')
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
