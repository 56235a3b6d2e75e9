"""Channel-first LayerNorm, the BatchNorm of SAEViT's layers, their builder.

``LN2d`` normalises each pixel of an NCHW map over its channels (timm's and
mmpretrain's ``LayerNorm2d``). It is built here, not through mmengine's
registry, so that importing saevit_mm registers no generic name that a
host's own ``LN2d`` could collide with.

``BN`` builds :class:`BatchNorm2d`: torch's, calling the aten op itself in
eager mode. torch's ``F.batch_norm`` is a composite that also dispatches an
empty allocation per call, which costs a dispatch (host time that bounds a
small model's eager latency on a GPU) and no arithmetic.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from torch import Tensor, nn

try:  # torch >= 2.3
    from torch.compiler import is_compiling
except ImportError:  # torch 2.1, 2.2
    from torch._dynamo import is_compiling

__all__ = [
    'BatchNorm2d', 'LayerNorm2d', 'batch_norm_settings', 'build_norm2d',
    'is_compiling'
]


def batch_norm_settings(bn: nn.BatchNorm2d) -> Tuple[bool, float]:
    """``(training, momentum)`` for ``native_batch_norm`` with the
    module's own bookkeeping (``num_batches_tracked``), as
    ``_BatchNorm.forward`` does it."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    return bn.training or bn.running_mean is None, momentum


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same arguments, parameters, buffers, state-dict
    keys and outputs) whose eager forward calls ``native_batch_norm``
    itself: one dispatch per call instead of two. Under ``torch.compile``
    or a TorchScript trace it is ``nn.BatchNorm2d.forward``.

    Example:
        >>> import torch
        >>> bn, ref = BatchNorm2d(3), torch.nn.BatchNorm2d(3)
        >>> x = torch.randn(2, 3, 4, 4)
        >>> torch.equal(bn(x), ref(x)) and torch.equal(bn.running_var,
        ...                                            ref.running_var)
        True
    """

    def forward(self, x: Tensor) -> Tensor:
        if is_compiling() or torch.jit.is_tracing() \
                or torch.jit.is_scripting():
            return super().forward(x)
        self._check_input_dim(x)
        training, momentum = batch_norm_settings(self)
        keep = not self.training or self.track_running_stats
        return torch.ops.aten.native_batch_norm(
            x, self.weight, self.bias, self.running_mean if keep else None,
            self.running_var if keep else None, training, momentum,
            self.eps)[0]


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
    (``BN``, ``SyncBN``, ``MMSyncBN``, ``GN``...), whose ``nn.BatchNorm2d``
    becomes :class:`BatchNorm2d`."""
    if cfg is None:
        return nn.Identity()
    if cfg.get('type') == 'LN2d':
        unknown = set(cfg) - {'type', 'eps'}
        if unknown:
            raise ValueError(
                f'LN2d takes only eps, but got {sorted(unknown)}.')
        return LayerNorm2d(num_channels, eps=cfg.get('eps', 1e-6))
    norm = build_norm_layer(cfg, num_channels)[1]
    if type(norm) is nn.BatchNorm2d:  # the same module, its own forward
        norm.__class__ = BatchNorm2d
    return norm
