"""SAEViTBlock: DWSConv, then SAA, then CIFFN, each as a residual branch.

The three parts follow the paper (arXiv 2508.16884); their order and the
pre-norm residual layout are our design::

    x = x + DWSConv(x)
    x = x + drop_path(SAA(norm1(x)))
    x = x + drop_path(CIFFN(norm2(x)))

The ablation switches replace SAA by full attention (``attn_type='mhsa'``),
CIFFN by a plain conv FFN (``ffn_type='ffn'``) or drop DWSConv
(``use_dwsconv=False``).
"""
from typing import Dict, Optional, Sequence

import torch
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

from ..utils.fuse import fold_bn_into_next_conv_, is_foldable_bn
from .ciffn import CIFFN
from .dwsconv import DWSConv
from .ffn import ConvFFN
from .mhsa import MHSA2d
from .saa import SparselyAggregatedAttention

__all__ = ['ATTN_TYPES', 'FFN_TYPES', 'SAEViTBlock']

#: Allowed values of ``attn_type``.
ATTN_TYPES = ('saa', 'mhsa')
#: Allowed values of ``ffn_type``.
FFN_TYPES = ('ciffn', 'ciffn_no_shuffle', 'ffn')


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError."""
    if value not in allowed:
        raise ValueError(f'{name} must be one of {tuple(allowed)}, but got '
                         f'{value!r}.')
    return value


class SAEViTBlock(nn.Module):
    """One SAEViT block on an NCHW map; output shape = input shape.

    Submodules: ``dwsconv`` (:class:`~.dwsconv.DWSConv` or ``None``),
    ``norm1``, ``attn`` (:class:`~.saa.SparselyAggregatedAttention` or
    :class:`~.mhsa.MHSA2d`), ``norm2``, ``ffn`` (:class:`~.ciffn.CIFFN` or
    :class:`~.ffn.ConvFFN`), ``drop_path``.

    Args:
        embed_dims: Channels of the input and output.
        num_heads: Attention heads.
        sample_ratio: SAA sample ratio ``r``. Defaults to 1.
        max_delegates: Bound on SAA's delegate tokens (``None``: none).
            Defaults to None.
        ffn_ratio: FFN expansion. Defaults to 3.
        ffn_kernel_sizes: CIFFN depth-wise kernel per group. Defaults to
            ``(3, 5, 7, 9)``.
        attn_type: ``'saa'`` or ``'mhsa'``. Defaults to ``'saa'``.
        ffn_type: ``'ciffn'``, ``'ciffn_no_shuffle'`` (CIFFN without its
            redistribution, an ablation) or ``'ffn'``. Defaults to
            ``'ciffn'``.
        use_dwsconv: Add the DWSConv branch. Defaults to True.
        drop_path: Stochastic depth rate of the SAA and FFN branches.
            Defaults to 0.
        norm_cfg: Norm layer config (channels-first). Defaults to
            ``dict(type='BN')``.
        recovery_norm_cfg: Norm of SAA's recovered map (see
            :class:`~.saa.SparselyAggregatedAttention`). Defaults to None.
        act_cfg: Activation config. Defaults to ``dict(type='GELU')``.

    Example:
        >>> import torch
        >>> block = SAEViTBlock(32, num_heads=2, sample_ratio=2, ffn_ratio=2)
        >>> print(block(torch.rand(2, 32, 13, 17)).shape)
        torch.Size([2, 32, 13, 17])
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 sample_ratio: int = 1,
                 max_delegates: Optional[int] = None,
                 ffn_ratio: float = 3,
                 ffn_kernel_sizes: Sequence[int] = (3, 5, 7, 9),
                 attn_type: str = 'saa',
                 ffn_type: str = 'ciffn',
                 use_dwsconv: bool = True,
                 drop_path: float = 0.,
                 norm_cfg: Dict = dict(type='BN'),
                 recovery_norm_cfg: Optional[Dict] = None,
                 act_cfg: Dict = dict(type='GELU')) -> None:
        super().__init__()
        check_choice('attn_type', attn_type, ATTN_TYPES)
        check_choice('ffn_type', ffn_type, FFN_TYPES)
        self.dwsconv = DWSConv(
            embed_dims, norm_cfg=norm_cfg,
            act_cfg=act_cfg) if use_dwsconv else None
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        if attn_type == 'saa':
            self.attn = SparselyAggregatedAttention(
                embed_dims,
                num_heads,
                sample_ratio=sample_ratio,
                max_delegates=max_delegates,
                norm_cfg=recovery_norm_cfg)
        else:
            self.attn = MHSA2d(embed_dims, num_heads)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        if ffn_type.startswith('ciffn'):
            self.ffn = CIFFN(
                embed_dims,
                ffn_ratio,
                kernel_sizes=ffn_kernel_sizes,
                redistribute=ffn_type == 'ciffn',
                norm_cfg=norm_cfg,
                act_cfg=act_cfg)
        else:
            self.ffn = ConvFFN(
                embed_dims, ffn_ratio, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 \
            else nn.Identity()

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the pre-norms into the convolution after them: ``norm2``
        into the FFN's 1x1 expansion; ``norm1`` into SAA's sampler (its
        input is edge-padded, never zero-padded) or, without a sampler,
        into the 1x1 q/k/v projection (average pooling before it keeps an
        affine map affine). Exact: no zero padding meets the folded shift.

        Raises:
            RuntimeError: A pre-norm is not a BatchNorm in eval mode with
                running statistics, which is what folds.
        """
        sampler = getattr(self.attn, 'sampler', None)
        first = sampler if sampler is not None else self.attn.attn.qkv
        for name, conv in (('norm1', first), ('norm2', self.ffn.expand.conv)):
            norm = getattr(self, name)
            if isinstance(norm, nn.Identity):
                continue
            if not is_foldable_bn(norm):
                mode = ' in training mode' if norm.training else ''
                raise RuntimeError(
                    'SAEViTBlock.switch_to_deploy folds BatchNorms in eval '
                    f'mode with running statistics; {name} is a '
                    f'{type(norm).__name__}{mode}.')
            fold_bn_into_next_conv_(norm, conv)
            setattr(self, name, nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` (``B, C, H, W``)."""
        if self.dwsconv is not None:
            x = x + self.dwsconv(x)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.ffn(self.norm2(x)))
