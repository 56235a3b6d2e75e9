"""Multi-head attention among the pixels of an NCHW map, multi-scale keys.

The attention core shared by :class:`~.saa.SparselyAggregatedAttention`
(run on the sampled delegate tokens) and :class:`~.mhsa.MHSA2d` (the plain
full-attention ablation, run on every pixel).

Multi-scale attention (our choice among the options the design allowed):
every head attends to the keys/values of the tokens themselves **and** of a
2x coarser copy of them (3x3 average pooling, stride 2, padding 1, padding
not counted, so a ``h`` x ``w`` map gives ``ceil(h / 2)`` x ``ceil(w / 2)``
coarse tokens). One softmax runs over both scales, so each query weighs fine
against coarse context itself. We preferred this to splitting the heads
between two scales because it works for any number of heads, including the
single head of stage 0, and every head sees both scales. Because the key /
value projection is a 1x1 convolution and pooling is linear, pooling the
projected keys/values equals projecting pooled tokens, so the coarse scale
costs a pooling, not another projection.

NOTE: layout. ``F.scaled_dot_product_attention`` on CPU runs several times
faster on token-major queries, keys and values (channels contiguous) than
on views of a channels-first map. In inference, and on any channels-last map
(the deploy form), the 1x1 projection runs on the channels-last map, so its
output is token-major in memory, ``(B, N, 3, heads, head_dim)``: q, k and v
are views, and SDPA writes its output in that layout, which is the
channels-last map again (copied back for an NCHW input): three fewer ops
than copying. Training on an NCHW map copies q into the token-major layout
and the output back to NCHW instead; its backward was 3-12 % faster that way
on a 2-core Xeon (forward + backward of one layer at the delegate grids of
SAEViT-t and -s).
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .norm_act_op import is_compiling, records_eagerly

__all__ = ['Attention2d', 'coarse_tokens']


class _CoarseTokens(torch.autograd.Function):
    """The pooling of :func:`coarse_tokens`, keeping nothing for backward:
    its gradient depends on the input's shape, not its values."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape, ctx.dtype = x.shape, x.dtype
        return F.avg_pool2d(x, 3, stride=2, padding=1,
                            count_include_pad=False)

    @staticmethod
    def backward(ctx, grad):
        # an input of the right shape for the op; its values are not read
        shape = grad.new_empty(ctx.shape, dtype=ctx.dtype)
        return torch.ops.aten.avg_pool2d_backward(grad, shape, [3, 3], [2, 2],
                                                  [1, 1], False, False, None)


def coarse_tokens(x: Tensor) -> Tensor:
    """The 2x coarser copy of an NCHW map used as the second key scale.

    3x3 average pooling with stride 2 and padding 1 that does not count the
    padding: ``h`` x ``w`` becomes ``ceil(h / 2)`` x ``ceil(w / 2)`` for
    every ``h, w >= 1`` and exports to ONNX as one ``AveragePool``. In eager
    training autograd keeps nothing of ``x`` for it (``F.avg_pool2d`` would
    keep ``x``, and with it the whole q/k/v map ``x`` is a slice of).
    """
    if x.requires_grad and records_eagerly():
        return _CoarseTokens.apply(x)
    return F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class Attention2d(nn.Module):
    """Multi-head self-attention over the pixels of an NCHW map.

    Computes ``softmax(q k^T / sqrt(d)) v`` per head with ``q``, ``k``, ``v``
    from one 1x1 convolution; with ``multi_scale=True`` the keys and values
    also include :func:`coarse_tokens` of them. No output projection: the
    caller adds one.

    Args:
        embed_dims: Channels ``C`` of the input and output.
        num_heads: Number of heads; must divide ``embed_dims``.
        multi_scale: Add the 2x coarser keys/values. Defaults to True.
        qkv_bias: Bias in the q/k/v projection. Defaults to True.
        attn_drop: Dropout on the attention weights (training only).
            Defaults to 0.

    Example:
        >>> import torch
        >>> attn = Attention2d(32, num_heads=2)
        >>> print(attn(torch.rand(2, 32, 7, 5)).shape)
        torch.Size([2, 32, 7, 5])
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 multi_scale: bool = True,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.) -> None:
        super().__init__()
        if num_heads < 1 or embed_dims % num_heads != 0:
            raise ValueError(
                f'num_heads ({num_heads}) must be a positive divisor of '
                f'embed_dims ({embed_dims}).')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.multi_scale = multi_scale
        self.attn_drop = attn_drop
        self.qkv = nn.Conv2d(embed_dims, 3 * embed_dims, 1, bias=qkv_bias)

    def forward(self, x: Tensor) -> Tensor:
        """Attend among the ``h * w`` pixels of ``x`` (``B, C, h, w``);
        the result has ``x``'s memory format (module note: layout)."""
        if is_compiling():  # one traced form (torch 2.1's dynamic shapes
            return self._attend_channels_first(x)  # break on layout tests)
        if x.is_contiguous(memory_format=torch.channels_last) or \
                not torch.is_grad_enabled():
            return self._attend_token_major(x)
        return self._attend_channels_first(x)

    def _attend_channels_first(self, x: Tensor) -> Tensor:
        """Training on an NCHW map: q, k, v copied token-major."""
        B, C, H, W = x.shape
        heads, dims = self.num_heads, self.head_dims
        q, kv = self.qkv(x).split([C, 2 * C], dim=1)
        q = q.reshape(B, heads, dims, H * W).transpose(-2, -1).contiguous()
        fine = kv.reshape(B, 2, heads, dims, H * W).transpose(-2, -1)
        if self.multi_scale:
            coarse = coarse_tokens(kv).reshape(B, 2, heads, dims, -1)
            kv = torch.cat([fine, coarse.transpose(-2, -1)], dim=3)
        else:
            kv = fine.contiguous()
        k, v = kv.unbind(1)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return out.transpose(-2, -1).reshape(B, C, H, W)

    def _attend_token_major(self, x: Tensor) -> Tensor:
        """Inference, or any channels-last map: q, k, v as views of the
        channels-last projection."""
        B, C, H, W = x.shape
        heads, dims = self.num_heads, self.head_dims
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        qkv = self.qkv(x.contiguous(memory_format=torch.channels_last))
        tokens = qkv.permute(0, 2, 3, 1).reshape(B, H * W, 3, heads, dims)
        if self.multi_scale:
            coarse = coarse_tokens(qkv[:, C:]).permute(0, 2, 3, 1)
            kv = torch.cat([tokens[:, :, 1:],
                            coarse.reshape(B, -1, 2, heads, dims)], dim=1)
        else:
            kv = tokens[:, :, 1:]
        q = tokens[:, :, 0].transpose(1, 2)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        # SDPA writes its output in q's layout: (B, N, heads, dims)
        out = out.transpose(1, 2).reshape(B, H, W, C).permute(0, 3, 1, 2)
        return out if channels_last else out.contiguous()
