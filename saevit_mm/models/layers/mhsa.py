"""Plain full multi-head self-attention: the ``attn_type='mhsa'`` ablation.

Single-scale attention among all ``H * W`` pixels, no sampling, then a 1x1
output projection. Same core as SAA (:class:`~.attention.Attention2d`) so the
ablation changes nothing but the sampling and the multi-scale keys.
"""
from torch import Tensor, nn

from .attention import Attention2d

__all__ = ['MHSA2d']


class MHSA2d(nn.Module):
    """Full multi-head self-attention over the pixels of an NCHW map.

    Submodules: ``attn`` (:class:`~.attention.Attention2d`, single scale)
    and ``proj`` (1x1 conv).

    Args:
        embed_dims: Channels of the input and output.
        num_heads: Attention heads; must divide ``embed_dims``.
        qkv_bias: Bias in the q/k/v projection. Defaults to True.
        attn_drop: Dropout on attention weights. Defaults to 0.

    Example:
        >>> import torch
        >>> mhsa = MHSA2d(32, num_heads=2)
        >>> print(mhsa(torch.rand(2, 32, 7, 9)).shape)
        torch.Size([2, 32, 7, 9])
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.) -> None:
        super().__init__()
        self.attn = Attention2d(
            embed_dims,
            num_heads,
            multi_scale=False,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop)
        self.proj = nn.Conv2d(embed_dims, embed_dims, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Attend on ``x`` (``B, C, H, W``); returns the same shape."""
        return self.proj(self.attn(x))
