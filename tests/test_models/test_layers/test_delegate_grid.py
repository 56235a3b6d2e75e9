"""The delegate grid SAA attends over at detection sizes, for the bounds of
the dense configs: above the bound between half the bound and the bound at
every input size, at or below it the layer's own ``ceil(h / r) x ceil(w /
r)`` grid.

Counted from what the attention core receives (a forward hook), on the meta
device: shapes only, no arithmetic.
"""
import math
from typing import Dict, Tuple

import pytest
import torch

from saevit_mm.models import SAEViT
from saevit_mm.models.layers import SparselyAggregatedAttention

#: Input sides: 224 to 1333 in steps of 32, then 1333 (COCO's long side)
#: and 1344 (800x1333 padded to a multiple of 32, as mmdet's batches are).
SIDES = (*range(224, 1333, 32), 1333, 1344)
#: The SAA bounds of the dense configs (``tests/test_configs.py``,
#: ``DENSE_BOUNDS``): det (the arch default), seg.
DENSE_BOUNDS = (1024, 2048)


class _Seen(Exception):
    """Raised by the hook: the grid is known, the rest of SAA is skipped."""


def _stop_at_attention(module, inputs):
    raise _Seen(tuple(inputs[0].shape[-2:]))


def attended_grid(saa: SparselyAggregatedAttention, height: int,
                  width: int) -> Tuple[int, int]:
    """Rows and columns of the delegates ``saa`` attends over on a
    ``height`` x ``width`` map (``saa`` on the meta device)."""
    handle = saa.attn.register_forward_pre_hook(_stop_at_attention)
    try:
        with torch.no_grad():
            saa(torch.empty(1, saa.proj.in_channels, height, width,
                            device='meta'))
    except _Seen as seen:
        return seen.args[0]
    finally:
        handle.remove()
    raise AssertionError('SAA did not call its attention')


def saa_layers_by_stage(model: SAEViT) -> Dict[int, list]:
    layers: Dict[int, list] = {}
    for name, module in model.named_modules():
        if isinstance(module, SparselyAggregatedAttention):
            layers.setdefault(int(name.split('.')[1]), []).append(module)
    return layers


def build_on_meta(arch: str, bound: int) -> SAEViT:
    return SAEViT(
        arch, max_delegates=bound, out_indices=(0, 1, 2, 3)).eval().to('meta')


def check_grid(saa, height, width, grid):
    """Above the bound: between half the bound and the bound; else the
    layer's own grid."""
    r, bound = saa.sample_ratio, saa.max_delegates
    own = (math.ceil(height / r), math.ceil(width / r))
    count = grid[0] * grid[1]
    if own[0] * own[1] > bound:
        assert bound / 2 <= count <= bound, (height, width, grid)
    else:
        assert grid == own, (height, width, grid)


@pytest.mark.parametrize('bound', DENSE_BOUNDS)
@pytest.mark.parametrize('arch', ['t', 's'])
def test_every_stage_attends_over_half_the_bound_to_the_bound(arch, bound):
    """Every input from 224x224 to 1344x1344 (both sides in steps of 32):
    every SAA layer on its stage's map (stride ``4 * 2^i``, rounded up; the
    test below checks that at the reference sizes)."""
    layers = saa_layers_by_stage(build_on_meta(arch, bound))
    assert sorted(layers) == [0, 1, 2, 3]
    above = 0
    for stage, stage_layers in layers.items():
        stride = 4 * 2**stage
        for saa in stage_layers:
            assert saa.max_delegates == bound
            r = saa.sample_ratio
            for height in SIDES:
                for width in SIDES:
                    h, w = -(-height // stride), -(-width // stride)
                    check_grid(saa, h, w, attended_grid(saa, h, w))
                    above += math.ceil(h / r) * math.ceil(w / r) > bound
    assert above > 0  # the sweep reaches the bound


#: Delegates attended per stage, at the det bound (1024) and the seg bound
#: (2048), for inputs ``H x W``.
COUNTS = {
    (1024, (800, 1344)): (700, 700, 525, 525),
    (1024, (800, 1333)): (700, 700, 525, 525),
    (1024, (1333, 800)): (700, 700, 525, 525),
    (1024, (800, 1216)): (950, 950, 950, 950),
    (1024, (512, 512)): (1024, 1024, 256, 256),
    (2048, (800, 1344)): (1050, 1050, 1050, 1050),
    (2048, (800, 1333)): (1050, 1050, 1050, 1050),
    (2048, (1333, 800)): (1050, 1050, 1050, 1050),
    (2048, (800, 1216)): (1900, 1900, 950, 950),
    (2048, (512, 512)): (1024, 1024, 256, 256),
}


@pytest.mark.parametrize('arch', ['t', 's'])
@pytest.mark.parametrize(
    'bound,size',
    sorted(COUNTS),
    ids=[f'{b}-{h}x{w}' for b, (h, w) in sorted(COUNTS)])
def test_every_saa_layer_at_detection_sizes(arch, bound, size):
    """The whole backbone (meta device): every SAA layer sees its stage's
    map, attends over the grid the sweep checks, and the counts are the
    ones ``docs/design.md`` reports."""
    model = build_on_meta(arch, bound)
    layers = saa_layers_by_stage(model)
    inputs, grids = {}, {}

    def recorder(saa, store):

        def record(module, args):
            assert saa not in store, 'called twice'
            store[saa] = tuple(args[0].shape[-2:])

        return record

    handles = []
    for saa in (m for stage_layers in layers.values() for m in stage_layers):
        handles += [
            saa.register_forward_pre_hook(recorder(saa, inputs)),
            saa.attn.register_forward_pre_hook(recorder(saa, grids))
        ]
    try:
        with torch.no_grad():
            model(torch.empty(1, 3, *size, device='meta'))
    finally:
        for handle in handles:
            handle.remove()
    assert len(inputs) == len(grids) == sum(map(len, layers.values()))
    for stage, stage_layers in layers.items():
        stride = 4 * 2**stage
        map_size = (-(-size[0] // stride), -(-size[1] // stride))
        for saa in stage_layers:
            assert inputs[saa] == map_size
            grid = grids[saa]
            check_grid(saa, *map_size, grid)
            assert grid == attended_grid(saa, *map_size)
            assert grid[0] * grid[1] == COUNTS[bound, size][stage], stage
