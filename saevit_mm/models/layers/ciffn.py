"""CIFFN: the Channel-Interactive Feed-Forward Network (arXiv 2508.16884).

Follows the paper: an FFN that strengthens the exchange of information
between channels by feature decomposition and redistribution. Our design of
those steps (ShuffleNet's shuffle between grouped operators):

1. 1x1 expansion ``C -> eC`` (+ norm).
2. Decomposition: the ``eC`` channels are split into ``g`` groups and each
   group gets its own depth-wise convolution with its own kernel size
   (default 3/5/7/9: multi-scale local context).
3. Redistribution: a channel shuffle across the groups, so every run of
   ``g`` consecutive channels holds one channel of each group; then the
   norm (one per-channel norm over the shuffled map; a norm with statistics
   across channels, such as GN, normalises each group before the shuffle)
   and the activation.
4. Grouped 1x1 projection ``eC -> C`` (``g`` groups, + norm): output group
   ``m`` reads ``eC / g`` consecutive shuffled channels, a share of every
   decomposition group (equal shares when ``g`` divides ``eC / g``).
   Without the shuffle it would read group ``m`` alone, so each output
   channel would see one kernel size only; a dense projection would absorb
   the shuffle into its column order. Computed by
   :class:`~.grouped_pointwise.GroupedPointwiseConv`: one batched product.

A batch norm is per channel, so normalising the shuffled map is the same
function as normalising each group's output before the shuffle, in one op
instead of ``g``. Checkpoints of the per-group layout
(``dwconvs.<j>.conv.weight``, ``dwconvs.<j>.norm.*``) load into this one
(:meth:`CIFFN.upgrade_state_dict`).

Deploy form (:meth:`CIFFN.switch_to_deploy`, or ``deploy=True`` to build
it; no grouped 1x1 convolution, which takes a slow path on CPU, and no
hidden-width split, shuffle or concatenation). Its weights, each stored
once (they are its state dict):

- ``expand``: the 1x1 expansion with its norm and the block's pre-norm
  folded in, its output channels already in the shuffled order;
- ``dwconv``: the merged depth-wise convolution in that order, each
  channel's kernel zero-padded to the largest size;
- ``project``: the grouped 1x1 projection of the shuffled map (norm
  folded), computed as block products.

It runs one of two ways:

- Small maps (fewer than :attr:`CIFFN.MERGE_MAX_PIXELS` pixels, batch x
  height x width): ``expand``, ``dwconv``, then the projection as ``g``
  block products (``baddbmm``).
- Large maps: one group at a time, end to end (its rows of the
  expansion, its own kernel cut from the merged one, the activation), its
  share of the projection accumulated into the output: block products from
  its ``g`` chunks (one per projection group) when a chunk is at least
  :attr:`CIFFN.CHUNK_MIN_WIDTH` channels wide, else the group's columns of
  the dense block-diagonal projection. A group's hidden map stays small
  enough for the cache: about 2x faster than the whole-width form on the
  first stage's maps of a batch of 32 at 224 pixels (2-core CPU). The
  group's weights are views of the merged ones; what is copied per forward
  (the dense columns, strided weights) is small against a large map.
"""
from typing import Dict, MutableMapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from ..utils.backbone_utils import is_batch_norm
from ..utils.fuse import check_foldable_bn, fuse_conv_bn_
from .act_in_place import act_in_place
from .conv_norm import ConvNorm, switch_conv_norms
from .grouped_pointwise import GroupedPointwiseConv, channel_shuffle
from .norm import build_norm2d
from .norm_act_op import (ConvOp, GroupedProductOp, ShuffledDepthwiseOp,
                          fusable, norm_act_op, records_eagerly)

__all__ = ['CIFFN']


def _pixel_rows(x: Tensor) -> Tensor:
    """A channels-last ``x`` (``B, C, H, W``) as a ``(B * H * W, C)``
    view."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class CIFFN(nn.Module):
    """Channel-Interactive FFN on an NCHW map.

    Submodules: ``expand`` (:class:`ConvNorm` 1x1), ``dwconvs`` (one
    depth-wise ``nn.Conv2d`` per group), ``dw_norm`` (the norm of the
    shuffled map, or a ``ModuleList`` of one per group), ``act``,
    ``project`` (grouped :class:`ConvNorm` 1x1); in the deploy form
    ``expand``, ``dwconv``, ``act``, ``project`` (module docstring).

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
        deploy: Build the deploy form (module docstring). Defaults to
            False.

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
                 act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False) -> None:
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
        self.kernel_sizes: Tuple[int, ...] = kernel_sizes
        self.redistribute = redistribute
        #: in the deploy form (:meth:`switch_to_deploy`)
        self.deploy = deploy
        if deploy:
            self.expand, self.dwconv, self.project = _deploy_convs(
                embed_dims, hidden, kernel_sizes)
            self.act = build_activation_layer(act_cfg)
            self._reorder_children()
            return
        width = hidden // groups
        self.expand = ConvNorm(embed_dims, hidden, 1, norm_cfg=norm_cfg)
        self.dwconvs = nn.ModuleList(
            nn.Conv2d(
                width, width, k, padding=k // 2, groups=width, bias=False)
            for k in kernel_sizes)
        norm = build_norm2d(norm_cfg, hidden)
        # per-channel: one norm over the shuffled map; else one per group
        self.dw_norm = norm if is_batch_norm(norm) else nn.ModuleList(
            build_norm2d(norm_cfg, width) for _ in kernel_sizes)
        self.act = build_activation_layer(act_cfg)
        self.project = ConvNorm(
            hidden, embed_dims, 1, groups=groups, norm_cfg=norm_cfg)
        # the grouped projection as one batched product (same weight)
        self.project.conv = GroupedPointwiseConv(hidden, embed_dims, groups)

    def _reorder_children(self) -> None:
        """Children in the deploy form's order: ``expand``, ``dwconv``,
        ``act``, ``project`` (so both ways to it give one structure)."""
        for name in ('expand', 'dwconv', 'act', 'project'):
            self._modules[name] = self._modules.pop(name)

    @property
    def input_conv(self) -> nn.Conv2d:
        """The convolution that reads the input (a pre-norm folds into
        it)."""
        return self.expand if self.deploy else self.expand.conv

    def _shuffled_order(self) -> Tensor:
        """Hidden channel at each position of the shuffled map: position
        ``i * g + j`` holds channel ``i`` of group ``j`` (channel ``j *
        width + i`` of the expansion); the identity without
        redistribution."""
        hidden = self.input_conv.out_channels
        order = torch.arange(hidden)
        if self.redistribute:
            order = order.view(self.groups, -1).t().reshape(-1)
        return order

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Switch to the deploy form (module docstring): fold each norm
        into its convolution, then merge. Nothing is derived from a weight
        that a later fold could still change: a block may fold its
        pre-norm into :attr:`input_conv` before or after.

        Raises:
            RuntimeError: A norm is not a BatchNorm in eval mode with
                running statistics.
        """
        if self.deploy:
            return
        if isinstance(self.dw_norm, nn.ModuleList):
            raise RuntimeError(
                'CIFFN folds only a batch norm after its depth-wise '
                f'convolutions, but has {type(self.dw_norm[0]).__name__}.')
        check_foldable_bn(self.dw_norm, 'dw_norm')
        switch_conv_norms(self)
        order = self._shuffled_order()
        expand = self.expand.conv
        embed_dims, hidden = expand.in_channels, expand.out_channels
        convs = _deploy_convs(embed_dims, hidden, self.kernel_sizes)
        convs = [conv.to(expand.weight) for conv in convs]
        new_expand, dwconv, project = convs
        new_expand.weight.copy_(expand.weight[order])
        new_expand.bias.copy_(expand.bias[order])
        # each group's kernel zero-padded to the largest, then reordered
        # to the shuffled order of dw_norm, which folds into it
        size = dwconv.kernel_size[0]
        weight = torch.zeros_like(dwconv.weight)
        for j, conv in enumerate(self.dwconvs):
            k, width = conv.kernel_size[0], conv.out_channels
            start = (size - k) // 2
            weight[j * width:(j + 1) * width, :, start:start + k,
                   start:start + k] = conv.weight
        dwconv.weight.copy_(weight[order])
        dwconv.bias.zero_()
        fuse_conv_bn_(dwconv, self.dw_norm)
        # the grouped projection of the shuffled map, as it was
        project.weight.copy_(self.project.conv.weight)
        project.bias.copy_(self.project.conv.bias)
        del self.dwconvs, self.dw_norm
        self.expand, self.dwconv, self.project = new_expand, dwconv, project
        self._reorder_children()
        self.deploy = True

    def upgrade_state_dict(self,
                           state_dict: MutableMapping[str, Tensor],
                           prefix: str = '') -> None:
        """Rename, in place, this CIFFN's entries of a checkpoint of the
        per-group layout (each depth-wise convolution with its own norm:
        ``dwconvs.<j>.conv.weight``, ``dwconvs.<j>.norm.*``) to this
        layout: ``dwconvs.<j>.weight`` and, for a batch norm, ``dw_norm.*``
        in the shuffled order (the same function); anything else is left
        as it is.

        Args:
            state_dict: The checkpoint's state dict.
            prefix: This module's key prefix in it (``'...ffn.'``).
        """
        old = f'{prefix}dwconvs.0.conv.weight'
        if self.deploy or old not in state_dict:
            return
        groups = len(self.kernel_sizes)
        norms = []
        for j in range(groups):
            state_dict[f'{prefix}dwconvs.{j}.weight'] = state_dict.pop(
                f'{prefix}dwconvs.{j}.conv.weight')
            norm = f'{prefix}dwconvs.{j}.norm.'
            norms.append({
                key[len(norm):]: state_dict.pop(key)
                for key in list(state_dict) if key.startswith(norm)
            })
        if isinstance(self.dw_norm, nn.ModuleList):
            for j, entries in enumerate(norms):
                for name, value in entries.items():
                    state_dict[f'{prefix}dw_norm.{j}.{name}'] = value
            return
        order = self._shuffled_order()
        for name, value in norms[0].items():
            if value.dim() == 0:  # num_batches_tracked: one count for all
                state_dict[f'{prefix}dw_norm.{name}'] = value
                continue
            merged = torch.cat([entries[name] for entries in norms])
            state_dict[f'{prefix}dw_norm.{name}'] = merged[order.to(
                merged.device)]

    def _load_from_state_dict(self, state_dict, prefix, *args,
                              **kwargs) -> None:
        self.upgrade_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self,
                x: Tensor,
                pre_norm: Optional[nn.Module] = None) -> Tensor:
        """Apply the FFN to ``pre_norm(x)`` (``x``: ``B, C, H, W``; no
        ``pre_norm``: to ``x``); no residual added.

        In eager training with BatchNorms the hidden-width work keeps two
        hidden-width maps for backward, not five
        (:mod:`~.norm_act_op`); a BatchNorm ``pre_norm`` is recomputed
        from ``x`` in backward too.
        """
        B, _, H, W = x.shape
        if pre_norm is not None and not self._fusable(x, pre_norm):
            x, pre_norm = pre_norm(x), None
        if self._fusable(x):
            return self._forward_fused(x, pre_norm)
        if self.deploy:
            # channels-last throughout (a no-op in a deployed SAEViT): the
            # products read pixel rows, and torch 2.1's GELU backward gives
            # zeros for an NCHW input with a channels-last gradient
            x = x.contiguous(memory_format=torch.channels_last)
            if B * H * W < self.MERGE_MAX_PIXELS:
                hidden = act_in_place(self.act, self.dwconv(self.expand(x)))
                return self._project_by_blocks(hidden, self._blocks())
            return self._forward_by_group(x)
        parts = [
            conv(part)
            for conv, part in zip(self.dwconvs,
                                  self.expand(x).chunk(self.groups, dim=1))
        ]
        per_group = isinstance(self.dw_norm, nn.ModuleList)
        if per_group:
            parts = [norm(part) for norm, part in zip(self.dw_norm, parts)]
        x = channel_shuffle(parts) if self.redistribute \
            else torch.cat(parts, dim=1)
        if not per_group:
            x = self.dw_norm(x)
        return self.project(act_in_place(self.act, x))

    def _fusable(self, x: Tensor, *norms: nn.Module) -> bool:
        """Whether the eager training path of :mod:`~.norm_act_op` runs:
        not deployed, this FFN's norms and ``norms`` plain BatchNorms."""
        return self.deploy is False and records_eagerly() and all(
            fusable(norm, x)
            for norm in (self.expand.norm, self.dw_norm, *norms))

    def _forward_fused(self, x: Tensor,
                       pre_norm: Optional[nn.Module]) -> Tensor:
        """The non-deploy forward, keeping ``x`` (or the pre-norm's
        input), the expansion's output, the shuffled depth-wise output and
        the projection's output for backward."""
        expand = self.expand.conv
        if pre_norm is None:
            x = expand(x)
        else:
            x = norm_act_op(x, pre_norm, None, ConvOp.of(expand),
                            [expand.weight, expand.bias])
        x = norm_act_op(x, self.expand.norm, None,
                        ShuffledDepthwiseOp(self.dwconvs, self.redistribute),
                        [conv.weight for conv in self.dwconvs])
        x = norm_act_op(x, self.dw_norm, self.act,
                        GroupedProductOp(self.groups),
                        [self.project.conv.weight])
        return self.project.norm(x)

    def _blocks(self) -> Tensor:
        """Deploy form: the projection as ``(g, width, C / g)`` blocks,
        block ``m`` from projection group ``m``'s ``width`` shuffled inputs
        (a view of the weight)."""
        project = self.project
        rows = project.out_channels // self.groups
        return project.weight.view(self.groups, rows, -1).transpose(1, 2)

    def _group(self, tensor: Tensor, j: int) -> Tensor:
        """Deploy form: the entries of group ``j`` along dim 0 of a tensor
        in the shuffled order (every ``g``-th from ``j``, or a run of
        ``width`` without redistribution), as a view."""
        if self.redistribute:
            return tensor.unflatten(0, (-1, self.groups))[:, j]
        return tensor.unflatten(0, (self.groups, -1))[j]

    def _project_by_blocks(self,
                           x: Tensor,
                           blocks: Tensor,
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
        bias = self.project.bias.to(x.dtype).view(k, 1, n)
        out = torch.baddbmm(bias, chunks, blocks)
        return out.transpose(0, 1).reshape(B, H, W, -1).permute(0, 3, 1, 2)

    def _derived(self, name: str, compute) -> Tensor:
        """Deploy form: ``compute()``, a matrix derived from the projection
        weight, computed once per value of that weight in inference (a
        cache, not state: keyed on the weight's storage and version, so a
        load, an in-place change or a move recomputes it); computed afresh
        when autograd records."""
        weight = self.project.weight
        if torch.is_grad_enabled():
            return compute()
        key = (weight.data_ptr(), weight._version, weight.dtype,
               weight.device)
        cache = self.__dict__.setdefault('_derived_cache', {})
        if name not in cache or cache[name][0] != key:
            cache[name] = (key, compute())
        return cache[name][1]

    def _dense_columns(self) -> Tensor:
        """Deploy form: the projection as a dense ``(hidden, C)`` matrix,
        row ``p`` the column of shuffled channel ``p`` (block-diagonal)."""
        groups, weight = self.groups, self.project.weight
        # [m, m', r, q]: block m at (m, m), zeros elsewhere
        blocks = weight.view(groups, 1, -1, weight.shape[1])
        mask = torch.eye(groups, dtype=weight.dtype, device=weight.device)
        blocks = blocks * mask.view(groups, groups, 1, 1)
        return blocks.permute(1, 3, 0, 2).reshape(-1, weight.shape[0])

    def _forward_by_group(self, x: Tensor) -> Tensor:
        """Deploy form on large maps: one group at a time, its projection
        accumulated (module docstring)."""
        B, _, H, W = x.shape
        groups, project = self.groups, self.project
        width = self.expand.out_channels // groups
        size = self.dwconv.kernel_size[0]
        # every group feeds every projection group in chunks: block
        # products when the chunks are wide, else the dense columns
        by_chunk = self.redistribute and width % groups == 0 and \
            width // groups >= self.CHUNK_MIN_WIDTH
        if by_chunk:  # [j, m, a, r]: group j's chunk m is rows a of block m
            def chunked() -> Tensor:
                return project.weight.view(groups, -1, width // groups,
                                           groups).permute(3, 0, 2,
                                                           1).contiguous()

            chunks = self._derived('chunks', chunked)
        else:
            columns = self._derived('columns', self._dense_columns)
        out = None
        for j, k in enumerate(self.kernel_sizes):
            start = (size - k) // 2
            part = F.conv2d(x, self._group(self.expand.weight, j),
                            self._group(self.expand.bias, j))
            part = F.conv2d(
                part,
                self._group(self.dwconv.weight, j)[..., start:start + k,
                                                   start:start + k],
                self._group(self.dwconv.bias, j),
                padding=k // 2,
                groups=width)
            part = act_in_place(self.act, part)
            if by_chunk:
                if out is None:  # (groups, B * H * W, C / groups)
                    out = project.bias.to(part.dtype).view(
                        groups, 1, -1).expand(-1, B * H * W, -1).contiguous()
                self._project_by_blocks(part, chunks[j], out)
                continue
            part = _pixel_rows(part)
            group_columns = self._group(columns, j).to(part.dtype)
            out = torch.addmm(project.bias.to(part.dtype), part,
                              group_columns) \
                if out is None else out.addmm_(part, group_columns)
        if by_chunk:
            out = out.transpose(0, 1)
        return out.reshape(B, H, W, -1).permute(0, 3, 1, 2)


def _deploy_convs(embed_dims: int, hidden: int,
                  kernel_sizes: Sequence[int]) -> Tuple[nn.Conv2d, ...]:
    """The deploy form's ``expand``, ``dwconv`` and ``project`` (module
    docstring), with biases (the folded norms')."""
    size = max(kernel_sizes)
    return (nn.Conv2d(embed_dims, hidden, 1),
            nn.Conv2d(hidden, hidden, size, padding=size // 2, groups=hidden),
            nn.Conv2d(hidden, embed_dims, 1, groups=len(kernel_sizes)))
