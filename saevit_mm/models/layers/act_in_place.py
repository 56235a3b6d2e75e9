"""Activation in place, for the deploy forms.

A deploy form (inference only) may overwrite a map that nothing else holds,
such as the fresh output of the convolution before the activation. On CPU
this saves more than the write: every new map above glibc's mmap threshold
(32 MiB: the first stage's expanded maps at batch 32) is fresh memory that
page-faults once per 4 KiB.
"""
import torch
from torch import Tensor, nn

__all__ = ['act_in_place']


def act_in_place(act: nn.Module, x: Tensor) -> Tensor:
    """``act(x)``, computed in ``x``'s memory when ``act`` is ``nn.GELU``
    (SAEViT's activation) and autograd is off; otherwise ``act(x)``.

    Args:
        act: The activation module.
        x: Its input, which the caller no longer needs.
    """
    if isinstance(act, nn.GELU) and not torch.is_grad_enabled():
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)
