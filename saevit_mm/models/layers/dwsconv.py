"""DWSConv: the depth-wise separable convolution block of SAEViT.

Follows the paper (arXiv 2508.16884): depth-wise separable convolutions
embedded in every block strengthen local features. Our choice: depth-wise 3x3
-> BN -> GELU -> point-wise 1x1 -> BN; the block adds it as a residual
branch. The second BN is ours (it keeps the branch's scale in check at
initialisation and folds into the 1x1 convolution at deploy time: the
deploy form, ``deploy=True`` or ``switch_to_deploy()``, folds both).
"""
from typing import Dict

import torch
from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from .conv_norm import ConvNorm
from .norm_act_op import ConvOp, fusable, norm_act_op

__all__ = ['DWSConv']


class DWSConv(nn.Module):
    """Depth-wise separable convolution: DW kxk + norm, act, PW 1x1 + norm.

    The output has the shape of the input; the caller adds the residual.

    Args:
        channels: Input and output channels.
        kernel_size: Odd kernel of the depth-wise convolution (the output
            keeps the input's size). Defaults to 3.
        norm_cfg: Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg: Activation config. Defaults to ``dict(type='GELU')``.
        deploy: Build the deploy form (each norm folded into its
            convolution). Defaults to False.

    Example:
        >>> import torch
        >>> layer = DWSConv(16)
        >>> print(layer(torch.rand(2, 16, 7, 9)).shape)
        torch.Size([2, 16, 7, 9])
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int = 3,
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(
                kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                'DWSConv kernel_size must be an odd positive int (1, 3, 5, '
                '...): only an odd kernel with padding kernel_size // 2 '
                'keeps the map size for the residual add, but got '
                f'{kernel_size!r}.')
        norm_cfg = None if deploy else norm_cfg
        self.dw = ConvNorm(
            channels,
            channels,
            kernel_size,
            groups=channels,
            norm_cfg=norm_cfg)
        self.act = build_activation_layer(act_cfg)
        self.pw = ConvNorm(channels, channels, 1, norm_cfg=norm_cfg)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold each norm into its convolution."""
        self.dw.switch_to_deploy()
        self.pw.switch_to_deploy()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to an NCHW map (no residual added). In eager
        training with BatchNorm the depth-wise output is the one map kept
        for its norm, activation and the point-wise convolution
        (:mod:`~.norm_act_op`)."""
        if fusable(self.dw.norm, x) and isinstance(self.act, nn.GELU):
            pw = self.pw.conv
            x = norm_act_op(
                self.dw.conv(x), self.dw.norm, self.act, ConvOp.of(pw),
                [pw.weight, pw.bias])
            return self.pw.norm(x)
        x = self.dw(x)
        return self.pw(self.act(x))
