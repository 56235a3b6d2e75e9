"""Helpers shared by the backbone tests."""
from typing import Iterator, Mapping

import torch
from torch import nn

from saevit_mm.models.utils import is_norm

#: A custom arch small enough for gradient tests in milliseconds; it keeps
#: every feature of the real archs (four stages, sample ratios 4/2/2/1, one
#: and several heads, CIFFN groups).
TINY_ARCH = dict(
    embed_dims=(8, 16, 24, 32),
    depths=(1, 1, 2, 1),
    num_heads=(1, 2, 2, 4),
    sample_ratios=(4, 2, 2, 1),
    ffn_ratio=2)


def norm_layers(module: nn.Module) -> Iterator[nn.Module]:
    """Every normalization layer inside ``module``."""
    return (m for m in module.modules() if is_norm(m))


def check_norm_state(module: nn.Module, train_state: bool) -> bool:
    """Whether every norm layer of ``module`` has ``training == state``."""
    layers = list(norm_layers(module))
    assert layers, 'the module has no norm layer to check'
    return all(m.training == train_state for m in layers)


def expected_size(size: int, stride: int) -> int:
    """Side of a stage output: every stride-2 3x3 conv rounds up."""
    return -(-size // stride)


def all_finite(outs) -> bool:
    return all(torch.isfinite(o).all().item() for o in outs)


def assert_same_state(actual: Mapping[str, torch.Tensor],
                      expected: Mapping[str, torch.Tensor],
                      exact: bool = False) -> None:
    """Same keys (compared first, so nothing is skipped), then each entry
    equal: bit for bit with ``exact``, else within ``assert_close``'s
    default tolerance (integer buffers such as ``num_batches_tracked`` are
    always compared exactly)."""
    assert actual.keys() == expected.keys(), (
        'missing', sorted(expected.keys() - actual.keys()), 'unexpected',
        sorted(actual.keys() - expected.keys()))
    tolerance = dict(rtol=0, atol=0) if exact else {}
    for name, value in expected.items():
        torch.testing.assert_close(
            actual[name],
            value,
            msg=lambda text, name=name: f'{name}: {text}',
            **tolerance)
