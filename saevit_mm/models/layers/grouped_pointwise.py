"""A grouped 1x1 convolution computed as one batched matrix product.

CIFFN's projection reads its redistributed map in ``g`` groups of
consecutive channels. As a grouped ``conv2d`` it takes a slow path on CPU
(2-core Xeon, forward + backward on a 2 x 120 x 200 x 336 map into 40
channels, 4 groups: 80 ms against 44 ms for the product); as ``g`` products
it costs ``g`` times the launches. One ``matmul`` of the ``(g, out / g, in /
g)`` weight with the ``(B, g, in / g, H * W)`` view of an NCHW map is the
same sums, in one product.
"""
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ['channel_shuffle', 'GroupedPointwiseConv']


def channel_shuffle(parts: Sequence[Tensor]) -> Tensor:
    """Interleave ``g`` equal NCHW groups: channel ``i * g + j`` of the
    result is channel ``i`` of ``parts[j]`` (one copy)."""
    return torch.stack(tuple(parts), dim=2).flatten(1, 2)


class GroupedPointwiseConv(nn.Conv2d):
    """Grouped 1x1 ``nn.Conv2d`` (bias optional), computed as one batched
    product (a channels-last map is copied to NCHW first). Parameters
    and state-dict keys are those of ``nn.Conv2d``, so BN folding and
    checkpoints treat it as one.

    Args:
        in_channels: Input channels; divisible by ``groups``.
        out_channels: Output channels; divisible by ``groups``.
        groups: Convolution groups.
        bias: Add a learnable bias. Defaults to False.

    Example:
        >>> import torch
        >>> conv = GroupedPointwiseConv(8, 4, groups=2)
        >>> x = torch.randn(1, 8, 3, 5)
        >>> torch.allclose(conv(x), conv._conv_forward(x, conv.weight, None))
        True
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 groups: int,
                 bias: bool = False) -> None:
        super().__init__(
            in_channels, out_channels, 1, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'GroupedPointwiseConv with in_channels={self.in_channels} '
                f'reads an NCHW map of {self.in_channels} channels, but got '
                f'shape {tuple(x.shape)}.')
        B, _, H, W = x.shape
        groups = self.groups
        # (B * g) products of the weight (copied over the batch) with a
        # view of x: no reshape of the result
        weight = self.weight.view(groups, self.out_channels // groups, -1)
        weight = weight.expand(B, -1, -1, -1).reshape(B * groups,
                                                      *weight.shape[1:])
        out = torch.bmm(weight, x.reshape(B * groups, -1, H * W))
        out = out.view(B, -1, H, W)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return out
