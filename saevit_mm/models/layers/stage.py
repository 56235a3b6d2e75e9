"""SAEViTStage: optional stride-2 downsampling, then a run of blocks.

Our design (the paper states a four-stage hierarchy): every stage but the
first starts with :class:`~.stem.Downsample`; the blocks of a stage share
width, heads and sample ratio; stochastic depth grows linearly over all
blocks of the network (the caller passes each block's rate). With
``with_cp`` each block is checkpointed with ``use_reentrant=False`` while
training, which also works when the stage's input needs no gradient (after a
frozen stage).
"""
from typing import Dict, Optional, Sequence

from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .block import SAEViTBlock
from .stem import Downsample

__all__ = ['SAEViTStage']


class SAEViTStage(nn.Module):
    """One stage: ``downsample`` (or ``None``) and ``blocks``.

    Args:
        in_channels: Channels of the input (of the previous stage).
        embed_dims: Channels of this stage.
        depth: Number of blocks.
        num_heads: Attention heads of every block.
        sample_ratio: SAA sample ratio of every block.
        downsample: Start with a stride-2 :class:`~.stem.Downsample`; must be
            True when ``in_channels != embed_dims``.
        drop_paths: Stochastic depth rate of each block (``depth`` entries);
            ``None`` means 0 everywhere. Defaults to None.
        with_cp: Checkpoint each block while training. Defaults to False.
        norm_cfg: Norm layer config. Defaults to ``dict(type='BN')``.
        **block_kwargs: Other :class:`~.block.SAEViTBlock` arguments
            (``ffn_ratio``, ``ffn_kernel_sizes``, ``attn_type``, ``ffn_type``,
            ``use_dwsconv``, ``act_cfg``).

    Example:
        >>> import torch
        >>> stage = SAEViTStage(16, 32, depth=2, num_heads=2, sample_ratio=2,
        ...                     downsample=True, ffn_ratio=2)
        >>> print(stage(torch.rand(1, 16, 25, 33)).shape)
        torch.Size([1, 32, 13, 17])
    """

    def __init__(self,
                 in_channels: int,
                 embed_dims: int,
                 depth: int,
                 num_heads: int,
                 sample_ratio: int,
                 downsample: bool,
                 drop_paths: Optional[Sequence[float]] = None,
                 with_cp: bool = False,
                 norm_cfg: Optional[Dict] = None,
                 **block_kwargs) -> None:
        super().__init__()
        drop_paths = (0., ) * depth if drop_paths is None else drop_paths
        if len(drop_paths) != depth:
            raise ValueError(f'drop_paths has {len(drop_paths)} entries, '
                             f'one per block ({depth}) is needed.')
        if not downsample and in_channels != embed_dims:
            raise ValueError(
                f'A stage without downsample keeps its width, but '
                f'in_channels={in_channels} != embed_dims={embed_dims}.')
        self.with_cp = with_cp
        self.downsample = Downsample(
            in_channels, embed_dims, norm_cfg=norm_cfg) if downsample \
            else None
        self.blocks = nn.Sequential(*(SAEViTBlock(
            embed_dims,
            num_heads,
            sample_ratio=sample_ratio,
            drop_path=rate,
            norm_cfg=norm_cfg,
            **block_kwargs) for rate in drop_paths))

    def forward(self, x: Tensor) -> Tensor:
        """Downsample (if any) and run the blocks on ``x`` (NCHW)."""
        if self.downsample is not None:
            x = self.downsample(x)
        if self.with_cp and self.training:
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)
