"""BatchNorm -> activation -> linear operator, keeping one map for backward.

In eager training a chain ``y = op(act(bn(x)))`` makes autograd keep three
maps of ``x``'s size: ``x`` (for the norm), ``bn(x)`` (for the activation)
and ``act(bn(x))`` (for the operator's weight gradient). The norm and the
activation are element-wise and cheap, so :func:`norm_act_op` keeps ``x``
alone (and the batch statistics) and recomputes the other two in backward
(the idea of InPlace-ABN and of memory-efficient DenseNet); the operator
itself, a convolution or a product, is never recomputed. The backward calls
the aten backward ops autograd would call (``native_batch_norm_backward``,
``gelu_backward``, ``convolution_backward``), so gradients are those of the
plain chain, bit for bit (the norm is recomputed by the same op).

Used where the gain is a map of the hidden width or of the stream: CIFFN's
two hidden-width chains and its pre-norm, DWSConv's chain, SAA's pre-norm
and sampler, and the stem's first norm and activation. The plain chain runs
instead when nothing needs a gradient, under ``torch.compile`` (its
partitioner chooses what to recompute) or a TorchScript trace (FLOP
counting, ONNX export), and for a norm other than
a plain BatchNorm (SyncBN, GN, LN2d).

Under autocast the forward casts as the plain chain does (the operator runs
in the autocast dtype, the norm and activation in their input's dtype); the
backward runs in those dtypes and returns each gradient in its input's.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norm import BatchNorm2d, batch_norm_settings, is_compiling


__all__ = [
    'ConvOp', 'GroupedProductOp', 'ShuffledDepthwiseOp', 'fusable',
    'norm_act_op', 'records_eagerly'
]


class ConvOp:
    """``F.conv2d`` with fixed settings and the given weight / bias (tensors
    passed through the autograd function); :meth:`of` takes a
    convolution's settings."""

    def __init__(self,
                 stride: Sequence[int] = (1, 1),
                 padding: Sequence[int] = (0, 0),
                 groups: int = 1,
                 dilation: Sequence[int] = (1, 1)) -> None:
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.dilation, self.groups = tuple(dilation), groups

    @classmethod
    def of(cls, conv: nn.Conv2d) -> 'ConvOp':
        return cls(conv.stride, conv.padding, conv.groups, conv.dilation)

    def forward(self, x: Tensor, weight: Tensor,
                bias: Optional[Tensor]) -> Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding,
                        self.dilation, self.groups)

    def backward(self, x: Tensor, grad: Tensor, weight: Tensor,
                 bias: Optional[Tensor]) -> Tuple[Tensor, ...]:
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, x, weight.to(x.dtype),
            None if bias is None else list(bias.shape), list(self.stride),
            list(self.padding), list(self.dilation), False, [0, 0],
            self.groups, [True, True, bias is not None])
        return grad_x, grad_w, grad_b


class GroupedProductOp:
    """A grouped 1x1 convolution as one batched product
    (:class:`~.grouped_pointwise.GroupedPointwiseConv`), no bias; ``bmm``
    on ``(B * g)`` batches, so that no product needs a reshape of its
    result."""

    def __init__(self, groups: int) -> None:
        self.groups = groups

    def _operands(self, x: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
        """The weight as ``(B * g, out / g, in / g)`` (a copy over the
        batch) and ``x`` as ``(B * g, in / g, H * W)`` (a view)."""
        B, _, H, W = x.shape
        g = self.groups
        w = weight.reshape(g, weight.shape[0] // g, -1).to(x.dtype)
        w = w.expand(B, -1, -1, -1).reshape(B * g, *w.shape[1:])
        return w, x.reshape(B * g, -1, H * W)

    def forward(self, x: Tensor, weight: Tensor) -> Tensor:
        B, _, H, W = x.shape
        w, rows = self._operands(x, weight)
        return torch.bmm(w, rows).view(B, -1, H, W)

    def backward(self, x: Tensor, grad: Tensor,
                 weight: Tensor) -> Tuple[Tensor, ...]:
        B, _, H, W = x.shape
        w, rows = self._operands(x, weight)
        grad = grad.reshape(w.shape[0], w.shape[1], H * W)
        grad_x = torch.bmm(w.transpose(1, 2), grad).view(x.shape)
        grad_w = torch.bmm(grad, rows.transpose(1, 2))
        return grad_x, grad_w.view(B, *weight.shape).sum(0)


class ShuffledDepthwiseOp:
    """CIFFN's decomposition and redistribution: ``g`` equal channel chunks,
    each through its own depth-wise convolution (no bias, odd kernel,
    stride 1), then the channel shuffle (or, without redistribution, the
    concatenation)."""

    def __init__(self, convs: Sequence[nn.Conv2d], shuffle: bool) -> None:
        self.paddings = [conv.padding for conv in convs]
        self.shuffle = shuffle

    def forward(self, x: Tensor, *weights: Tensor) -> Tensor:
        parts = [
            F.conv2d(part, w, None, 1, padding, 1, w.shape[0])
            for part, w, padding in zip(
                x.chunk(len(weights), dim=1), weights, self.paddings)
        ]
        if self.shuffle:
            return torch.stack(parts, dim=2).flatten(1, 2)
        return torch.cat(parts, dim=1)

    def backward(self, x: Tensor, grad: Tensor, *weights:
                 Tensor) -> Tuple[Tensor, ...]:
        g = len(weights)
        B, _, H, W = grad.shape
        # each group's gradient as a view: no hidden-width copy (a fresh
        # map that large page-faults on CPU, see DEVELOPERS.md)
        grads = grad.view(B, -1, g, H, W).unbind(2) if self.shuffle \
            else grad.chunk(g, dim=1)
        grad_x, grad_w = [], []
        for part, part_grad, w, padding in zip(
                x.chunk(g, dim=1), grads, weights, self.paddings):
            gx, gw, _ = torch.ops.aten.convolution_backward(
                part_grad, part, w.to(x.dtype), None, [1, 1], list(padding),
                [1, 1], False, [0, 0], w.shape[0], [True, True, False])
            grad_x.append(gx)
            grad_w.append(gw)
        return (torch.cat(grad_x, dim=1), *grad_w)


def records_eagerly() -> bool:
    """Autograd records and runs eagerly: grad mode on, no compiler or
    TorchScript tracer at work (they see the plain ops)."""
    return (torch.is_grad_enabled() and not is_compiling()
            and not torch.jit.is_tracing())


def fusable(norm: nn.Module, *tensors: Tensor) -> bool:
    """Whether :func:`norm_act_op` takes over: ``norm`` is a plain
    ``nn.BatchNorm2d`` in training mode, a tensor or a parameter of
    ``norm`` needs a gradient, and :func:`records_eagerly`. A frozen norm
    (eval mode) keeps the plain chain, whose autograd graph data-flow
    passes such as :func:`~..utils.fuse.find_conv_bn_pairs` read."""
    # records_eagerly first: a compiler traces nothing more of this
    return (records_eagerly()
            and type(norm) in (nn.BatchNorm2d, BatchNorm2d) and norm.training
            and (norm.weight is None or norm.weight.requires_grad
                 or any(t.requires_grad for t in tensors)))


class _NormActOp(torch.autograd.Function):
    """``op(act(bn(x)))`` saving ``x`` and the batch statistics."""

    @staticmethod
    def forward(ctx, x, bn_weight, bn_bias, running_mean, running_var,
                settings, op, gelu, *op_weights):
        training, momentum, eps = settings
        y, mean, invstd = torch.ops.aten.native_batch_norm(
            x, bn_weight, bn_bias, running_mean, running_var, training,
            momentum, eps)
        ctx.settings, ctx.op, ctx.gelu = settings, op, gelu
        ctx.device_type = x.device.type
        if training:  # the batch statistics; the running ones move on
            running_mean = running_var = None
        ctx.save_for_backward(x, bn_weight, bn_bias, running_mean, running_var,
                              mean, invstd, *op_weights)
        if gelu is not None:  # in place: y is this function's own
            y = torch.ops.aten.gelu_(y, approximate=gelu)
        return op.forward(y, *op_weights)

    @staticmethod
    def backward(ctx, grad):
        (x, bn_weight, bn_bias, running_mean, running_var, mean, invstd,
         *op_weights) = ctx.saved_tensors
        training, _, eps = ctx.settings
        with torch.autocast(ctx.device_type, enabled=False):
            y = _recompute_norm(x, bn_weight, bn_bias, running_mean,
                                running_var, training, eps)
            z = y if ctx.gelu is None else F.gelu(y, approximate=ctx.gelu)
            grad_z, *grad_op = ctx.op.backward(z, grad.to(z.dtype),
                                               *op_weights)
            del z
            if ctx.gelu is not None:  # into grad_z's memory
                grad_z = torch.ops.aten.gelu_backward.grad_input(
                    grad_z, y, approximate=ctx.gelu, grad_input=grad_z)
            del y
            grad_x, grad_w, grad_b = \
                torch.ops.aten.native_batch_norm_backward(
                    grad_z, x, bn_weight, running_mean, running_var, mean,
                    invstd, training, eps,
                    [True, bn_weight is not None, bn_bias is not None])
        grad_op = [
            None if g is None else g.to(w.dtype)
            for g, w in zip(grad_op, op_weights)
        ]
        return (grad_x, grad_w, grad_b, None, None, None, None, None, *grad_op)


def _recompute_norm(x: Tensor, weight: Optional[Tensor],
                    bias: Optional[Tensor], running_mean: Optional[Tensor],
                    running_var: Optional[Tensor], training: bool,
                    eps: float) -> Tensor:
    """The norm's output again, bit for bit: the same op on the same input,
    without updating the running statistics (one more read of ``x`` in
    training mode, where the batch statistics are recomputed too)."""
    return torch.ops.aten.native_batch_norm(x, weight, bias, running_mean,
                                            running_var, training, 0.0, eps)[0]


def norm_act_op(x: Tensor, bn: nn.BatchNorm2d, act: Optional[nn.Module], op,
                op_weights: Sequence[Optional[Tensor]]) -> Tensor:
    """``op.forward(act(bn(x)), *op_weights)`` keeping ``x`` for backward
    (module docstring); call when :func:`fusable` holds.

    Args:
        x: The norm's input.
        bn: A plain ``nn.BatchNorm2d`` (training or eval mode).
        act: ``nn.GELU`` or None (no activation).
        op: :class:`ConvOp`, :class:`GroupedProductOp` or
            :class:`ShuffledDepthwiseOp`.
        op_weights: The operator's weights, in its ``forward`` order.
    """
    if act is not None and not isinstance(act, nn.GELU):
        raise TypeError('norm_act_op recomputes GELU only, but got '
                        f'{type(act).__name__}.')
    training, momentum = batch_norm_settings(bn)
    running = (None, None) if training and not bn.track_running_stats \
        else (bn.running_mean, bn.running_var)
    return _NormActOp.apply(x, bn.weight, bn.bias, *running,
                            (training, momentum, bn.eps), op,
                            None if act is None else act.approximate,
                            *op_weights)
