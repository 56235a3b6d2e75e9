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

Deploy form (:meth:`CIFFN.switch_to_deploy`, once the norms of the
convolutions are folded) has two ways to run, the same function; which one
is faster depends on the map (measured on a 2-core CPU, batch 1 and 32, 224
and 800 px inputs):

* merged, for small maps: the expansion's output channels are permuted into
  the shuffled order and the ``g`` depth-wise convolutions become one, each
  channel keeping its own kernel zero-padded to the largest size.
  ``project(act(dwconv(expand(x))))``: four operators, no split, no stack,
  no copy (a zero-padded kernel with a wider padding computes the same
  sums). Fewest operators: fastest where per-operator overhead dominates
  (batch 1 at 224 after the first stage).
* branched, for large maps (at least :attr:`CIFFN.BRANCH_MIN_PIXELS`
  pixels, batch x height x width): one small FFN per group,
  ``sum_j project_j(act(dwconv_j(expand_j(x))))``, where ``expand_j`` holds
  the expansion rows of group ``j`` and ``project_j`` the projection
  columns that the shuffle sends group ``j`` to. Each depth-wise conv runs
  its own kernel (41 taps per channel on average for 3/5/7/9 instead of the
  merged 81), and every intermediate map is ``1/g`` of the hidden width,
  which stays in cache (and below glibc's mmap threshold) at batch 32.

Without autograd the activation runs in place on the convolution's output
(:func:`~.act_in_place.act_in_place`).
"""
from typing import Dict, Optional, Sequence

import torch
from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from .act_in_place import act_in_place
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

    #: Deploy form: the branched way runs from this many pixels (batch x
    #: height x width) up; below, the merged one (see the module docstring).
    #: The crossover measured on a 2-core CPU lies between 784 (batch 1,
    #: second stage at 224: merged faster) and 2500 (batch 1, third stage at
    #: 800: branched faster).
    BRANCH_MIN_PIXELS = 2048

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
        #: deploy form: the merged depth-wise convolution, else None
        self.dwconv: Optional[nn.Conv2d] = None
        #: deploy form: the per-group expansions and projections, else None
        self.expand_parts: Optional[nn.ModuleList] = None
        self.project_parts: Optional[nn.ModuleList] = None

    @torch.no_grad()
    def switch_to_deploy(self) -> bool:
        """Build the merged and the branched way of the deploy form (see the
        module docstring).

        Needs the norms of ``expand``, of every group convolution and of
        ``project`` folded into their convolutions (``nn.Identity``, as
        :func:`saevit_mm.deploy.switch_to_deploy` leaves them); otherwise
        nothing changes.

        Returns:
            Whether the module is in the deploy form now.
        """
        if self.dwconv is not None:
            return True
        folded = [self.expand.norm, self.project.norm
                  ] + [conv.norm for conv in self.dwconvs]
        if not all(isinstance(norm, nn.Identity) for norm in folded):
            return False
        groups, width = self.groups, self.dwconvs[0].conv.in_channels
        hidden = groups * width
        expand, project = self.expand.conv, self.project.conv
        # branched: group j is expansion rows j * width ..., and shuffled
        # channel i * g + j (channel i of group j) meets projection column
        # i * g + j, i.e. columns j::g
        self.expand_parts = nn.ModuleList()
        self.project_parts = nn.ModuleList()
        for j in range(groups):
            rows = slice(j * width, (j + 1) * width)
            part = nn.Conv2d(expand.in_channels, width, 1).to(expand.weight)
            part.weight.copy_(expand.weight[rows])
            part.bias.copy_(expand.bias[rows])
            self.expand_parts.append(part)
            bias = project.bias is not None and j == 0  # added once
            part = nn.Conv2d(width, project.out_channels, 1,
                             bias=bias).to(project.weight)
            part.weight.copy_(project.weight[:, j::groups])
            if bias:
                part.bias.copy_(project.bias)
            self.project_parts.append(part)
        # merged: shuffled channel i * g + j is channel i of group j, which
        # the expansion writes at j * width + i
        order = torch.arange(hidden).view(groups, width).t().reshape(-1)
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
        return True

    def _forward_branched(self, x: Tensor) -> Tensor:
        """Deploy form, branched way: one small FFN per group, summed."""
        out = None
        for expand, dwconv, project in zip(self.expand_parts, self.dwconvs,
                                           self.project_parts):
            y = project(act_in_place(self.act, dwconv(expand(x))))
            out = y if out is None else out.add_(y)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Apply the FFN to ``x`` (``B, C, H, W``); no residual added."""
        if self.dwconv is not None:
            B, _, H, W = x.shape
            if B * H * W >= self.BRANCH_MIN_PIXELS:
                return self._forward_branched(x)
            return self.project(
                act_in_place(self.act, self.dwconv(self.expand(x))))
        parts = self.expand(x).chunk(self.groups, dim=1)
        # decomposition, then redistribution (channel shuffle) in one copy
        x = torch.stack(
            [conv(part) for conv, part in zip(self.dwconvs, parts)],
            dim=2).flatten(1, 2)
        return self.project(self.act(x))
