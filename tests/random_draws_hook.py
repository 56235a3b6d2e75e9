"""A test-only hook that logs what each rank's generators would draw next.

Not a test module: tests/test_random_state_hook.py adds it to a training run
(``custom_imports`` with ``tests/`` on ``PYTHONPATH``) to compare the random
numbers of every rank between an uninterrupted and a resumed run.

At the start of each training epoch (after ``RandomStateHook`` restored the
states) and before each training iteration (after the batch's augmentations,
before the forward and its drop path), it takes one number from python's
``random``, numpy's global generator and torch's CPU generator and puts the
generators back, so the training draws exactly what it would without the
hook. Each rank appends the numbers as JSON lines to
``<work_dir>/random_draws_rank<rank>.jsonl``.
"""
import json
import os.path as osp
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

__all__ = ['RandomDrawsHook', 'draws_file', 'peek_draws']


def draws_file(work_dir: str, rank: int) -> str:
    """Where rank ``rank`` of a run in ``work_dir`` logs its draws."""
    return osp.join(work_dir, f'random_draws_rank{rank}.jsonl')


def peek_draws() -> list:
    """The next number of python's, numpy's and torch's generators, which
    are left as they were."""
    python, numpy, cpu = (random.getstate(), np.random.get_state(),
                          torch.get_rng_state())
    values = [random.random(), float(np.random.rand()), float(torch.rand(()))]
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(cpu)
    return values


@HOOKS.register_module(force=True)
class RandomDrawsHook(Hook):
    """Log each rank's next random numbers at every epoch start and iteration
    (see the module docstring)."""
    # after RandomStateHook (VERY_HIGH) restores the states of the epoch
    priority = 'HIGH'

    def _log(self, runner, where: str, batch_idx=None) -> None:
        record = dict(
            epoch=runner.epoch,
            iter=runner.iter,
            batch_idx=batch_idx,
            where=where,
            draws=peek_draws())
        with open(draws_file(runner.work_dir, get_rank()), 'a') as f:
            f.write(json.dumps(record) + '\n')

    def before_train_epoch(self, runner) -> None:
        self._log(runner, 'epoch_start')

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._log(runner, 'iter_start', batch_idx)
