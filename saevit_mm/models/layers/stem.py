"""The convolutional stem and the stage-to-stage downsampling of SAEViT.

Our choices (the paper states only a four-stage hierarchy): the stem is
conv3x3 s2 -> BN -> GELU -> conv3x3 s2 -> BN (stride 4), each later stage
starts with conv3x3 s2 -> BN (stride 2). With padding 1 an ``H`` x ``W`` map
becomes ``ceil(H / 2)`` x ``ceil(W / 2)``, so odd sizes need no padding.
The deploy form (``deploy=True`` or ``switch_to_deploy()``) folds each BN
into its convolution (:class:`~.conv_norm.ConvNorm`).
"""
from typing import Dict

import torch
from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from .conv_norm import ConvNorm
from .norm_act_op import ConvOp, fusable, norm_act_op

__all__ = ['ConvStem', 'Downsample']


class ConvStem(nn.Sequential):
    """Two stride-2 3x3 convolutions (stride 4 in all).

    Children: ``conv1`` (:class:`ConvNorm`, to ``out_channels // 2``),
    ``act``, ``conv2`` (:class:`ConvNorm`, to ``out_channels``).

    Args:
        in_channels: Channels of the input image.
        out_channels: Channels of the output (those of stage 0).
        norm_cfg: Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg: Activation config. Defaults to ``dict(type='GELU')``.
        deploy: Build the deploy form (every norm folded into its
            convolution). Defaults to False.

    Example:
        >>> import torch
        >>> stem = ConvStem(3, 32)
        >>> print(stem(torch.rand(1, 3, 97, 131)).shape)
        torch.Size([1, 32, 25, 33])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False) -> None:
        super().__init__()
        mid_channels = max(out_channels // 2, 1)
        norm_cfg = None if deploy else norm_cfg
        self.conv1 = ConvNorm(
            in_channels, mid_channels, 3, stride=2, norm_cfg=norm_cfg)
        self.act = build_activation_layer(act_cfg)
        self.conv2 = ConvNorm(
            mid_channels, out_channels, 3, stride=2, norm_cfg=norm_cfg)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold each norm into its convolution."""
        self.conv1.switch_to_deploy()
        self.conv2.switch_to_deploy()

    def forward(self, x: Tensor) -> Tensor:
        """``conv2(act(conv1(x)))``; in eager training with BatchNorm the
        first convolution's output is the one map kept for its norm, the
        activation and the second convolution (:mod:`~.norm_act_op`)."""
        if fusable(self.conv1.norm, x) and isinstance(self.act, nn.GELU):
            conv = self.conv2.conv
            x = norm_act_op(
                self.conv1.conv(x), self.conv1.norm, self.act,
                ConvOp.of(conv), [conv.weight, conv.bias])
            return self.conv2.norm(x)
        return super().forward(x)


class Downsample(ConvNorm):
    """Stride-2 3x3 convolution + norm between two stages.

    Args:
        in_channels: Channels of the previous stage.
        out_channels: Channels of the next stage.
        norm_cfg: Norm layer config. Defaults to ``dict(type='BN')``.
        deploy: Build the deploy form (the norm folded into the
            convolution). Defaults to False.

    Example:
        >>> import torch
        >>> down = Downsample(32, 64)
        >>> print(down(torch.rand(1, 32, 25, 33)).shape)
        torch.Size([1, 64, 13, 17])
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 norm_cfg: Dict = dict(type='BN'),
                 deploy: bool = False) -> None:
        super().__init__(
            in_channels,
            out_channels,
            3,
            stride=2,
            norm_cfg=None if deploy else norm_cfg)
