"""SAA: Sparsely Aggregated Attention (arXiv 2508.16884).

Follows the paper: adaptive sparse sampling of the feature map, attention
among the sampled tokens, and recovery of the full-resolution map by a
(depth-wise) transposed convolution; multi-scale self-attention. The rest is
our design:

1. ``H`` and ``W`` are zero-padded up to multiples of the sample ratio ``r``
   (only when needed) and the result is cropped back, so any size works.
2. Sampling: a learnable depth-wise convolution with kernel ``r`` and stride
   ``r`` turns every ``r`` x ``r`` cell into one delegate token. It starts as
   the cell average.
3. Multi-scale attention among the delegates: :class:`~.attention.Attention2d`
   (keys/values at the delegate scale and at a 2x coarser scale).
4. Recovery: a depth-wise ``ConvTranspose2d`` (kernel ``r``, stride ``r``,
   starting as a copy of each delegate into its cell), a norm, the crop, and
   a 1x1 output projection.

``r = 1`` skips steps 1, 2 and 4 except the projection. Attention cost falls
from ``O((HW)^2 C)`` to ``O((HW / r^2)^2 C)``.
"""
from typing import Dict, Optional

import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

from .attention import Attention2d

__all__ = ['SparselyAggregatedAttention']


class SparselyAggregatedAttention(nn.Module):
    """Sparsely Aggregated Attention on an NCHW map of any size.

    Submodules: ``sampler`` (depth-wise conv, kernel and stride ``r``),
    ``attn`` (:class:`~.attention.Attention2d`), ``recovery`` (depth-wise
    ``ConvTranspose2d`` then a norm, as a ``Sequential``) and ``proj``
    (1x1 conv). ``sampler`` and ``recovery`` are ``None`` when ``r = 1``.

    Args:
        embed_dims: Channels of the input and output.
        num_heads: Attention heads; must divide ``embed_dims``.
        sample_ratio: Side ``r`` of the cell aggregated into one delegate
            token. Defaults to 2.
        multi_scale: Attend to 2x coarser keys/values too. Defaults to True.
        qkv_bias: Bias in the q/k/v projection. Defaults to True.
        attn_drop: Dropout on attention weights. Defaults to 0.
        norm_cfg: Norm after the recovery convolution. Defaults to
            ``dict(type='BN')``.

    Example:
        >>> import torch
        >>> saa = SparselyAggregatedAttention(32, num_heads=2, sample_ratio=4)
        >>> print(saa(torch.rand(2, 32, 25, 33)).shape)
        torch.Size([2, 32, 25, 33])
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 sample_ratio: int = 2,
                 multi_scale: bool = True,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 norm_cfg: Dict = dict(type='BN')) -> None:
        super().__init__()
        if isinstance(sample_ratio, bool) or not isinstance(
                sample_ratio, int) or sample_ratio < 1:
            raise ValueError('sample_ratio must be a positive int, but got '
                             f'{sample_ratio!r}.')
        self.sample_ratio = r = sample_ratio
        self.sampler: Optional[nn.Conv2d] = None
        self.recovery: Optional[nn.Sequential] = None
        if r > 1:
            self.sampler = nn.Conv2d(
                embed_dims,
                embed_dims,
                r,
                stride=r,
                groups=embed_dims,
                bias=False)
        self.attn = Attention2d(
            embed_dims,
            num_heads,
            multi_scale=multi_scale,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop)
        if r > 1:
            self.recovery = nn.Sequential()
            self.recovery.add_module(
                'conv',
                nn.ConvTranspose2d(
                    embed_dims,
                    embed_dims,
                    r,
                    stride=r,
                    groups=embed_dims,
                    bias=False))
            self.recovery.add_module(
                'norm',
                build_norm_layer(norm_cfg, embed_dims)[1])
        self.proj = nn.Conv2d(embed_dims, embed_dims, 1)
        self.init_sampling()

    def init_sampling(self) -> None:
        """Start sampling as the cell average and recovery as a copy.

        With these weights (and the recovery norm at identity) the layer
        begins as attention over ``r`` x ``r`` average-pooled tokens whose
        result is upsampled by nearest neighbour.
        """
        if self.sampler is not None:
            nn.init.constant_(self.sampler.weight, 1. / self.sample_ratio**2)
        if self.recovery is not None:
            nn.init.constant_(self.recovery.conv.weight, 1.)

    def forward(self, x: Tensor) -> Tensor:
        """Attend on ``x`` (``B, C, H, W``); returns the same shape."""
        r = self.sample_ratio
        if r == 1:
            return self.proj(self.attn(x))
        H, W = x.shape[-2:]
        pad_h, pad_w = (r - H % r) % r, (r - W % r) % r
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.recovery(self.attn(self.sampler(x)))
        if pad_h or pad_w:
            x = x[..., :H, :W]
        return self.proj(x)
