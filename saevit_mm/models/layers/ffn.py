"""Plain convolutional FFN: the ``ffn_type='ffn'`` ablation of CIFFN.

1x1 expansion (+ norm) -> activation -> 1x1 projection (+ norm): CIFFN
without decomposition and redistribution.
"""
from typing import Dict

from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from .conv_norm import ConvNorm

__all__ = ['ConvFFN']


class ConvFFN(nn.Module):
    """Point-wise FFN on an NCHW map.

    Submodules: ``expand`` and ``project`` (:class:`ConvNorm` 1x1), ``act``.

    Args:
        embed_dims: Channels ``C`` of the input and output.
        ffn_ratio: Expansion; hidden width ``int(ffn_ratio * C)``.
            Defaults to 3.
        norm_cfg: Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg: Activation config. Defaults to ``dict(type='GELU')``.

    Example:
        >>> import torch
        >>> ffn = ConvFFN(32, ffn_ratio=2)
        >>> print(ffn(torch.rand(2, 32, 7, 9)).shape)
        torch.Size([2, 32, 7, 9])
    """

    def __init__(self,
                 embed_dims: int,
                 ffn_ratio: float = 3,
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='GELU')) -> None:
        super().__init__()
        hidden = int(embed_dims * ffn_ratio)
        if hidden < 1:
            raise ValueError(f'The FFN hidden width int({embed_dims} * '
                             f'{ffn_ratio}) = {hidden} must be positive.')
        self.expand = ConvNorm(embed_dims, hidden, 1, norm_cfg=norm_cfg)
        self.act = build_activation_layer(act_cfg)
        self.project = ConvNorm(hidden, embed_dims, 1, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the FFN to ``x`` (``B, C, H, W``); no residual added."""
        return self.project(self.act(self.expand(x)))
