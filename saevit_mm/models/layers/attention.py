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

NOTE: layout. The 1x1 projection works channels-first on ``(B, C, h, w)``;
queries, keys and values are then copied once into the token-major
``(B, heads, N, head_dim)`` layout, on which ``F.scaled_dot_product_attention``
runs several times faster on CPU than on transposed views, and the result is
transposed back to NCHW.
"""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ['Attention2d', 'coarse_tokens']


def coarse_tokens(x: Tensor) -> Tensor:
    """The 2x coarser copy of an NCHW map used as the second key scale.

    3x3 average pooling with stride 2 and padding 1 that does not count the
    padding: ``h`` x ``w`` becomes ``ceil(h / 2)`` x ``ceil(w / 2)`` for
    every ``h, w >= 1`` and exports to ONNX as one ``AveragePool``.
    """
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
        """Attend among the ``h * w`` pixels of ``x`` (``B, C, h, w``)."""
        B, C, H, W = x.shape
        heads, dims = self.num_heads, self.head_dims
        q, kv = self.qkv(x).split([C, 2 * C], dim=1)
        # channels-first (B, heads, dims, N) -> token-major (B, heads, N,
        # dims); SDPA on CPU is much faster on contiguous token-major input
        # than on the transposed view, so copy once here.
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
