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
``num_batches_tracked``) a second time per step. :class:`_BuffersKept`
restores every buffer of the block after the recompute, so ``with_cp``
trains exactly like the plain forward. It is entered once per recompute:
a second backward through a retained graph (``retain_graph=True``)
recomputes the block again. Switching the statistics off during the
recompute instead (``track_running_stats=False``) changes which tensors
BatchNorm saves, and non-reentrant checkpoint refuses that. Under SyncBN the
recompute still synchronises the batch statistics again: its output must
equal the forward's.

Under ``torch.compile`` :func:`_checkpoint_contexts` decides when the
checkpoint runs. While torch traces a checkpoint into its graph it requires
``TorchDispatchMode`` contexts, so it gets the ones torch uses for a
checkpoint without ``context_fn``: the compiled graph updates each buffer
once in its forward and recomputes functional ops only. A checkpoint that
runs eagerly gets :class:`_BuffersKept`, as without ``torch.compile``: one
that dynamo cannot trace (a graph break inside the block), and every one on
torch 2.1, whose dynamo does not trace a checkpoint with a ``context_fn``.
"""
from contextlib import nullcontext
from functools import partial
from typing import ContextManager, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .block import SAEViTBlock
from .norm import is_compiling
from .stem import Downsample


__all__ = ['SAEViTStage']


class _BuffersKept:
    """Put every buffer of ``module`` back to its value on entry, on exit.

    Used as the recompute context of a checkpointed block: the recompute
    then leaves the BatchNorm running statistics as the forward left them.
    Unlike a ``contextlib.contextmanager``, one instance can be entered
    again (checkpoint enters its recompute context once per backward).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._saved: List[List[Tuple[Tensor, Tensor]]] = []

    def __enter__(self) -> None:
        self._saved.append([(buffer, buffer.clone())
                            for buffer in self.module.buffers()])

    def __exit__(self, *exc_info) -> bool:
        with torch.no_grad():
            for buffer, value in self._saved.pop():
                buffer.copy_(value)
        return False  # exceptions propagate (and early stop works)


def _recompute_every_op(*args, **kwargs) -> bool:
    """Selective-checkpoint policy that saves no op output (``False``)."""
    return False


def _checkpoint_contexts(
        module: nn.Module) -> Tuple[ContextManager, ContextManager]:
    """``context_fn`` of :func:`torch.utils.checkpoint.checkpoint`: nothing
    around the forward, :class:`_BuffersKept` around the recompute; while
    ``torch.compile`` traces the checkpoint, torch's own contexts for a
    checkpoint without ``context_fn`` (recompute every op)."""
    if is_compiling():
        return torch.utils.checkpoint.create_selective_checkpoint_contexts(
            _recompute_every_op)
    return nullcontext(), _BuffersKept(module)


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
        deploy: Build the deploy form of the downsampling and every block
            (:meth:`switch_to_deploy`). Defaults to False.
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
                 deploy: bool = False,
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
            in_channels, embed_dims, norm_cfg=norm_cfg,
            deploy=deploy) if downsample else None
        self.blocks = nn.Sequential(*(SAEViTBlock(
            embed_dims,
            num_heads,
            sample_ratio=sample_ratio,
            drop_path=rate,
            norm_cfg=norm_cfg,
            deploy=deploy,
            **block_kwargs) for rate in drop_paths))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Switch the downsampling and every block to the deploy form
        (:meth:`~.block.SAEViTBlock.switch_to_deploy`)."""
        if self.downsample is not None:
            self.downsample.switch_to_deploy()
        for block in self.blocks:
            block.switch_to_deploy()

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
