"""Behaviour every multi-stage backbone needs, written once.

``normalize_out_indices`` turns the user's ``out_indices`` into a sorted tuple
of non-negative stage indices, ``check_frozen_stages`` validates
``frozen_stages``, ``freeze_module`` stops a module's gradients and puts it in
eval mode, and ``set_norm_eval`` puts every normalization layer of a module
in eval mode. None of them hard-codes the number of stages.
``init_conv`` is the default init of every convolution.

Which layers are batch norms is written here once: :class:`AnyBatchNorm`
(torch's ``_BatchNorm`` subclasses, ``BN`` and ``SyncBN``, and mmcv's
``MMSyncBN``, which subclasses ``nn.Module`` only); ``NORM_LAYERS``,
``is_norm``, the backbone's init and the deploy BatchNorm fold use it.
"""
import math
import sys
from abc import ABC
from typing import Optional, Sequence, Tuple, Union

from mmengine.model.weight_init import trunc_normal_
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = [
    'AnyBatchNorm', 'NORM_LAYERS', 'normalize_out_indices',
    'check_frozen_stages', 'freeze_module', 'set_norm_eval', 'is_norm',
    'is_batch_norm', 'normalizes_with_local_batch', 'mmcv_sync_bn_type',
    'init_conv'
]

#: Module of mmcv's ``MMSyncBN`` (``mmcv.ops.SyncBatchNorm``).
_MMCV_SYNC_BN_MODULE = 'mmcv.ops.sync_bn'


def mmcv_sync_bn_type() -> Optional[type]:
    """mmcv's ``MMSyncBN`` class if ``mmcv.ops`` is imported, else None.

    NOTE: this never imports ``mmcv.ops``: that needs mmcv's compiled
    extension, and importing it would slow down ``import saevit_mm`` or
    break it where the extension is missing. Nothing is lost: a model can
    hold an ``MMSyncBN`` only after its module has been imported.
    """
    module = sys.modules.get(_MMCV_SYNC_BN_MODULE)
    return getattr(module, 'SyncBatchNorm', None)


class AnyBatchNorm(ABC):
    """Virtual base class of every batch norm, for ``isinstance`` checks.

    ``isinstance(m, AnyBatchNorm)`` holds for torch's ``_BatchNorm``
    subclasses (``nn.BatchNorm2d``, ``nn.SyncBatchNorm``) and for mmcv's
    ``MMSyncBN`` (:func:`mmcv_sync_bn_type`), which has the same
    parameters and buffers (``weight``, ``bias``, ``running_mean``,
    ``running_var``, ``num_batches_tracked``, ``eps``, ``momentum``,
    ``affine``, ``track_running_stats``) but is no ``_BatchNorm``.

    Example:
        >>> from torch import nn
        >>> isinstance(nn.BatchNorm2d(4), AnyBatchNorm)
        True
        >>> isinstance(nn.GroupNorm(2, 4), AnyBatchNorm)
        False
    """

    @classmethod
    def __subclasshook__(cls, subclass: type) -> bool:
        if cls is not AnyBatchNorm:
            return NotImplemented
        sync_bn = mmcv_sync_bn_type()
        types = (_BatchNorm, ) if sync_bn is None else (_BatchNorm, sync_bn)
        return issubclass(subclass, types) or NotImplemented


#: Layer types treated as normalization layers by :func:`set_norm_eval` and
#: the backbone's init.
NORM_LAYERS = (AnyBatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def normalize_out_indices(out_indices: Union[int, Sequence[int]],
                          num_stages: int) -> Tuple[int, ...]:
    """Return ``out_indices`` as a sorted tuple of indices in ``[0, n)``.

    Args:
        out_indices: One stage index or a sequence of them. Negative indices
            count from the last stage, as in Python (``-1`` is the last).
        num_stages: Number of stages of the backbone.

    Returns:
        A new, sorted tuple of distinct non-negative indices.

    Raises:
        TypeError: ``out_indices`` is not an int or a sequence of ints.
        ValueError: It is empty, has an index outside
            ``[-num_stages, num_stages)``, or names one stage twice.
    """
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = (out_indices, )
    if not isinstance(out_indices, Sequence) or isinstance(out_indices, str) \
            or not all(isinstance(i, int) and not isinstance(i, bool)
                       for i in out_indices):
        raise TypeError('out_indices must be an int or a sequence of ints, '
                        f'but got {out_indices!r}.')
    if len(out_indices) == 0:
        raise ValueError('out_indices must name at least one stage; allowed '
                         f'indices are {-num_stages}..{num_stages - 1}.')
    normalized = []
    for index in out_indices:
        if not -num_stages <= index < num_stages:
            raise ValueError(
                f'out_indices {tuple(out_indices)} has {index}, which is out '
                f'of range for {num_stages} stages; allowed indices are '
                f'{-num_stages}..{num_stages - 1}.')
        normalized.append(index % num_stages)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f'out_indices {tuple(out_indices)} names the same '
                         'stage twice; give each stage at most once.')
    return tuple(sorted(normalized))


def check_frozen_stages(frozen_stages: int, num_stages: int) -> int:
    """Validate ``frozen_stages`` (``-1`` nothing, ``0`` the stem, ``k`` the
    stem and stages ``0..k-1``).

    Args:
        frozen_stages: The requested value.
        num_stages: Number of stages of the backbone.

    Returns:
        ``frozen_stages`` unchanged.

    Raises:
        ValueError: It is not an int in ``[-1, num_stages]``.
    """
    if isinstance(frozen_stages, bool) or not isinstance(frozen_stages, int) \
            or not -1 <= frozen_stages <= num_stages:
        raise ValueError(
            f'frozen_stages must be an int in -1..{num_stages} (-1 freezes '
            'nothing, 0 the stem, k the stem and the first k stages), but '
            f'got {frozen_stages!r}.')
    return frozen_stages


def freeze_module(module: nn.Module) -> None:
    """Put ``module`` in eval mode and stop gradients to its parameters."""
    module.eval()
    for param in module.parameters():
        param.requires_grad = False


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer (see ``NORM_LAYERS``)."""
    return isinstance(module, NORM_LAYERS)


def is_batch_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a batch norm (see :class:`AnyBatchNorm`)."""
    return isinstance(module, AnyBatchNorm)


def normalizes_with_local_batch(module: nn.Module) -> bool:
    """Whether ``module`` is a batch norm in training mode that normalises
    with the statistics of this process's batch alone.

    True for ``BN`` and for an ``MMSyncBN`` whose group is this process
    only (on one value per channel the first fails inside torch, the second
    silently outputs its bias); False for eval mode, for other norms, for
    ``SyncBN`` (torch counts the values of every process and checks the sum
    itself) and for an ``MMSyncBN`` of several processes.
    """
    if not (is_batch_norm(module) and module.training):
        return False
    if isinstance(module, nn.SyncBatchNorm):
        return False
    sync_bn = mmcv_sync_bn_type()
    if sync_bn is not None and isinstance(module, sync_bn):
        return module.group_size == 1
    return True


def set_norm_eval(module: nn.Module) -> None:
    """Put every normalization layer inside ``module`` in eval mode."""
    for m in module.modules():
        if is_norm(m):
            m.eval()


def init_conv(conv: Union[nn.Conv2d, nn.ConvTranspose2d]) -> None:
    """SAEViT's default init of a convolution, with a zero bias.

    A 1x1 convolution is a transformer's token-wise linear layer and gets
    ViT's truncated normal (std 0.02). A convolution with a spatial kernel
    (stem, downsampling, depth-wise) gets He's normal over the fan-out of
    one output channel's group (``k_h * k_w * out_channels / groups``), as
    convnets and PVTv2 do: std 0.02 on a depth-wise 3x3 (fan-in 9) makes the
    map tiny before its norm, and the norm's backward then gives the early
    weights gradients large enough to overflow fp16 (docs/amp.md).
    """
    if conv.kernel_size == (1, 1):
        trunc_normal_(conv.weight, std=.02)
    else:
        fan_out = conv.kernel_size[0] * conv.kernel_size[1] * (
            conv.out_channels // conv.groups)
        nn.init.normal_(conv.weight, 0., math.sqrt(2. / fan_out))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
