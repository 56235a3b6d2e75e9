"""What a scene of each task holds (the object requests per image).

Both recipes share :func:`demo_data.scene.compose_scene`; they differ
only in the objects they ask for.
"""
from typing import Sequence

import numpy as np

from .scene import ObjectRequest, Scene, compose_scene

__all__ = ['classification_scene', 'multi_object_scene']


def classification_scene(rng: np.random.Generator, height: int, width: int,
                         classes: Sequence[str], label: int) -> Scene:
    """One large shape of ``classes[label]`` among up to two small shapes
    of other classes, which may cover at most 20% of it.

    Args:
        rng: The image's random stream.
        height: Image height.
        width: Image width.
        classes: Class names (shape kinds).
        label: Index of the class of the main shape.

    Returns:
        The scene; ``objects[0]`` is the main shape.
    """
    if not 0 <= label < len(classes):
        raise ValueError(f'label must be in [0, {len(classes)}), got {label}.')
    others = [name for i, name in enumerate(classes) if i != label]
    requests = [
        ObjectRequest(
            classes[label], (0.26, 0.42),
            min_visible=0.8,
            min_inside=0.85,
            center_margin=0.3,
            max_aspect=1.8)
    ]
    for _ in range(int(rng.integers(0, 3))):
        kind = others[int(rng.integers(len(others)))]
        requests.append(ObjectRequest(kind, (0.07, 0.14), min_visible=0.5))
    scene = compose_scene(
        rng, height, width, requests, clutter=(0, 3), min_pixels=24)
    if not scene.objects or scene.objects[0].kind != classes[label]:
        raise RuntimeError('The main shape of a classification scene could '
                           f'not be placed in a {height}x{width} image.')
    return scene


def multi_object_scene(rng: np.random.Generator, height: int, width: int,
                       classes: Sequence[str]) -> Scene:
    """Two to seven shapes of random classes, radii from 7% to 38% of the
    shorter side, aspect ratios up to 2:1, with occlusion and clutter.

    Args:
        rng: The image's random stream.
        height: Image height.
        width: Image width.
        classes: Class names (shape kinds) to draw from uniformly.

    Returns:
        The scene (placements that break a constraint are dropped, so it may
        hold fewer objects than requested, but at least one).
    """
    count = int(rng.integers(2, 8))
    requests = [
        ObjectRequest(classes[int(rng.integers(len(classes)))], (0.07, 0.38))
        for _ in range(count)
    ]
    scene = compose_scene(rng, height, width, requests, clutter=(1, 4))
    if not scene.objects:
        raise RuntimeError(f'No object could be placed in a {height}x{width} '
                           'image.')
    return scene
