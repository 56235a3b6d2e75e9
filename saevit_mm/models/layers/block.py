"""SAEViTBlock: DWSConv, then SAA, then CIFFN, each as a residual branch.

The three parts follow the paper (arXiv 2508.16884); their order and the
pre-norm residual layout are our design::

    x = x + DWSConv(x)
    x = x + drop_path(SAA(norm1(x)))
    x = x + drop_path(CIFFN(norm2(x)))

The ablation switches replace SAA by full attention (``attn_type='mhsa'``),
CIFFN by a plain conv FFN (``ffn_type='ffn'``) or drop DWSConv
(``use_dwsconv=False``).

Deploy form (:meth:`SAEViTBlock.switch_to_deploy`, or ``deploy=True`` to
build it): ``norm1`` and ``norm2`` folded into the convolution after them
(``nn.Identity`` left), and each part in its own deploy form.
"""
from typing import Dict, Optional, Sequence

import torch
from mmcv.cnn.bricks import DropPath
from torch import Tensor, nn

from ..utils.backbone_utils import is_batch_norm, is_norm
from ..utils.fuse import check_foldable_bn, fold_bn_into_next_conv_
from .ciffn import CIFFN
from .conv_norm import switch_conv_norms
from .dwsconv import DWSConv
from .ffn import ConvFFN
from .mhsa import MHSA2d
from .norm import build_norm2d
from .saa import SparselyAggregatedAttention

__all__ = ['ATTN_TYPES', 'FFN_TYPES', 'SAEViTBlock', 'check_deployable']

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


def check_deployable(module: nn.Module,
                     kept: Sequence[nn.Module] = ()) -> None:
    """Raise RuntimeError unless every norm inside ``module`` that the
    deploy form folds (all but ``kept`` and SAA's recovery norms other than
    BatchNorms) is a BatchNorm in eval mode with running statistics; checked
    first, a deploy step never stops half way.

    Args:
        module: A block, a stage or the backbone.
        kept: Norms the deploy form keeps (SAEViT's stage norms).
            Defaults to ``()``.
    """
    skip = {id(m) for m in kept}
    skip.update(
        id(m.norm) for m in module.modules()
        if isinstance(m, SparselyAggregatedAttention)
        and not is_batch_norm(m.norm))
    for name, norm in module.named_modules():
        if is_norm(norm) and id(norm) not in skip:
            check_foldable_bn(norm, name)


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
        deploy: Build the deploy form (module docstring); ``norm_cfg`` must
            then be a BatchNorm's, the norm that form folds away. Defaults
            to False.

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
                 act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False) -> None:
        super().__init__()
        check_choice('attn_type', attn_type, ATTN_TYPES)
        check_choice('ffn_type', ffn_type, FFN_TYPES)
        self.dwsconv = DWSConv(
            embed_dims, norm_cfg=norm_cfg, act_cfg=act_cfg,
            deploy=deploy) if use_dwsconv else None
        self.norm1 = nn.Identity() if deploy else build_norm2d(
            norm_cfg, embed_dims)
        if attn_type == 'saa':
            self.attn = SparselyAggregatedAttention(
                embed_dims,
                num_heads,
                sample_ratio=sample_ratio,
                max_delegates=max_delegates,
                norm_cfg=recovery_norm_cfg,
                deploy=deploy)
        else:
            self.attn = MHSA2d(embed_dims, num_heads)
        self.norm2 = nn.Identity() if deploy else build_norm2d(
            norm_cfg, embed_dims)
        if ffn_type.startswith('ciffn'):
            self.ffn = CIFFN(
                embed_dims,
                ffn_ratio,
                kernel_sizes=ffn_kernel_sizes,
                redistribute=ffn_type == 'ciffn',
                norm_cfg=norm_cfg,
                act_cfg=act_cfg,
                deploy=deploy)
        else:  # norm_cfg=None: ConvNorm's deploy form
            self.ffn = ConvFFN(
                embed_dims,
                ffn_ratio,
                norm_cfg=None if deploy else norm_cfg,
                act_cfg=act_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 \
            else nn.Identity()

    def _input_conv(self, part: nn.Module) -> nn.Conv2d:
        """The convolution that reads ``part``'s input."""
        if isinstance(part, (SparselyAggregatedAttention, CIFFN)):
            return part.input_conv
        if isinstance(part, MHSA2d):
            return part.attn.qkv
        return part.expand.conv  # ConvFFN

    @torch.no_grad()
    def fold_pre_norms(self) -> None:
        """Fold the pre-norms into the convolution after them: ``norm2``
        into the FFN's 1x1 expansion; ``norm1`` into SAA's sampler (its
        input is edge-padded, never zero-padded) or, without a sampler,
        into the 1x1 q/k/v projection (average pooling before it keeps an
        affine map affine). Exact: no zero padding meets the folded shift.
        A fold changes the input side of a convolution only, so it gives
        the same weights before or after the part's own deploy step.

        Raises:
            RuntimeError: A pre-norm is not a BatchNorm in eval mode with
                running statistics, which is what folds (nothing is
                changed then).
        """
        pairs = [('norm1', self.norm1, self._input_conv(self.attn)),
                 ('norm2', self.norm2, self._input_conv(self.ffn))]
        pairs = [p for p in pairs if not isinstance(p[1], nn.Identity)]
        for name, norm, _ in pairs:
            check_foldable_bn(norm, name)
        for name, norm, conv in pairs:
            fold_bn_into_next_conv_(norm, conv)
            setattr(self, name, nn.Identity())

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Switch to the deploy form: :meth:`fold_pre_norms`, then each
        part's deploy form (its own ``switch_to_deploy``, or its
        :class:`~.conv_norm.ConvNorm` layers folded), whether or not a
        part was switched on its own before.

        Raises:
            RuntimeError: A norm to fold is not a BatchNorm in eval mode
                with running statistics (nothing is changed then).
        """
        check_deployable(self)
        self.fold_pre_norms()
        for part in (self.dwsconv, self.attn, self.ffn):
            if part is None:
                continue
            if callable(getattr(part, 'switch_to_deploy', None)):
                part.switch_to_deploy()
            else:  # MHSA2d (nothing to fold), ConvFFN
                switch_conv_norms(part)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` (``B, C, H, W``)."""
        if self.dwsconv is not None:
            x = x + self.dwsconv(x)
        if isinstance(self.attn, SparselyAggregatedAttention):
            # may recompute norm1 in backward
            x = x + self.drop_path(self.attn(x, self.norm1))
        else:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        if isinstance(self.ffn, CIFFN):  # may recompute norm2 in backward
            return x + self.drop_path(self.ffn(x, self.norm2))
        return x + self.drop_path(self.ffn(self.norm2(x)))
