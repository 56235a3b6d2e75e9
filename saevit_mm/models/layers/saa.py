"""SAA: Sparsely Aggregated Attention (arXiv 2508.16884).

Follows the paper: adaptive sparse sampling of the feature map, attention
among the sampled tokens, and recovery of the full-resolution map by a
(depth-wise) transposed convolution; multi-scale self-attention. The rest is
our design:

1. Sampling: a learnable depth-wise convolution with kernel ``r`` and stride
   ``r`` turns every ``r`` x ``r`` cell into one delegate token. It starts as
   the cell average. ``H`` and ``W`` are edge-padded (the last row / column
   repeated) up to a multiple of the cell side, so a partial border cell
   averages its own pixels instead of zeros, and the result is cropped back:
   any size works.
2. Resolution-adaptive sampling: ``max_delegates`` bounds the number of
   delegate tokens. When the ``h x w = ceil(H / r) x ceil(W / r)`` grid has
   more, the cell grows to ``(k_h * r) x (k_w * r)``, one integer factor per
   axis (:func:`delegate_pool_factors`): the first of ``1 x 2``, ``2 x 2``,
   ``2 x 3``, ``3 x 3``, ... sampled cells (the longer axis of the grid
   takes the larger factor) whose grid ``ceil(h / k_h) * ceil(w / k_w)``
   fits. Each step raises one factor by one, which at most halves the grid,
   so above the bound a layer attends over more than half of it, at every
   input size. The sampler becomes its own kernel tiled ``k_h`` x ``k_w``
   (divided by ``k_h * k_w``), i.e. the average of ``k_h`` x ``k_w``
   sampled cells, and the recovery its kernel tiled the same way, i.e.
   nearest upsampling by ``(k_h, k_w)`` before it. No new weights: at or
   below the bound the layer is exactly the fixed-ratio one, and above it
   attention cost stays bounded while sampling, recovery and projection
   grow linearly with the pixels.
3. Multi-scale attention among the delegates: :class:`~.attention.Attention2d`
   (keys/values at the delegate scale and at a 2x coarser scale).
4. Recovery: a depth-wise ``ConvTranspose2d`` (kernel ``r``, stride ``r``,
   starting as a copy of each delegate into its cell), the crop back to
   ``H x W``, an optional norm (none by default) and a 1x1 output
   projection. No norm: at init attention is near-uniform over zero-mean
   values, so the recovered map is nearly zero, and any norm of it divides
   rounding noise by a tiny deviation (``docs/design.md``, "SAA recovery
   norm"). A norm given by ``norm_cfg`` comes after the crop, so the
   repeated edge never enters a statistic.

Deploy form (:meth:`SparselyAggregatedAttention.switch_to_deploy`, or
``deploy=True`` to build it): above the delegate bound (cells larger than
``r`` x ``r``) the recovery is computed as what it is, one product per output
pixel, by :func:`spread_cells` (a broadcast multiply-add into the cell
layout, in the input's memory format) instead of a transposed convolution
with the tiled kernel: the same sums, faster on CPU for large cells; at the
layer's own ratio the transposed convolution is kept, being the faster
there (``docs/benchmark.md``). A BatchNorm as recovery norm is folded into the
recovery, and the convolution that reads the input (:attr:`input_conv`) has
a bias, into which a block folds its pre-norm.

Edge padding (:func:`edge_pad`) copies the map into a larger one and
fills the border from the last row / column, not
``F.pad(mode='replicate')``: torch < 2.3 has no CUDA bfloat16 kernel for
``replication_pad2d``.

``r = 1`` has no sampler, recovery conv or norm: below the bound it is
attention plus projection; above it, ``k_h`` x ``k_w`` average pooling
samples and nearest upsampling recovers.

NOTE: the delegate grid is computed with integer arithmetic only (``//``,
``*``, comparisons), so ``torch.compile(dynamic=True)`` keeps the input size
symbolic: it guards on the comparisons, and recompiles only for an input
whose grid takes other factors or another padding.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.backbone_utils import is_batch_norm
from ..utils.fuse import check_foldable_bn, ensure_bias_, fuse_conv_bn_
from .attention import Attention2d
from .norm import build_norm2d
from .norm_act_op import ConvOp, fusable, norm_act_op, records_eagerly
from .recover_project import recover_project

__all__ = [
    'SparselyAggregatedAttention', 'delegate_pool_factors', 'edge_pad',
    'spread_cells'
]


def _is_channels_last(x: Tensor) -> bool:
    """``x`` is a 4-D map in channels-last memory (and not also NCHW
    contiguous, as a map with one channel or one pixel is)."""
    return x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous()


def edge_pad(x: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """Repeat the last row ``pad_h`` times and the last column ``pad_w``
    times (``F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')`` for any
    dtype and device), in ``x``'s memory format: one copy of ``x`` into
    the padded map, then its edges."""
    if not (pad_h or pad_w):
        return x
    B, C, H, W = x.shape
    out = torch.empty((B, C, H + pad_h, W + pad_w),
                      dtype=x.dtype,
                      device=x.device,
                      memory_format=torch.channels_last
                      if _is_channels_last(x) else torch.contiguous_format)
    out[..., :H, :W] = x
    out[..., H:, :W] = x[..., -1:, :]
    out[..., :H, W:] = x[..., -1:]
    out[..., H:, W:] = x[..., -1:, -1:]
    return out


def _ceil_div(numerator: int, denominator: int) -> int:
    """``ceil(numerator / denominator)`` for positive ints, in integer
    arithmetic (a symbolic size under ``torch.compile`` stays an int)."""
    return (numerator + denominator - 1) // denominator


def delegate_pool_factors(height: int, width: int,
                          max_delegates: Optional[int]) -> Tuple[int, int]:
    """Per-axis factors ``(k_h, k_w)`` that bring a ``height`` x ``width``
    delegate grid within ``max_delegates``: ``(1, 1)`` when it fits (or
    ``max_delegates`` is None); else the first of ``(1, 2)``, ``(2, 2)``,
    ``(2, 3)``, ``(3, 3)``, ... with ``ceil(height / k_h) * ceil(width /
    k_w) <= max_delegates``, the larger factor on the longer axis (the
    width of a square grid).

    Each pair is the one before it with one factor raised by one, which at
    most halves the grid (``ceil(n / k) <= 2 * ceil(n / (k + 1))``), and
    the pair before did not fit: above the bound the grid keeps more than
    ``max_delegates / 2`` delegates. Integer arithmetic only.

    Args:
        height: Rows of the delegate grid at the layer's own ratio.
        width: Columns of that grid.
        max_delegates: The bound, or None for no bound.

    Example:
        >>> delegate_pool_factors(25, 42, 1024)  # 1050: 25 x 21 = 525
        (1, 2)
        >>> delegate_pool_factors(50, 84, 1024)  # 4200: 25 x 28 = 700
        (2, 3)
        >>> delegate_pool_factors(84, 50, 1024)  # a portrait grid
        (3, 2)
        >>> delegate_pool_factors(32, 32, 1024)  # fits
        (1, 1)
    """
    if max_delegates is None or height * width <= max_delegates:
        return 1, 1
    wide = width >= height
    short, long = (height, width) if wide else (width, height)
    k = 1
    while True:
        # the longer axis one factor ahead, then both even
        for k_short, k_long in ((k, k + 1), (k + 1, k + 1)):
            if _ceil_div(short, k_short) * _ceil_div(long,
                                                     k_long) <= max_delegates:
                return (k_short, k_long) if wide else (k_long, k_short)
        k += 1


def spread_cells(x: Tensor,
                 weight: Tensor,
                 bias: Optional[Tensor] = None) -> Tensor:
    """``F.conv_transpose2d(x, weight, bias, stride=(s_h, s_w), groups=C)``
    for a depth-wise kernel whose stride is its size ``s_h`` x ``s_w``: every
    pixel of ``x`` (``B, C, h, w``) becomes an ``s_h`` x ``s_w`` cell of the
    output (``B, C, h*s_h, w*s_w``), ``x * weight[c] + bias[c]``.

    Written as one broadcast multiply-add into the cell layout of the
    input's memory format (channels-last in, channels-last out), so the
    output is a view of the product: no other copy.

    Args:
        x: Input map.
        weight: ``(C, 1, s_h, s_w)`` kernel (the layout of a depth-wise
            ``ConvTranspose2d``).
        bias: ``(C,)`` or None.
    """
    B, C, h, w = x.shape
    s_h, s_w = weight.shape[-2:]
    if weight.shape != (C, 1, s_h, s_w):
        raise ValueError('spread_cells needs a depth-wise kernel of shape '
                         f'({C}, 1, s_h, s_w), but got {tuple(weight.shape)}.')
    channels_last = _is_channels_last(x)
    if channels_last:  # (B, h, s_h, w, s_w, C)
        cells = x.permute(0, 2, 3, 1)[:, :, None, :, None, :]
        kernel = weight.view(C, s_h, s_w).permute(1, 2, 0)[None, None, :, None]
        bias_shape = (C, )
    else:  # (B, C, h, s_h, w, s_w)
        cells = x[:, :, :, None, :, None]
        kernel = weight.view(1, C, 1, s_h, 1, s_w)
        bias_shape = (1, C, 1, 1, 1, 1)
    bias = None if bias is None else bias.view(bias_shape)
    if torch.is_grad_enabled():  # autograd has no out= products
        out = cells * kernel if bias is None else bias + cells * kernel
        out = out.contiguous()
    else:  # an explicit output: a broadcast product may pick another layout
        out = x.new_empty(torch.broadcast_shapes(cells.shape, kernel.shape))
        if bias is None:
            torch.mul(cells, kernel, out=out)
        else:
            torch.addcmul(bias, cells, kernel, out=out)
    if channels_last:
        return out.view(B, h * s_h, w * s_w, C).permute(0, 3, 1, 2)
    return out.view(B, C, h * s_h, w * s_w)


def check_max_delegates(value: object, name: str = 'max_delegates') -> None:
    """Raise ValueError unless ``value`` is None or a positive int."""
    if value is not None and (isinstance(value, bool)
                              or not isinstance(value, int) or value < 1):
        raise ValueError(f'{name} must be a positive int (the largest number '
                         f'of delegate tokens) or None (no bound), but got '
                         f'{value!r}.')


class SparselyAggregatedAttention(nn.Module):
    """Sparsely Aggregated Attention on an NCHW map of any size.

    Submodules: ``sampler`` (depth-wise conv, kernel and stride ``r``),
    ``attn`` (:class:`~.attention.Attention2d`), ``recovery`` (depth-wise
    ``ConvTranspose2d``), ``norm`` (after the crop) and ``proj`` (1x1
    conv). ``sampler`` and ``recovery`` are ``None`` and ``norm`` is
    ``nn.Identity`` when ``r = 1``.

    Args:
        embed_dims: Channels of the input and output.
        num_heads: Attention heads; must divide ``embed_dims``.
        sample_ratio: Side ``r`` of the cell aggregated into one delegate
            token. Defaults to 2.
        max_delegates: Largest number of delegate tokens; a larger input
            samples coarser cells, keeping more than half of this many
            (see the module docstring). ``None``: no bound, the cell is
            always ``r`` x ``r``. Defaults to None.
        multi_scale: Attend to 2x coarser keys/values too. Defaults to True.
        qkv_bias: Bias in the q/k/v projection. Defaults to True.
        attn_drop: Dropout on attention weights. Defaults to 0.
        norm_cfg: Norm of the recovered, cropped map: None (no norm),
            ``dict(type='LN2d')`` (per pixel over the channels) or a norm of
            mmcv's ``build_norm_layer``. Defaults to None.
        deploy: Build the deploy form (module docstring). Defaults to
            False.

    Example:
        >>> import torch
        >>> saa = SparselyAggregatedAttention(32, num_heads=2, sample_ratio=4,
        ...                                   max_delegates=16)
        >>> print(saa(torch.rand(2, 32, 25, 33)).shape)
        torch.Size([2, 32, 25, 33])
        >>> saa.cell_shape(25, 33)  # 7 x 9 cells of 4 are too many: 4 x 3
        (8, 12)
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 sample_ratio: int = 2,
                 max_delegates: Optional[int] = None,
                 multi_scale: bool = True,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 norm_cfg: Optional[Dict] = None,
                 deploy: bool = False) -> None:
        super().__init__()
        if isinstance(sample_ratio, bool) or not isinstance(
                sample_ratio, int) or sample_ratio < 1:
            raise ValueError('sample_ratio must be a positive int, but got '
                             f'{sample_ratio!r}.')
        check_max_delegates(max_delegates)
        self.sample_ratio = r = sample_ratio
        self.max_delegates = max_delegates
        self.sampler: Optional[nn.Conv2d] = None
        self.recovery: Optional[nn.ConvTranspose2d] = None
        # depth-wise, kernel = stride = r: the sampler and, after the
        # attention, its transposed twin
        cell = dict(
            in_channels=embed_dims,
            out_channels=embed_dims,
            kernel_size=r,
            stride=r,
            groups=embed_dims)
        if r > 1:  # deploy form: a bias for the block's folded pre-norm
            self.sampler = nn.Conv2d(**cell, bias=deploy)
        self.attn = Attention2d(
            embed_dims,
            num_heads,
            multi_scale=multi_scale,
            qkv_bias=qkv_bias or (deploy and r == 1),
            attn_drop=attn_drop)
        norm = build_norm2d(norm_cfg if r > 1 else None, embed_dims)
        # deploy form: a BatchNorm folded into the recovery's bias
        fold_norm = deploy and is_batch_norm(norm)
        if r > 1:
            self.recovery = nn.ConvTranspose2d(**cell, bias=fold_norm)
        self.norm = nn.Identity() if fold_norm else norm
        self.proj = nn.Conv2d(embed_dims, embed_dims, 1)
        #: in the deploy form (module docstring)
        self.deploy = deploy
        self.init_sampling()

    @property
    def input_conv(self) -> nn.Conv2d:
        """The convolution that reads the input: the sampler, or the q/k/v
        projection when ``r = 1`` (a pre-norm folds into it)."""
        return self.attn.qkv if self.sampler is None else self.sampler

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Switch to the deploy form (module docstring): a BatchNorm
        recovery norm folded into the recovery, a bias in
        :attr:`input_conv`, the recovery above the delegate bound by
        :func:`spread_cells`.

        Raises:
            RuntimeError: The recovery norm is a BatchNorm in training mode
                or without running statistics.
        """
        if self.deploy:
            return
        if is_batch_norm(self.norm):
            check_foldable_bn(self.norm, 'the recovery norm of SAA')
            fuse_conv_bn_(self.recovery, self.norm)
            self.norm = nn.Identity()
        ensure_bias_(self.input_conv)
        self.deploy = True

    def init_sampling(self) -> None:
        """Start sampling as the cell average and recovery as a copy.

        With these weights the layer begins as attention over ``r`` x ``r``
        average-pooled tokens whose result is upsampled by nearest neighbour.
        """
        for conv, value in ((self.sampler, 1. / self.sample_ratio**2),
                            (self.recovery, 1.)):
            if conv is None:
                continue
            nn.init.constant_(conv.weight, value)
            if conv.bias is not None:  # the deploy form's
                nn.init.zeros_(conv.bias)

    def pool_factors(self, height: int, width: int) -> Tuple[int, int]:
        """Factors ``(k_h, k_w)`` of the ``r`` x ``r`` cell on a ``height``
        x ``width`` input: ``(1, 1)`` at or below ``max_delegates``
        (:func:`delegate_pool_factors`)."""
        r = self.sample_ratio
        return delegate_pool_factors(
            _ceil_div(height, r), _ceil_div(width, r), self.max_delegates)

    def cell_shape(self, height: int, width: int) -> Tuple[int, int]:
        """Rows and columns ``(s_h, s_w)`` of the cell one delegate stands
        for on a ``height`` x ``width`` input: ``(r, r)``, or ``(k_h * r,
        k_w * r)`` above ``max_delegates``."""
        k_h, k_w = self.pool_factors(height, width)
        return k_h * self.sample_ratio, k_w * self.sample_ratio

    def _sampler_weights(self, x: Tensor, k_h: int,
                         k_w: int) -> Tuple[Tensor, Optional[Tensor]]:
        """Kernel and bias that sample ``x`` on cells of ``k_h * r`` x
        ``k_w * r`` (stride their size): the sampler's own kernel tiled and
        averaged, or, without a sampler, the ``k_h`` x ``k_w`` average."""
        if self.sampler is None:
            weight = x.new_ones(self.proj.in_channels, 1, 1, 1)
            bias = None
        else:
            weight, bias = self.sampler.weight, self.sampler.bias
        if k_h == k_w == 1:
            return weight, bias
        return weight.repeat(1, 1, k_h, k_w) / (k_h * k_w), bias

    def _sample(self, x: Tensor, k_h: int, k_w: int) -> Tensor:
        """Delegates of the edge-padded ``x`` on cells of ``k_h * r`` x
        ``k_w * r``."""
        if k_h == k_w == 1:  # the module itself (forward hooks see it)
            return self.sampler(x)
        # the channel count as a constant (torch 2.1's compiler cannot take
        # a symbolic group count)
        r, channels = self.sample_ratio, self.proj.in_channels
        weight, bias = self._sampler_weights(x, k_h, k_w)
        return F.conv2d(
            x, weight, bias, stride=(k_h * r, k_w * r), groups=channels)

    def _recovery_weights(self, x: Tensor, k_h: int,
                          k_w: int) -> Tuple[Tensor, Optional[Tensor]]:
        """Kernel and bias that spread each delegate of ``x`` over its
        ``k_h * r`` x ``k_w * r`` cell (stride the cell): the recovery's own
        kernel tiled, or, without a recovery, ones."""
        if self.recovery is None:
            weight, bias = x.new_ones(self.proj.in_channels, 1, 1, 1), None
        else:
            weight, bias = self.recovery.weight, self.recovery.bias
        if k_h == k_w == 1:
            return weight, bias
        return weight.repeat(1, 1, k_h, k_w), bias

    def _recover(self, x: Tensor, k_h: int, k_w: int) -> Tensor:
        """Spread each delegate over its ``k_h * r`` x ``k_w * r`` cell."""
        if k_h == k_w == 1:  # the module itself (forward hooks see it)
            return self.recovery(x)
        r = self.sample_ratio
        weight, bias = self._recovery_weights(x, k_h, k_w)
        if self.deploy:
            return spread_cells(x, weight, bias)
        return F.conv_transpose2d(
            x, weight, bias, stride=(k_h * r, k_w * r),
            groups=self.proj.in_channels)

    def _recover_project(self, x: Tensor, k_h: int, k_w: int,
                         size: Tuple[int, int]) -> Tensor:
        """Recovery, crop to ``size``, norm and projection of the
        attention output ``x``; in eager training without a recovery norm
        the delegates' map is what backward keeps (:mod:`~.recover_project`).
        """
        if (records_eagerly() and self.recovery is not None
                and not self.deploy and isinstance(self.norm, nn.Identity)):
            weight, bias = self._recovery_weights(x, k_h, k_w)
            r = self.sample_ratio
            return recover_project(x, weight, bias, (k_h * r, k_w * r), size,
                                   self.proj.weight, self.proj.bias)
        x = self._recover(x, k_h, k_w)
        if x.shape[-2:] != size:
            x = x[..., :size[0], :size[1]]
        return self.proj(self.norm(x))

    def forward(self, x: Tensor, pre_norm: Optional[nn.Module] = None
                ) -> Tensor:
        """Attend on ``pre_norm(x)`` (no ``pre_norm``: on ``x``; ``B, C,
        H, W``); returns the same shape. In eager training with a
        BatchNorm ``pre_norm`` and no padding, the sampler reads the norm's
        output recomputed in backward (:mod:`~.norm_act_op`)."""
        H, W = x.shape[-2:]
        k_h, k_w = self.pool_factors(H, W)
        s_h, s_w = k_h * self.sample_ratio, k_w * self.sample_ratio
        pad_h, pad_w = (s_h - H % s_h) % s_h, (s_w - W % s_w) % s_w
        if records_eagerly() and pre_norm is not None and \
                self.sampler is not None and not (pad_h or pad_w) \
                and fusable(pre_norm, x):
            weight, bias = self._sampler_weights(x, k_h, k_w)
            delegates = norm_act_op(
                x, pre_norm, None,
                ConvOp((s_h, s_w), groups=self.proj.in_channels),
                [weight, bias])
        else:
            if pre_norm is not None:
                x = pre_norm(x)
            if s_h == s_w == 1:
                return self.proj(self.attn(x))
            delegates = self._sample(edge_pad(x, pad_h, pad_w), k_h, k_w)
        return self._recover_project(self.attn(delegates), k_h, k_w, (H, W))
