"""Behaviour every multi-stage backbone needs, written once.

``normalize_out_indices`` turns the user's ``out_indices`` into a sorted tuple
of non-negative stage indices, ``check_frozen_stages`` validates
``frozen_stages``, ``freeze_module`` stops a module's gradients and puts it in
eval mode, and ``set_norm_eval`` puts every normalization layer of a module
in eval mode. None of them hard-codes the number of stages.
"""
from typing import Sequence, Tuple, Union

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = [
    'NORM_LAYERS', 'normalize_out_indices', 'check_frozen_stages',
    'freeze_module', 'set_norm_eval', 'is_norm'
]

#: Layer types treated as normalization layers by :func:`set_norm_eval`.
NORM_LAYERS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


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


def set_norm_eval(module: nn.Module) -> None:
    """Put every normalization layer inside ``module`` in eval mode."""
    for m in module.modules():
        if is_norm(m):
            m.eval()
