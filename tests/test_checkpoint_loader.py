"""Safe checkpoint loading on torch >= 2.6 with mmengine 0.10.7.

A tiny mmengine Runner trains on CPU, is interrupted, resumes from its own
checkpoint and must end where an uninterrupted run ends; a pure-tensor file
loads through ``init_cfg=Pretrained``; a file holding an arbitrary pickled
object is refused with a message naming it.
"""
import collections
import os
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint

import saevit_mm  # noqa: F401  (activates the safe loader)
from saevit_mm.engine.checkpoint_loader import safe_load_checkpoint

MAX_ITERS = 9


class ToyModel(BaseModel):
    """A regression model small enough to train in a second."""

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                 nn.Linear(8, 2))

    def forward(self, x, y=None, mode='tensor'):
        out = self.net(x)
        if mode == 'loss':
            return dict(loss=((out - y)**2).mean())
        if mode == 'predict':
            return [dict(pred=o, gt=t) for o, t in zip(out, y)]
        return out


class MSEMetric(BaseMetric):
    """Mean squared error of the toy model's predictions."""

    def process(self, data_batch, data_samples):
        self.results.extend(
            float(((s['pred'] - s['gt'])**2).mean()) for s in data_samples)

    def compute_metrics(self, results):
        return dict(mse=sum(results) / len(results))


class Interrupt(Exception):
    """Stands for a killed job."""


class InterruptHook(Hook):
    """Raises after a given iteration (after the checkpoint hook ran)."""
    priority = 'LOWEST'

    def __init__(self, after_iter: int):
        self.after_iter = after_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.after_iter:
            raise Interrupt(f'interrupted after iteration {self.after_iter}')


def toy_dataset(n: int = 32):
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 4, generator=gen)
    ys = xs[:, :2] * 2 - xs[:, 2:]
    return [dict(x=x, y=y) for x, y in zip(xs, ys)]


def build_runner(work_dir, custom_hooks=(), resume=False, load_from=None):
    torch.manual_seed(0)  # the same initial weights for every run
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'toy_{len(os.listdir(work_dir))}',
        train_dataloader=dict(
            dataset=toy_dataset(),
            batch_size=4,
            sampler=dict(type='InfiniteSampler', shuffle=True, seed=0),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=3),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=3,
                 end=MAX_ITERS)
        ],
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3,
                            by_epoch=False)),
        custom_hooks=[dict(type='EMAHook'), *custom_hooks],
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine')


def test_runner_resumes_after_interrupt_and_matches_uninterrupted(tmp_path):
    reference_dir = tmp_path / 'reference'
    run_dir = tmp_path / 'interrupted'
    reference_dir.mkdir()
    run_dir.mkdir()
    reference = build_runner(reference_dir)
    reference.train()

    interrupted = build_runner(run_dir, [InterruptHook(after_iter=5)])
    with pytest.raises(Interrupt):
        interrupted.train()
    assert (run_dir / 'iter_3.pth').exists()
    assert not (run_dir / 'iter_6.pth').exists()

    resumed = build_runner(run_dir, resume=True)
    resumed.train()
    assert resumed.iter == MAX_ITERS == reference.iter
    ours = resumed.model.state_dict()
    theirs = reference.model.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)


def test_runner_checkpoint_loads_safely_and_test_loop_uses_it(tmp_path):
    runner = build_runner(tmp_path)
    runner.train()
    ckpt = safe_load_checkpoint(str(tmp_path / f'iter_{MAX_ITERS}.pth'))
    assert ckpt['meta']['iter'] == MAX_ITERS
    assert 'train/loss' in ckpt['message_hub']['log_scalars']
    # the path tools/test.py CONFIG CKPT takes: load_from + Runner.test
    tester = Runner(
        model=ToyModel(),
        work_dir=str(tmp_path / 'test'),
        test_dataloader=dict(
            dataset=toy_dataset(8),
            batch_size=4,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        test_cfg=dict(),
        test_evaluator=[MSEMetric()],
        load_from=str(tmp_path / f'iter_{MAX_ITERS}.pth'),
        default_scope='mmengine')
    metrics = tester.test()
    assert torch.isfinite(torch.tensor(metrics['mse']))
    # the checkpoint's state_dict holds the EMA weights (EMAHook swaps them)
    for name, ours in tester.model.state_dict().items():
        torch.testing.assert_close(ours, ckpt['state_dict'][name], msg=name)


def test_tensor_only_file_loads_through_pretrained_init(tmp_path):
    source = ToyModel()
    path = tmp_path / 'pretrained.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    # really tensors only: torch's own strict loader accepts it
    torch.load(path, weights_only=True)
    target = ToyModel(
        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    target.init_weights()
    ours, theirs = target.state_dict(), source.state_dict()
    assert list(ours) == list(theirs)
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=name)


class Payload:
    """An arbitrary object: unpickling it would run os.getcwd."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_arbitrary_pickled_object_is_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'extra': Payload()}, path)
    with pytest.raises(pickle.UnpicklingError,
                       match=r"refused to unpickle.*posix\.getcwd"):
        safe_load_checkpoint(str(path))
    # and the Runner's path (load_checkpoint) goes through the same refusal
    with pytest.raises(pickle.UnpicklingError, match='refused to unpickle'):
        load_checkpoint(ToyModel(), str(path))


def test_unrestricted_getattr_is_refused(tmp_path):
    """getattr is allowed for HistoryBuffer's methods only."""

    class GetattrPayload:

        def __init__(self, owner, name):
            self.owner, self.name = owner, name

        def __reduce__(self):
            return (getattr, (self.owner, self.name))

    for owner, name in [(HistoryBuffer, '__init__'),
                        (collections.OrderedDict, 'fromkeys')]:
        path = tmp_path / f'getattr_{name}.pth'
        torch.save({'x': GetattrPayload(owner, name)}, path)
        with pytest.raises(pickle.UnpicklingError,
                           match=f'Refused getattr.*{name}'):
            safe_load_checkpoint(str(path))
    # the methods a runner checkpoint names are allowed
    path = tmp_path / 'getattr_mean.pth'
    torch.save({'x': GetattrPayload(HistoryBuffer, 'mean')}, path)
    assert safe_load_checkpoint(str(path))['x'] is HistoryBuffer.mean


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nothere.pth'):
        safe_load_checkpoint(str(tmp_path / 'nothere.pth'))
