"""RandomStateHook: random-number states in checkpoints, exact ``--resume``.

A toy epoch-based Runner whose training draws from python's ``random``,
numpy and torch (dropout) and validates after every epoch is interrupted in
the middle of an epoch and resumed from its last epoch checkpoint: with the
hook its final weights equal an uninterrupted run's, without it they differ.
The stored states are plain containers and tensors, so the checkpoint loads
with ``torch.load(weights_only=True)`` and through saevit_mm's loader.

Under DDP (``tools/dist_train.sh``, two gloo processes, different seeds per
rank) the checkpoint holds every rank's states, and a resumed run's ranks
draw what the uninterrupted run's ranks drew (``random_draws_hook.py`` logs
each rank's draws).
"""
import itertools
import json
import logging
import os
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import numpy as np
import pytest
import torch
import torch.nn as nn
from e2e_utils import (DEMO_CONFIGS, REPO, TINY_OPTIONS, demo_data_root,
                       run_dist_train)
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


def train_killed_and_resumed(tmp_path, with_hook, rewrite=None):
    """Weights of an uninterrupted run and of one killed in epoch 2, then
    resumed from epoch_1.pth (first changed by ``rewrite(checkpoint)``, if
    given)."""
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
    if rewrite is not None:
        path = killed_dir / 'epoch_1.pth'
        checkpoint = safe_load_checkpoint(str(path))
        rewrite(checkpoint)
        torch.save(checkpoint, path)
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


def single_dict(checkpoint):
    """A checkpoint that holds one dict of states instead of the list."""
    stored = checkpoint[RANDOM_STATE_KEY]
    assert isinstance(stored, list) and len(stored) == 1, stored
    checkpoint[RANDOM_STATE_KEY] = stored[0]


def test_resume_of_a_single_dict_of_states_matches_uninterrupted(tmp_path):
    """A checkpoint holding one dict (a single process' states, not in a
    list) restores as the states of the only rank."""
    expected, actual = train_killed_and_resumed(
        tmp_path, with_hook=True, rewrite=single_dict)
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
    checkpoint = {}
    RandomStateHook().before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, path)
    first = draws()
    loaded = load(str(path))[RANDOM_STATE_KEY]
    assert isinstance(loaded, list) and len(loaded) == 1
    draws()
    set_random_state(loaded[0])
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
            stored = checkpoint[RANDOM_STATE_KEY]
            assert isinstance(stored, list) and len(stored) == 1, stored
            saved.append(stored[0])

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
        SimpleNamespace(_resume=False),
        {RANDOM_STATE_KEY: [get_random_state()]})
    assert hook._epoch_states is None


def load_and_log(hook, checkpoint, runner=None) -> List[str]:
    """``hook.after_load_checkpoint`` of a resume; the messages logged."""
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        hook.after_load_checkpoint(
            runner or SimpleNamespace(_resume=True), checkpoint)
    finally:
        logger.removeHandler(handler)
    return messages


def test_resume_of_a_checkpoint_without_state_warns():
    hook = RandomStateHook()
    messages = load_and_log(hook, {})
    assert hook._epoch_states is None
    assert any(f'no {RANDOM_STATE_KEY!r}' in m for m in messages), messages


def test_resume_restores_this_ranks_entry_at_the_epoch_start():
    """One process: entry 0; a single dict is read as that entry."""
    for stored in ([get_random_state()], get_random_state()):
        state = stored[0] if isinstance(stored, list) else stored
        set_random_state(state)
        first = draws()
        hook = RandomStateHook()
        assert load_and_log(hook, {RANDOM_STATE_KEY: stored}) == []
        hook.before_train_epoch(None)
        assert draws() == first


def test_resume_with_another_world_size_warns_and_restores_nothing():
    """States of two ranks, one process: nothing restored, a warning says
    how many processes wrote them and what an exact resume needs."""
    stored = [get_random_state(), get_random_state()]
    draws()
    hook = RandomStateHook()
    messages = load_and_log(hook, {RANDOM_STATE_KEY: stored})
    assert hook._epoch_states is None
    assert any('random states of 2 process(es), this run has 1' in m
               and 'world size the checkpoint was written with (2)' in m
               for m in messages), messages
    before = get_random_state()
    hook.before_train_epoch(None)  # records, restores nothing
    after = get_random_state()
    assert same_state(after, before)
    assert not same_state(after, stored[0])


def test_resume_of_something_else_than_states_says_what_is_expected():
    with pytest.raises(TypeError, match='expected a list with one dict'):
        load_and_log(RandomStateHook(), {RANDOM_STATE_KEY: 'states'})


@pytest.mark.parametrize('sampler_seed,diff_rank_seed,warns',
                         [(0, False, False), (7, False, True),
                          (7, True, False)])
def test_resume_warns_when_the_sampler_has_another_seed(
        sampler_seed, diff_rank_seed, warns):
    """randomness.seed=None: the resumed run's sampler got a new seed. With
    diff_rank_seed mmengine seeds the sampler from a draw, not with seed."""
    runner = SimpleNamespace(
        _resume=True,
        _randomness_cfg=dict(seed=0, diff_rank_seed=diff_rank_seed),
        train_loop=SimpleNamespace(
            dataloader=SimpleNamespace(
                sampler=SimpleNamespace(seed=sampler_seed))))
    messages = load_and_log(
        RandomStateHook(),
        dict(meta=dict(seed=0), **{RANDOM_STATE_KEY: [get_random_state()]}),
        runner)
    assert any('randomness.seed=0' in m for m in messages) == warns, messages


@pytest.mark.parametrize('type_name',
                         ['RandomStateHook', 'saevit_mm.RandomStateHook'])
def test_builds_under_the_mmpretrain_scope(type_name):
    registry = pytest.importorskip('mmpretrain.registry')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        hook = registry.HOOKS.build(dict(type=type_name))
    assert type(hook) is RandomStateHook


# --------------------------------- DDP: every rank resumes its own states

#: Two processes, different seeds per rank (with one seed for all, every
#: rank's states would be the same and restoring rank 0's everywhere would
#: not show), drop path on (also the config's). 16 images in batches of 2 on
#: 2 ranks: 4 iterations an epoch (the demo's quarter-epoch warm-up needs 4),
#: 2 epochs; epoch_1.pth is kept for the resume.
DDP_RANKS = 2
DDP_ITERS_PER_EPOCH = 4
DDP_OPTIONS = [
    *TINY_OPTIONS['cls'],
    'train_dataloader.dataset.indices=16',
    'randomness.seed=0',
    'randomness.diff_rank_seed=True',
    'randomness.deterministic=True',
    'model.backbone.drop_path_rate=0.1',
    'default_hooks.checkpoint.interval=1',
    'default_hooks.checkpoint.max_keep_ckpts=2',
]


def draws_config(directory: Path) -> Path:
    """The classification demo with :mod:`random_draws_hook` after its
    hooks (EMAHook, RandomStateHook)."""
    config = directory / 'saevit-t_demo_random-draws.py'
    config.write_text(
        f'_base_ = {str(DEMO_CONFIGS["cls"])!r}\n'
        "custom_imports = dict(imports=['saevit_mm', 'random_draws_hook'], "
        'allow_failed_imports=False)\n'
        "custom_hooks = [*_base_.custom_hooks, dict(type='RandomDrawsHook')]"
        '\n')
    return config


def rank_draws(work_dir: Path, rank: int, epoch: int) -> List[Dict]:
    """What rank ``rank`` logged in ``epoch`` (counted from 0)."""
    path = work_dir / f'random_draws_rank{rank}.jsonl'
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r['epoch'] == epoch]


@pytest.mark.slow
@pytest.mark.cls
def test_ddp_resume_each_rank_draws_what_it_drew_uninterrupted(
        tmp_path_factory, tmp_path):
    """tools/dist_train.sh, 2 gloo processes, diff_rank_seed: epoch 2 of a
    run resumed from epoch_1.pth draws, on every rank, the numbers the
    uninterrupted run drew there, and ends with its weights."""
    pytest.importorskip('mmpretrain.models')
    data_root = demo_data_root(tmp_path_factory)
    config = draws_config(tmp_path)
    # random_draws_hook for the launched processes (after the repository)
    env = dict(
        PYTHONPATH=os.pathsep.join(
            p for p in (str(REPO), str(REPO / 'tests'),
                        os.environ.get('PYTHONPATH')) if p))

    reference = tmp_path / 'reference'
    run_dist_train(
        config,
        DDP_RANKS,
        reference,
        DDP_OPTIONS,
        data_root=data_root,
        env_extra=env)
    resumed = tmp_path / 'resumed'
    proc = run_dist_train(
        config,
        DDP_RANKS,
        resumed,
        DDP_OPTIONS,
        args=['--resume', str(reference / 'epoch_1.pth')],
        data_root=data_root,
        env_extra=env)
    assert f'resumed epoch: 1, iter: {DDP_ITERS_PER_EPOCH}' in proc.stdout

    expected = [rank_draws(reference, r, 1) for r in range(DDP_RANKS)]
    assert [len(e) for e in expected] == \
        [1 + DDP_ITERS_PER_EPOCH] * DDP_RANKS, expected
    # the ranks draw different numbers: a rank given another rank's states
    # would show
    assert expected[0][0]['draws'] != expected[1][0]['draws']
    for rank in range(DDP_RANKS):
        actual = rank_draws(resumed, rank, 1)
        assert [(r['where'], r['batch_idx'], r['draws']) for r in actual] \
            == [(r['where'], r['batch_idx'], r['draws'])
                for r in expected[rank]], \
            f'rank {rank} draws other random numbers in the resumed epoch'

    checkpoint = safe_load_checkpoint(str(reference / 'epoch_1.pth'))
    stored = checkpoint[RANDOM_STATE_KEY]
    assert isinstance(stored, list) and len(stored) == DDP_RANKS
    final = [
        safe_load_checkpoint(str(d / 'epoch_2.pth'))
        for d in (reference, resumed)
    ]
    for part in ('state_dict', 'ema_state_dict'):
        different = [
            key for key, value in final[0][part].items()
            if not torch.equal(final[1][part][key], value)
        ]
        assert not different, \
            f'{part}: {len(different)} tensors differ from the ' \
            f'uninterrupted run, e.g. {different[:3]}'
