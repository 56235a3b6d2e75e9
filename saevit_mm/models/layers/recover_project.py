"""SAA's recovery and output projection, keeping the delegates' map.

In eager training, ``proj(crop(conv_transpose2d(a)))`` makes autograd keep
the recovered map (full resolution, ``C`` channels) for the projection's
weight gradient. The recovery spreads each delegate over its cell, one
multiply-add per output pixel, so :func:`recover_project` keeps the
attention output ``a`` (the delegates' resolution, ``1 / (s_h * s_w)`` of
the pixels) and spreads it again in backward. The backward calls the aten
ops autograd would call (``convolution_backward``, transposed for the
recovery), so gradients are those of the plain ops.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['recover_project']


class _RecoverProject(torch.autograd.Function):

    @staticmethod
    def forward(ctx, a, rec_weight, rec_bias, stride, size, proj_weight,
                proj_bias):
        groups = a.shape[1]
        x = F.conv_transpose2d(a, rec_weight, rec_bias, stride=stride,
                               groups=groups)
        ctx.stride, ctx.full = tuple(stride), tuple(x.shape[-2:])
        ctx.device_type = a.device.type
        ctx.save_for_backward(a, rec_weight, rec_bias, proj_weight,
                              proj_bias)
        return F.conv2d(x[..., :size[0], :size[1]], proj_weight, proj_bias)

    @staticmethod
    def backward(ctx, grad):
        a, rec_weight, rec_bias, proj_weight, proj_bias = ctx.saved_tensors
        dtype, groups = a.dtype, a.shape[1]
        H, W = grad.shape[-2:]
        with torch.autocast(ctx.device_type, enabled=False):
            x = F.conv_transpose2d(
                a, rec_weight.to(dtype),
                None if rec_bias is None else rec_bias.to(dtype),
                stride=ctx.stride, groups=groups)[..., :H, :W]
            grad_x, grad_pw, grad_pb = torch.ops.aten.convolution_backward(
                grad.to(dtype), x, proj_weight.to(dtype),
                None if proj_bias is None else list(proj_bias.shape),
                [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                [True, True, proj_bias is not None])
            del x
            full_h, full_w = ctx.full
            if (full_h, full_w) != (H, W):  # the cropped rows and columns
                grad_x = F.pad(grad_x, (0, full_w - W, 0, full_h - H))
            grad_a, grad_rw, grad_rb = torch.ops.aten.convolution_backward(
                grad_x, a, rec_weight.to(dtype),
                None if rec_bias is None else list(rec_bias.shape),
                list(ctx.stride), [0, 0], [1, 1], True, [0, 0], groups,
                [True, True, rec_bias is not None])

        def cast(g: Optional[Tensor], like: Optional[Tensor]):
            return None if g is None else g.to(like.dtype)

        return (grad_a, cast(grad_rw, rec_weight), cast(grad_rb, rec_bias),
                None, None, cast(grad_pw, proj_weight),
                cast(grad_pb, proj_bias))


def recover_project(a: Tensor, rec_weight: Tensor, rec_bias: Optional[Tensor],
                    stride: Sequence[int], size: Sequence[int],
                    proj_weight: Tensor,
                    proj_bias: Optional[Tensor]) -> Tensor:
    """``F.conv2d(conv_transpose2d(a, ...)[..., :H, :W], proj_weight,
    proj_bias)`` for a depth-wise recovery whose stride is its kernel,
    keeping ``a`` for backward (module docstring).

    Args:
        a: The attention output on the delegate grid, ``(B, C, h, w)``.
        rec_weight: The recovery kernel, ``(C, 1, s_h, s_w)``.
        rec_bias: Its bias or None.
        stride: ``(s_h, s_w)``.
        size: ``(H, W)`` to crop the recovered map to.
        proj_weight: The 1x1 projection's weight.
        proj_bias: Its bias or None.
    """
    return _RecoverProject.apply(a, rec_weight, rec_bias, tuple(stride),
                                 tuple(size), proj_weight, proj_bias)
