"""SAEViTStage: optional stride-2 downsampling, then a run of blocks.

Our design (the paper states a four-stage hierarchy): every stage but the
first starts with :class:`~.stem.Downsample`; the blocks of a stage share
width, heads and sample ratio; stochastic depth grows linearly over all
blocks of the network (the caller passes each block's rate). With
``with_cp`` each block is checkpointed with ``use_reentrant=False`` while
training, which also works when the stage's input needs no gradient (after a
frozen stage).

NOTE: the recompute in backward runs the block's BatchNorm layers again in
training mode, which would update their running statistics (and
``num_batches_tracked``) a second time per step. :func:`_buffers_kept`
restores every buffer of the block after the recompute, so ``with_cp``
trains exactly like the plain forward. Switching the statistics off during
the recompute instead (``track_running_stats=False``) changes which tensors
BatchNorm saves, and non-reentrant checkpoint refuses that. Under SyncBN the
recompute still synchronises the batch statistics again: its output must
equal the forward's.
"""
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import ContextManager, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .block import SAEViTBlock
from .stem import Downsample

__all__ = ['SAEViTStage']


@contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Put every buffer of ``module`` back to its value on entry, on exit.

    Used as the recompute context of a checkpointed block: the recompute
    then leaves the BatchNorm running statistics as the forward left them.
    """
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _checkpoint_contexts(
        module: nn.Module) -> Tuple[ContextManager, ContextManager]:
    """``context_fn`` of :func:`torch.utils.checkpoint.checkpoint`: nothing
    around the forward, :func:`_buffers_kept` around the recompute."""
    return nullcontext(), _buffers_kept(module)


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
        with_cp: Checkpoint each block while training; the recompute does
            not update BatchNorm statistics again. Defaults to False.
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
                 norm_cfg: Dict = dict(type='BN'),
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
                x = checkpoint(
                    block,
                    x,
                    use_reentrant=False,
                    context_fn=partial(_checkpoint_contexts, block))
            return x
        return self.blocks(x)
