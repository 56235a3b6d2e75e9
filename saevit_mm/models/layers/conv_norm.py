"""Convolution followed by a normalization layer, as a plain ``Sequential``.

Every conv -> norm pair of SAEViT is a :class:`ConvNorm`, so a deploy step can
fold a BatchNorm into the convolution in front of it without knowing the
model. The convolution has no bias: the norm that follows supplies one. Its
deploy form (:meth:`ConvNorm.switch_to_deploy`, or ``norm_cfg=None`` to build
it directly) is the convolution with a bias and ``nn.Identity`` as norm.
"""
from typing import Dict, Optional

import torch
from torch import nn

from ..utils.fuse import check_foldable_bn, fuse_conv_bn_
from .norm import build_norm2d

__all__ = ['ConvNorm', 'switch_conv_norms']


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
            or ``GN``); ``None`` builds the deploy form: no norm
            (``nn.Identity``) and a bias in the convolution. Defaults to
            ``dict(type='BN')``.

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
                 norm_cfg: Optional[Dict] = dict(type='BN')) -> None:
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
            bias=norm_cfg is None)
        self.norm = build_norm2d(norm_cfg, out_channels)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the norm into the convolution (which gets a bias); nothing
        to do when it is folded already.

        Raises:
            RuntimeError: The norm is not a BatchNorm in eval mode with
                running statistics.
        """
        if isinstance(self.norm, nn.Identity):
            return
        check_foldable_bn(self.norm, f'the norm of a {type(self).__name__}')
        fuse_conv_bn_(self.conv, self.norm)
        self.norm = nn.Identity()


def switch_conv_norms(module: nn.Module) -> None:
    """Switch every :class:`ConvNorm` inside ``module`` to its deploy form,
    after checking that every one can (nothing changes when one cannot).

    Raises:
        RuntimeError: A norm is not a BatchNorm in eval mode with running
            statistics.
    """
    layers = [m for m in module.modules() if isinstance(m, ConvNorm)]
    for name, layer in module.named_modules():
        if isinstance(layer, ConvNorm) and \
                not isinstance(layer.norm, nn.Identity):
            check_foldable_bn(layer.norm, f'{name}.norm' if name else 'norm')
    for layer in layers:
        layer.switch_to_deploy()
