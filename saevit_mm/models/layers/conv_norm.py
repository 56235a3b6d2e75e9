"""Convolution followed by a normalization layer, as a plain ``Sequential``.

Every conv -> norm pair of SAEViT is a :class:`ConvNorm`, so a deploy step can
fold a BatchNorm into the convolution in front of it without knowing the
model. The convolution has no bias: the norm that follows supplies one.
"""
from typing import Dict, Optional

from mmcv.cnn import build_norm_layer
from torch import nn

__all__ = ['ConvNorm']


class ConvNorm(nn.Sequential):
    """``Conv2d`` (no bias) then a norm layer; children ``conv`` and ``norm``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size. Defaults to 1.
        stride: Stride. Defaults to 1.
        padding: Zero padding on every side; ``None`` means
            ``kernel_size // 2`` (the output keeps ``ceil(H / stride)``
            rows for odd kernels). Defaults to None.
        groups: Convolution groups (``in_channels`` for depth-wise).
            Defaults to 1.
        norm_cfg: Config of the norm layer, built by mmcv's
            ``build_norm_layer`` (use root-registered names such as ``BN``
            or ``GN``). Defaults to ``dict(type='BN')``.

    Example:
        >>> import torch
        >>> layer = ConvNorm(8, 16, kernel_size=3, stride=2)
        >>> print(layer(torch.rand(1, 8, 9, 9)).shape)
        torch.Size([1, 16, 5, 5])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 padding: Optional[int] = None,
                 groups: int = 1,
                 norm_cfg: Dict = dict(type='BN')) -> None:
        if padding is None:
            padding = kernel_size // 2
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias=False)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]
