"""Channel-first LayerNorm and the norm builder of SAEViT's layers.

``LN2d`` normalises each pixel of an NCHW map over its channels (timm's and
mmpretrain's ``LayerNorm2d``). It is built here, not through mmengine's
registry, so that importing saevit_mm registers no generic name that a
host's own ``LN2d`` could collide with.
"""
from typing import Dict, Optional

import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

__all__ = ['LayerNorm2d', 'build_norm2d']


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of an NCHW map.

    Args:
        num_channels: Channels ``C``.
        eps: Added to the variance. Defaults to 1e-6.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(
            x.permute(0, 2, 3, 1), self.normalized_shape, self.weight,
            self.bias, self.eps).permute(0, 3, 1, 2)


def build_norm2d(cfg: Optional[Dict], num_channels: int) -> nn.Module:
    """A norm for NCHW maps: ``None`` -> ``nn.Identity``, ``type='LN2d'``
    -> :class:`LayerNorm2d`, anything else -> mmcv's ``build_norm_layer``
    (``BN``, ``SyncBN``, ``MMSyncBN``, ``GN``...)."""
    if cfg is None:
        return nn.Identity()
    if cfg.get('type') == 'LN2d':
        unknown = set(cfg) - {'type', 'eps'}
        if unknown:
            raise ValueError(
                f'LN2d takes only eps, but got {sorted(unknown)}.')
        return LayerNorm2d(num_channels, eps=cfg.get('eps', 1e-6))
    return build_norm_layer(cfg, num_channels)[1]
