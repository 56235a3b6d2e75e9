"""Parameter and FLOP counts, the same way for every model.

FLOPs come from the backbone package's counter
(:mod:`saevit_mm.models.utils`: mmengine ``FlopAnalyzer`` plus a handle for
``aten::scaled_dot_product_attention``, which mmengine 0.10.7 would count as
zero), so SAEViT and every peer are counted by one tool with one convention
(multiply-adds).
"""
from typing import Sequence

from torch import nn

__all__ = ['count_params', 'count_flops']


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Multiply-adds of one forward pass at ``input_shape`` (eval mode).

    Args:
        model: The model (traced by mmengine's ``FlopAnalyzer``).
        input_shape: ``(N, C, H, W)``.
    """
    from saevit_mm.models.utils import count_complexity
    batch, *chw = input_shape
    return float(
        count_complexity(model, tuple(chw), batch_size=batch)['flops'])
