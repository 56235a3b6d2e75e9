"""RandomStateHook: random-number states in checkpoints, exact ``--resume``.

A toy epoch-based Runner whose training draws from python's ``random``,
numpy and torch (dropout) and validates after every epoch is interrupted in
the middle of an epoch and resumed from its last epoch checkpoint: with the
hook its final weights equal an uninterrupted run's, without it they differ.
The stored states are plain containers and tensors, so the checkpoint loads
with ``torch.load(weights_only=True)`` and through saevit_mm's loader.
"""
import itertools
import logging
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch.utils.data import Dataset

import saevit_mm  # noqa: F401  (registers the hook and the loader)
from saevit_mm.engine.checkpoint_loader import safe_load_checkpoint
from saevit_mm.engine.hooks import (RANDOM_STATE_KEY, RandomStateHook,
                                    get_random_state, set_random_state)

EPOCHS = 3
ITERS_PER_EPOCH = 4
RUNS = itertools.count()


def draws():
    """One number from each generator the hook restores."""
    return (random.random(), float(np.random.rand()), float(torch.rand(
        ())), float(np.random.randn()))


class NoisyDataset(Dataset):
    """Augmentation stand-in: every item draws from python and numpy."""

    def __init__(self, n: int = 16):
        gen = torch.Generator().manual_seed(0)
        self.xs = torch.randn(n, 4, generator=gen)

    def __len__(self):
        return len(self.xs)

    def __getitem__(self, i):
        x = self.xs[i] * random.uniform(0.5, 1.5)
        x = x + torch.from_numpy(np.random.randn(4).astype(np.float32))
        return dict(x=x, y=x[:2] * 2 - x[2:])


class DropoutModel(BaseModel):
    """Drop path stand-in: dropout draws from torch's generator."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))

    def forward(self, x, y=None, mode='tensor'):
        out = self.net(x)
        if mode == 'loss':
            return dict(loss=((out - y)**2).mean())
        return [dict(err=float(((out - y)**2).mean()))]


class ErrMetric(BaseMetric):

    def process(self, data_batch, data_samples):
        self.results.extend(s['err'] for s in data_samples)

    def compute_metrics(self, results):
        return dict(err=sum(results) / len(results))


class Killed(Exception):
    """Stands for kill -9."""


class KillHook(Hook):
    """Raises in the middle of an epoch (after its iteration ``at``)."""
    priority = 'LOWEST'

    def __init__(self, epoch: int, at: int):
        self.epoch, self.at = epoch, at

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        if runner.epoch == self.epoch and batch_idx == self.at:
            raise Killed


def build_runner(work_dir,
                 with_hook=True,
                 extra_hooks=(),
                 resume=False,
                 load_from=None,
                 seed=0):
    hooks = [dict(type='RandomStateHook')] if with_hook else []
    loader = dict(
        dataset=NoisyDataset(),
        batch_size=4,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=True),
        collate_fn=dict(type='default_collate'))
    torch.manual_seed(0)  # the same initial weights for every run
    return Runner(
        model=DropoutModel(),
        work_dir=str(work_dir),
        experiment_name=f'random_state_toy_{next(RUNS)}',  # own MessageHub
        train_dataloader=loader,
        val_dataloader=dict(
            loader, sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=[ErrMetric()],
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=EPOCHS, val_interval=1),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=1, max_keep_ckpts=1)),
        custom_hooks=[*hooks, *extra_hooks],
        randomness=dict(seed=seed),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine')


def train_killed_and_resumed(tmp_path, with_hook):
    """Weights of an uninterrupted run and of one killed in epoch 2, then
    resumed from epoch_1.pth."""
    reference_dir, killed_dir = tmp_path / 'reference', tmp_path / 'killed'
    reference_dir.mkdir()
    killed_dir.mkdir()
    reference = build_runner(reference_dir, with_hook)
    reference.train()

    killed = build_runner(
        killed_dir, with_hook, extra_hooks=[KillHook(epoch=1, at=1)])
    with pytest.raises(Killed):
        killed.train()
    assert (killed_dir / 'epoch_1.pth').exists()
    assert not (killed_dir / 'epoch_2.pth').exists()
    resumed = build_runner(killed_dir, with_hook, resume=True)
    resumed.train()
    assert resumed.epoch == reference.epoch == EPOCHS
    assert resumed.iter == reference.iter == EPOCHS * ITERS_PER_EPOCH
    return reference.model.state_dict(), resumed.model.state_dict()


def test_resume_in_the_middle_of_an_epoch_matches_uninterrupted(tmp_path):
    expected, actual = train_killed_and_resumed(tmp_path, with_hook=True)
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name


def test_without_the_hook_the_resumed_weights_differ(tmp_path):
    """The test above can fail: the toy draws enough random numbers."""
    expected, actual = train_killed_and_resumed(tmp_path, with_hook=False)
    assert actual.keys() == expected.keys()
    assert not all(torch.equal(actual[k], v) for k, v in expected.items())


def test_state_round_trip_repeats_the_draws():
    state = get_random_state()
    first = draws()
    draws()
    set_random_state(state)
    assert draws() == first


@pytest.mark.parametrize('load', [
    pytest.param(
        lambda f: torch.load(f, weights_only=True), id='weights_only'),
    pytest.param(safe_load_checkpoint, id='saevit_mm_loader'),
])
def test_stored_state_loads_weights_only_and_restores(tmp_path, load):
    """Plain ints, floats, strings, lists and uint8 tensors only: torch's
    strict loader accepts the state, on any torch version."""
    path = tmp_path / 'ckpt.pth'
    torch.save({RANDOM_STATE_KEY: get_random_state()}, path)
    first = draws()
    loaded = load(str(path))[RANDOM_STATE_KEY]
    draws()
    set_random_state(loaded)
    assert draws() == first


def same_state(a, b) -> bool:
    """Whether two stored states give the same next draws."""
    set_random_state(a)
    first = draws()
    set_random_state(b)
    return draws() == first


def test_each_epoch_starts_where_the_last_one_ended(tmp_path):
    """epoch_k.pth holds the states epoch k+1 starts from; validation after
    epoch k (its DataLoader iterator draws a base seed from torch) does not
    shift them."""
    saved, before_restore, starts = [], [], []

    class BeforeRestore(Hook):
        priority = 'HIGHEST'  # before RandomStateHook (VERY_HIGH)

        def before_train_epoch(self, runner):
            before_restore.append(get_random_state())

    class AfterRestore(Hook):
        priority = 'LOW'

        def before_train_epoch(self, runner):
            starts.append(get_random_state())

        def before_save_checkpoint(self, runner, checkpoint):
            saved.append(checkpoint[RANDOM_STATE_KEY])

    build_runner(
        tmp_path, extra_hooks=[BeforeRestore(),
                               AfterRestore()]).train()
    assert len(saved) == len(starts) == EPOCHS
    for epoch in range(1, EPOCHS):
        assert same_state(saved[epoch - 1], starts[epoch]), epoch
        assert not same_state(before_restore[epoch], starts[epoch]), epoch


def test_load_from_without_resume_keeps_the_configs_randomness():
    hook = RandomStateHook()
    hook.after_load_checkpoint(
        SimpleNamespace(_resume=False), {RANDOM_STATE_KEY: get_random_state()})
    assert hook._epoch_state is None


def test_resume_of_a_checkpoint_without_state_warns():
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        hook = RandomStateHook()
        hook.after_load_checkpoint(SimpleNamespace(_resume=True), {})
    finally:
        logger.removeHandler(handler)
    assert hook._epoch_state is None
    assert any(f'no {RANDOM_STATE_KEY!r}' in m for m in messages), messages


@pytest.mark.parametrize('sampler_seed,warns', [(0, False), (7, True)])
def test_resume_warns_when_the_sampler_has_another_seed(sampler_seed, warns):
    """randomness.seed=None: the resumed run's sampler got a new seed."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    runner = SimpleNamespace(
        _resume=True,
        train_loop=SimpleNamespace(
            dataloader=SimpleNamespace(
                sampler=SimpleNamespace(seed=sampler_seed))))
    try:
        RandomStateHook().after_load_checkpoint(
            runner,
            dict(meta=dict(seed=0), **{RANDOM_STATE_KEY: get_random_state()}))
    finally:
        logger.removeHandler(handler)
    assert any('randomness.seed=0' in m for m in messages) == warns, messages


@pytest.mark.parametrize('type_name',
                         ['RandomStateHook', 'saevit_mm.RandomStateHook'])
def test_builds_under_the_mmpretrain_scope(type_name):
    registry = pytest.importorskip('mmpretrain.registry')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook = registry.HOOKS.build(dict(type=type_name))
    assert type(hook) is RandomStateHook
