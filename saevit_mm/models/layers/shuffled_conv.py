"""A grouped 1x1 convolution of channel-shuffled groups, without the shuffle.

ShuffleNet's redistribution, a channel shuffle of ``g`` equal maps followed
by a grouped 1x1 convolution with ``g`` groups, materialises the shuffled
map and then runs a grouped convolution, which takes a slow path on CPU.
When ``g`` divides a map's width, projection group ``m`` reads the ``m``-th
chunk of every map, so the same output is a sum of one batched product per
map: no shuffled copy and no grouped convolution.
"""
from typing import Sequence, Union

import torch
from torch import Tensor, nn

__all__ = ['channel_shuffle', 'ShuffledPointwiseConv']


def channel_shuffle(parts: Sequence[Tensor]) -> Tensor:
    """Interleave ``g`` equal NCHW groups: channel ``i * g + j`` of the
    result is channel ``i`` of ``parts[j]`` (one copy, no reshape)."""
    return torch.stack(tuple(parts), dim=2).flatten(1, 2)


class ShuffledPointwiseConv(nn.Conv2d):
    """Grouped 1x1 ``nn.Conv2d`` (bias optional) whose input is the channel
    shuffle of ``groups`` maps.

    Called with a sequence of exactly ``groups`` NCHW maps it returns
    ``conv2d(channel_shuffle(parts))``, computed without the shuffle when
    ``groups`` divides their width; called with a tensor it is the plain
    grouped convolution of that (already shuffled) tensor. Parameters and
    state-dict keys are those of ``nn.Conv2d``, so BN folding and
    checkpoints treat it as one.

    Args:
        in_channels: Channels of the shuffled map (``groups`` x the width
            of one part).
        out_channels: Output channels; divisible by ``groups``.
        groups: Number of parts and of convolution groups.
        bias: Add a learnable bias. Defaults to False.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 groups: int,
                 bias: bool = False) -> None:
        super().__init__(
            in_channels, out_channels, 1, groups=groups, bias=bias)

    def forward(self, x: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        if isinstance(x, Tensor):
            return super().forward(x)
        groups = self.groups
        if len(x) != groups:
            raise ValueError(
                f'ShuffledPointwiseConv with groups={groups} reads the '
                f'shuffle of {groups} maps, but got {len(x)}; pass a '
                'tensor for a plain grouped convolution.')
        first = x[0].shape
        if any(part.shape != first for part in x[1:]) \
                or first[1] * groups != self.in_channels:
            raise ValueError(
                f'ShuffledPointwiseConv with in_channels={self.in_channels} '
                f'and groups={groups} reads {groups} maps of one shape with '
                f'{self.in_channels // groups} channels each, but got shapes '
                f'{[tuple(part.shape) for part in x]}.')
        B, width, H, W = x[0].shape
        if width % groups:
            return super().forward(channel_shuffle(x))
        rows = self.out_channels // groups
        # weight[m * rows + r, k * groups + j] -> (j, m, r, k)
        weight = self.weight.view(groups, rows, width // groups,
                                  groups).permute(3, 0, 1, 2)
        out = None
        for j, part in enumerate(x):
            # the weight expanded over the batch: the FLOP counter's matmul
            # handle counts the first operand's batch dimensions only
            y = torch.matmul(weight[j].expand(B, -1, -1, -1),
                             part.reshape(B, groups, width // groups, H * W))
            out = y if out is None else out.add_(y)
        out = out.view(B, -1, H, W)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out
