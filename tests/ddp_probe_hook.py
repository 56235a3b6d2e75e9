"""A test-only hook that records what each rank trained, for the DDP tests.

Not a test module: tests/test_dist.py adds it to training runs
(``custom_imports`` with ``tests/`` on ``PYTHONPATH``) to compare the
weights of the two ranks of a ``tools/dist_train.sh`` run with each other
and with one process trained on the concatenated batches.

At the start of training (after the Runner initialised the weights and DDP
wrapped the model) and at its end, every rank saves the state dict of the
model inside the wrapper to ``<work_dir>/ddp_probe/<stage>_rank<rank>.pth``
(``stage`` is ``'before'`` or ``'after'``), with the iteration count, the
names of the trainable parameters and the image paths of every batch it
has trained on, in order.

``allreduce=False`` makes the mutant the tests must catch: a DDP
communication hook that returns each rank's own gradient bucket instead of
averaging it over the ranks, so every rank steps on its own gradients. It
is read by this hook only; nothing in ``saevit_mm`` knows about it.
"""
import os
import os.path as osp
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch.nn.parallel import DistributedDataParallel

__all__ = ['DDPProbeHook', 'probe_file', 'load_probe', 'local_gradients']

#: Printed by every rank whose gradient all-reduce the hook disabled.
MUTANT_MESSAGE = 'DDPProbeHook: gradient all-reduce disabled'


def probe_file(work_dir: str, stage: str, rank: int) -> str:
    """Where rank ``rank`` of a run in ``work_dir`` saves its ``stage``
    (``'before'`` or ``'after'`` training)."""
    return osp.join(work_dir, 'ddp_probe', f'{stage}_rank{rank}.pth')


def load_probe(work_dir: str, stage: str, rank: int) -> Dict[str, Any]:
    """What :class:`DDPProbeHook` saved: ``state_dict``, ``iter``,
    ``parameters`` (names of the trainable ones) and ``batches`` (a list of
    image-path lists, one per iteration)."""
    return torch.load(
        probe_file(str(work_dir), stage, rank),
        map_location='cpu',
        weights_only=True)


def local_gradients(
        state: Optional[object],
        bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook that communicates nothing: each rank keeps
    the gradients of its own batch (DDP's default hook divides them by the
    world size and all-reduces them). DDP checks the annotations, so they
    are the real types, not strings."""
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(bucket.buffer())
    return future


@HOOKS.register_module(force=True)
class DDPProbeHook(Hook):
    """Save each rank's weights before and after training (see the module
    docstring).

    Args:
        allreduce: Keep DDP's gradient all-reduce. False registers
            :func:`local_gradients` as the communication hook (the mutant);
            it needs a DDP-wrapped model. Defaults to True.
    """
    # after every other hook has changed the weights
    priority = 'LOWEST'

    def __init__(self, allreduce: bool = True) -> None:
        self.allreduce = allreduce
        self.batches: List[List[str]] = []

    def _save(self, runner, stage: str) -> None:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        path = probe_file(runner.work_dir, stage, get_rank())
        os.makedirs(osp.dirname(path), exist_ok=True)
        torch.save(
            dict(
                iter=runner.iter,
                batches=self.batches,
                parameters=[
                    name for name, param in model.named_parameters()
                    if param.requires_grad
                ],
                state_dict={
                    name: value.detach().clone()
                    for name, value in model.state_dict().items()
                }), path)

    def before_train(self, runner) -> None:
        if not self.allreduce:
            if not isinstance(runner.model, DistributedDataParallel):
                raise RuntimeError(
                    'DDPProbeHook(allreduce=False) needs a model wrapped in '
                    f'DistributedDataParallel, got {type(runner.model)}.')
            runner.model.register_comm_hook(None, local_gradients)
            # print: the Runner's logger shows rank 0's messages only
            print(f'{MUTANT_MESSAGE} on rank {get_rank()}', flush=True)
        self._save(runner, 'before')

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        samples = (data_batch or {}).get('data_samples') or []
        self.batches.append([s.metainfo.get('img_path') for s in samples])

    def after_train(self, runner) -> None:
        self._save(runner, 'after')
