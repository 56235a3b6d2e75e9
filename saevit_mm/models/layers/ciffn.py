"""CIFFN: the Channel-Interactive Feed-Forward Network (arXiv 2508.16884).

Follows the paper: an FFN that strengthens the exchange of information
between channels by feature decomposition and redistribution. Our design of
those two steps:

1. 1x1 expansion ``C -> eC`` (+ norm).
2. Decomposition: the ``eC`` channels are split into ``g`` groups and each
   group gets its own depth-wise convolution (+ norm) with its own kernel
   size (default 3/5/7/9: multi-scale local context).
3. Redistribution: a ShuffleNet channel shuffle across the groups, so every
   group of ``g`` consecutive output channels holds one channel of each
   input group; then the activation.
4. 1x1 projection ``eC -> C`` (+ norm).

NOTE: the shuffle is written as ``torch.stack(groups, dim=2).flatten(1, 2)``,
which produces the shuffled order directly (channel ``i * g + j`` is channel
``i`` of group ``j``) in one copy instead of a concatenation plus a
reshape-transpose-reshape.

Deploy form (:meth:`CIFFN.switch_to_deploy`, once the norms of the expansion
and of the group convolutions are folded): the expansion's output channels
are permuted into the shuffled order and the ``g`` depth-wise convolutions
become one, each channel keeping its own kernel zero-padded to the largest
size. ``project(act(dwconv(expand(x))))``: no split, no stack, no copy, the
same outputs (a zero-padded kernel with a wider padding computes the same
sums).
"""
from typing import Dict, Optional, Sequence

import torch
from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from .conv_norm import ConvNorm

__all__ = ['CIFFN']


class CIFFN(nn.Module):
    """Channel-Interactive FFN on an NCHW map.

    Submodules: ``expand`` (:class:`ConvNorm` 1x1), ``dwconvs`` (one
    depth-wise :class:`ConvNorm` per group), ``act``, ``project``
    (:class:`ConvNorm` 1x1).

    Args:
        embed_dims: Channels ``C`` of the input and output.
        ffn_ratio: Expansion ``e``; the hidden width ``int(e * C)`` must be
            divisible by the number of groups. Defaults to 3.
        kernel_sizes: Odd kernel size of each group's depth-wise conv; the
            number of entries is the number of groups ``g``. Defaults to
            ``(3, 5, 7, 9)``.
        norm_cfg: Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg: Activation config. Defaults to ``dict(type='GELU')``.

    Example:
        >>> import torch
        >>> ffn = CIFFN(32, ffn_ratio=2)
        >>> print(ffn(torch.rand(2, 32, 7, 9)).shape)
        torch.Size([2, 32, 7, 9])
    """

    def __init__(self,
                 embed_dims: int,
                 ffn_ratio: float = 3,
                 kernel_sizes: Sequence[int] = (3, 5, 7, 9),
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='GELU')) -> None:
        super().__init__()
        kernel_sizes = tuple(kernel_sizes)
        hidden = int(embed_dims * ffn_ratio)
        groups = len(kernel_sizes)
        if groups == 0 or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 1
                or k % 2 == 0 for k in kernel_sizes):
            raise ValueError('kernel_sizes must be a non-empty sequence of '
                             f'odd positive ints, but got {kernel_sizes}.')
        if hidden < groups or hidden % groups != 0:
            raise ValueError(
                f'The CIFFN hidden width int({embed_dims} * {ffn_ratio}) = '
                f'{hidden} must be a positive multiple of the number of '
                f'groups len(kernel_sizes) = {groups}.')
        self.groups = groups
        width = hidden // groups
        self.expand = ConvNorm(embed_dims, hidden, 1, norm_cfg=norm_cfg)
        self.dwconvs = nn.ModuleList(
            ConvNorm(width, width, k, groups=width, norm_cfg=norm_cfg)
            for k in kernel_sizes)
        self.act = build_activation_layer(act_cfg)
        self.project = ConvNorm(hidden, embed_dims, 1, norm_cfg=norm_cfg)
        #: the merged depth-wise convolution of the deploy form, else None
        self.dwconv: Optional[nn.Conv2d] = None

    @torch.no_grad()
    def switch_to_deploy(self) -> bool:
        """Merge the group convolutions into one (see the module docstring).

        Needs the norms of ``expand`` and of every group convolution folded
        into their convolutions (``nn.Identity``, as
        :func:`saevit_mm.deploy.switch_to_deploy` leaves them); otherwise
        nothing changes.

        Returns:
            Whether the module is in the deploy form now.
        """
        if self.dwconv is not None:
            return True
        folded = [self.expand.norm] + [conv.norm for conv in self.dwconvs]
        if not all(isinstance(norm, nn.Identity) for norm in folded):
            return False
        groups, width = self.groups, self.dwconvs[0].conv.in_channels
        hidden = groups * width
        # shuffled channel i * g + j is channel i of group j, which the
        # expansion writes at j * width + i
        order = torch.arange(hidden).view(groups, width).t().reshape(-1)
        expand = self.expand.conv
        expand.weight.copy_(expand.weight[order])
        expand.bias.copy_(expand.bias[order])
        size = max(conv.conv.kernel_size[0] for conv in self.dwconvs)
        merged = nn.Conv2d(
            hidden, hidden, size, padding=size // 2, groups=hidden).to(
                expand.weight)
        merged.weight.zero_()
        for j, part in enumerate(self.dwconvs):
            k = part.conv.kernel_size[0]
            start = (size - k) // 2
            merged.weight[j::groups, :, start:start + k, start:start + k] = \
                part.conv.weight
            merged.bias[j::groups] = part.conv.bias
        self.dwconv = merged
        del self.dwconvs
        return True

    def forward(self, x: Tensor) -> Tensor:
        """Apply the FFN to ``x`` (``B, C, H, W``); no residual added."""
        if self.dwconv is not None:
            return self.project(self.act(self.dwconv(self.expand(x))))
        parts = self.expand(x).chunk(self.groups, dim=1)
        # decomposition, then redistribution (channel shuffle) in one copy
        x = torch.stack(
            [conv(part) for conv, part in zip(self.dwconvs, parts)],
            dim=2).flatten(1, 2)
        return self.project(self.act(x))
