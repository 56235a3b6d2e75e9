"""CIFFN: the Channel-Interactive Feed-Forward Network (arXiv 2508.16884).

Follows the paper: an FFN that strengthens the exchange of information
between channels by feature decomposition and redistribution. Our design of
those steps (ShuffleNet's shuffle between grouped operators):

1. 1x1 expansion ``C -> eC`` (+ norm).
2. Decomposition: the ``eC`` channels are split into ``g`` groups and each
   group gets its own depth-wise convolution (+ norm) with its own kernel
   size (default 3/5/7/9: multi-scale local context).
3. Redistribution: a channel shuffle across the groups, so every run of
   ``g`` consecutive channels holds one channel of each group; then the
   activation.
4. Grouped 1x1 projection ``eC -> C`` (``g`` groups, + norm): output group
   ``m`` reads ``eC / g`` shuffled channels, a share of every
   decomposition group (equal shares when ``g`` divides ``eC / g``).
   Without the shuffle it would read group ``m`` alone, so each output
   channel would see one kernel size only; a dense projection would absorb
   the shuffle into its column order. Computed by
   :class:`ShuffledPointwiseConv` from the activated groups, without a
   shuffled copy.

Deploy form (:meth:`CIFFN.switch_to_deploy`, once the norms are folded;
no grouped 1x1 convolution, which takes a slow path on CPU, and no
hidden-width split, shuffle or concatenation):

- Small maps (fewer than :attr:`CIFFN.MERGE_MAX_PIXELS` pixels, batch x
  height x width): the expansion and one merged depth-wise convolution
  (each channel its own kernel, zero-padded to the largest size), with
  their channels already in the shuffled order, then the projection as
  ``g`` block products (``baddbmm``).
- Large maps: one group at a time, end to end (its rows of the
  expansion, its depth-wise convolution, the activation), its share of
  the projection accumulated into the output: block products from its
  ``g`` chunks (one per projection group) when a chunk is at least
  :attr:`CIFFN.CHUNK_MIN_WIDTH` channels wide, else the group's columns of
  the dense block-diagonal projection. A group's hidden map stays small
  enough for the cache: about 2x faster than the whole-width form on the
  first stage's maps of a batch of 32 at 224 pixels (2-core CPU).
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from .act_in_place import act_in_place
from .conv_norm import ConvNorm
from .shuffled_conv import ShuffledPointwiseConv

__all__ = ['CIFFN']


def _pixel_rows(x: Tensor) -> Tensor:
    """A channels-last ``x`` (``B, C, H, W``) as a ``(B * H * W, C)``
    view."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class CIFFN(nn.Module):
    """Channel-Interactive FFN on an NCHW map.

    Submodules: ``expand`` (:class:`ConvNorm` 1x1), ``dwconvs`` (one
    depth-wise :class:`ConvNorm` per group), ``act``, ``project`` (grouped
    :class:`ConvNorm` 1x1).

    Args:
        embed_dims: Channels ``C`` of the input and output; must be
            divisible by the number of groups.
        ffn_ratio: Expansion ``e``; the hidden width ``int(e * C)`` must be
            divisible by the number of groups. Defaults to 3.
        kernel_sizes: Odd kernel size of each group's depth-wise conv; the
            number of entries is the number of groups ``g``. Defaults to
            ``(3, 5, 7, 9)``.
        redistribute: Shuffle the channels between the groups. ``False``
            is the ablation without redistribution: each projection group
            then reads one decomposition group. Defaults to True.
        norm_cfg: Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg: Activation config. Defaults to ``dict(type='GELU')``.

    Example:
        >>> import torch
        >>> ffn = CIFFN(32, ffn_ratio=2)
        >>> print(ffn(torch.rand(2, 32, 7, 9)).shape)
        torch.Size([2, 32, 7, 9])
    """

    #: Deploy form: maps with fewer pixels (batch x height x width) run the
    #: merged depth-wise convolution, larger ones one group at a time (see
    #: the module docstring; on a 2-core CPU the merged form was faster at
    #: 3136 pixels, the per-group one at 6272).
    MERGE_MAX_PIXELS = 4096
    #: Deploy form on large maps: the projection runs as block products when
    #: a group's chunk for one projection group (hidden / groups**2
    #: channels) is at least this wide, else through dense columns (on a
    #: 2-core CPU: block products faster at 48 channels, slower at 10).
    CHUNK_MIN_WIDTH = 32

    def __init__(self,
                 embed_dims: int,
                 ffn_ratio: float = 3,
                 kernel_sizes: Sequence[int] = (3, 5, 7, 9),
                 redistribute: bool = True,
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
        if hidden < groups or hidden % groups or embed_dims % groups:
            raise ValueError(
                f'CIFFN: embed_dims ({embed_dims}) and the hidden width '
                f'int({embed_dims} * {ffn_ratio}) = {hidden} must both be '
                'positive multiples of the number of groups '
                f'len(kernel_sizes) = {groups}.')
        self.groups = groups
        self.redistribute = redistribute
        width = hidden // groups
        self.expand = ConvNorm(embed_dims, hidden, 1, norm_cfg=norm_cfg)
        self.dwconvs = nn.ModuleList(
            ConvNorm(width, width, k, groups=width, norm_cfg=norm_cfg)
            for k in kernel_sizes)
        self.act = build_activation_layer(act_cfg)
        self.project = ConvNorm(
            hidden, embed_dims, 1, groups=groups, norm_cfg=norm_cfg)
        # reads the shuffled parts without a shuffled copy (same weight)
        self.project.conv = ShuffledPointwiseConv(hidden, embed_dims, groups)
        #: in the deploy form (:meth:`switch_to_deploy`)
        self.deploy = False
        #: deploy form on small maps: the expansion and the merged
        #: depth-wise convolution
        self.merged: Optional[nn.Sequential] = None

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Switch to the deploy form (module docstring).

        Raises:
            RuntimeError: A norm of the expansion, of a group convolution or
                of the projection is not folded yet (fold them first, as
                :meth:`SAEViT.switch_to_deploy` does).
        """
        if self.deploy:
            return
        convs = [self.expand, *self.dwconvs, self.project]
        if not all(isinstance(conv.norm, nn.Identity) for conv in convs):
            raise RuntimeError(
                'CIFFN.switch_to_deploy needs every norm folded into its '
                'convolution first (SAEViT.switch_to_deploy does '
                'that); found unfolded norms.')
        groups, width = self.groups, self.dwconvs[0].conv.in_channels
        hidden, project = groups * width, self.project.conv
        # shuffled position of each unshuffled channel j * width + i
        # (i * groups + j; the identity without redistribution)
        shuffled = torch.arange(hidden).view(width, groups).t().reshape(-1) \
            if self.redistribute else torch.arange(hidden)
        rows = project.out_channels // groups
        # projection group m: (width, rows) from its width shuffled inputs
        blocks = project.weight.flatten(1).view(groups, rows, width)
        self.register_buffer(
            'blocks', blocks.transpose(1, 2).contiguous(), persistent=False)
        # from the m-th chunk of width / groups channels of group j, as
        # (groups * groups, width / groups, rows), j major (3-D: no
        # channels-last conversion); only the shuffle gives every group
        # a chunk in every projection group, and equal chunks only when
        # groups divides width (else the dense columns serve)
        self.register_buffer(
            'chunk_blocks',
            self.blocks.view(groups, width // groups, groups, rows).permute(
                2, 0, 1, 3).reshape(-1, width // groups, rows).contiguous()
            if self.redistribute and width % groups == 0 else None,
            persistent=False)
        dense = torch.block_diag(*blocks)[:, shuffled]  # unshuffled columns
        self.project.conv = nn.Conv2d(hidden, project.out_channels,
                                      1).to(project.weight)
        self.project.conv.weight.copy_(dense[:, :, None, None])
        self.project.conv.bias.copy_(project.bias)
        # merged form: channels in the order the projection reads them
        order = torch.argsort(shuffled)
        expand = nn.Conv2d(*self.expand.conv.weight.shape[1::-1],
                           1).to(project.weight)
        expand.weight.copy_(self.expand.conv.weight[order])
        expand.bias.copy_(self.expand.conv.bias[order])
        size = max(conv.conv.kernel_size[0] for conv in self.dwconvs)
        dwconv = nn.Conv2d(
            hidden, hidden, size, padding=size // 2, groups=hidden).to(
                expand.weight)
        # each group's kernel zero-padded to the largest, then reordered
        weight = torch.zeros_like(dwconv.weight)
        for j, part in enumerate(self.dwconvs):
            start = (size - part.conv.kernel_size[0]) // 2
            stop = start + part.conv.kernel_size[0]
            weight[j * width:(j + 1) * width, :, start:stop,
                   start:stop] = part.conv.weight
        bias = torch.cat([part.conv.bias for part in self.dwconvs])
        dwconv.weight.copy_(weight[order])
        dwconv.bias.copy_(bias[order])
        self.merged = nn.Sequential(expand, dwconv)
        self.deploy = True

    def forward(self, x: Tensor) -> Tensor:
        """Apply the FFN to ``x`` (``B, C, H, W``); no residual added."""
        B, _, H, W = x.shape
        if self.deploy:
            # channels-last throughout (a no-op in a deployed SAEViT): the
            # products read pixel rows, and torch 2.1's GELU backward gives
            # zeros for an NCHW input with a channels-last gradient
            x = x.contiguous(memory_format=torch.channels_last)
            if B * H * W < self.MERGE_MAX_PIXELS:
                hidden = act_in_place(self.act, self.merged(x))
                return self._project_by_blocks(hidden, self.blocks)
            return self._forward_by_group(x)
        parts = [
            conv(part) for conv, part in zip(
                self.dwconvs, self.expand(x).chunk(self.groups, dim=1))
        ]
        if self.redistribute:  # the projection reads the parts shuffled
            parts = [act_in_place(self.act, part) for part in parts]
            return self.project(parts)
        return self.project(act_in_place(self.act, torch.cat(parts, dim=1)))

    def _project_by_blocks(self, x: Tensor, blocks: Tensor,
                           out: Optional[Tensor] = None) -> Tensor:
        """``out`` (``(k, B * H * W, n)``, or the bias) plus the k
        products of ``x``'s equal channel chunks with ``blocks``
        (``(k, c, n)``); shaped back to ``(B, k * n, H, W)`` (channels-last
        memory) when ``out`` is None."""
        B, _, H, W = x.shape
        k, c, n = blocks.shape
        chunks = _pixel_rows(x).view(-1, k, c).transpose(0, 1)
        blocks = blocks.to(x.dtype)
        if out is not None:
            return out.baddbmm_(chunks, blocks)
        bias = self.project.conv.bias.to(x.dtype).view(k, 1, n)
        out = torch.baddbmm(bias, chunks, blocks)
        return out.transpose(0, 1).reshape(B, H, W, -1).permute(0, 3, 1, 2)

    def _forward_by_group(self, x: Tensor) -> Tensor:
        """Deploy form on large maps: one group at a time, its projection
        accumulated (module docstring)."""
        B, _, H, W = x.shape
        expand, project = self.expand.conv, self.project.conv
        width = expand.out_channels // self.groups
        # every group feeds every projection group in chunks: block
        # products when the chunks are wide, else the dense columns
        by_chunk = self.chunk_blocks is not None and \
            self.chunk_blocks.shape[1] >= self.CHUNK_MIN_WIDTH
        weight = project.weight.flatten(1)  # (C, hidden), unshuffled columns
        out = None
        for j, dwconv in enumerate(self.dwconvs):
            rows = slice(j * width, (j + 1) * width)
            part = dwconv(F.conv2d(x, expand.weight[rows], expand.bias[rows]))
            part = act_in_place(self.act, part)
            if by_chunk:
                blocks = self.chunk_blocks[j * self.groups:(j + 1) *
                                           self.groups]
                if out is None:  # (groups, B * H * W, C / groups)
                    out = project.bias.to(part.dtype).view(
                        self.groups, 1, -1).expand(-1, B * H * W,
                                                   -1).contiguous()
                self._project_by_blocks(part, blocks, out)
                continue
            part = _pixel_rows(part)
            columns = weight[:, rows].t().to(part.dtype)
            out = torch.addmm(project.bias.to(part.dtype), part, columns) \
                if out is None else out.addmm_(part, columns)
        if by_chunk:
            out = out.transpose(0, 1)
        return out.reshape(B, H, W, -1).permute(0, 3, 1, 2)
