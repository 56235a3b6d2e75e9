"""A toy mmengine Runner that trains in a second: the checkpoints it writes
hold what a real runner checkpoint holds (optimizer and scheduler states,
EMA, message hub with HistoryBuffer and, with :class:`NumpyInfoHook`, numpy
values). Not a test module."""
import os

import numpy as np
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

MAX_ITERS = 9


class ToyModel(BaseModel):
    """A regression model small enough to train in a second."""

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.net = nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

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


def toy_dataset(n: int = 32):
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(n, 4, generator=gen)
    ys = xs[:, :2] * 2 - xs[:, 2:]
    return [dict(x=x, y=y) for x, y in zip(xs, ys)]


def build_runner(work_dir,
                 custom_hooks=(),
                 resume=False,
                 load_from=None,
                 max_iters=MAX_ITERS):
    """A Runner of :class:`ToyModel`: AdamW, warm-up then cosine, EMA,
    checkpoints every 3 iterations."""
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
            dict(
                type='CosineAnnealingLR',
                by_epoch=False,
                begin=3,
                end=MAX_ITERS)
        ],
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3,
                            by_epoch=False)),
        custom_hooks=[dict(type='EMAHook'), *custom_hooks],
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from,
        default_scope='mmengine')


class NumpyInfoHook(Hook):
    """Keeps numpy values in the message hub's runtime info, which the
    runner saves in its checkpoints (CheckpointHook keeps ``best_score``
    there, of whatever type the metric returned)."""

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        loss = outputs['loss'].item()
        runner.message_hub.update_info(
            'numpy_values',
            dict(
                loss=np.float64(loss),
                iter=np.int64(runner.iter),
                improved=np.bool_(True),
                dtype=np.dtype('float32'),
                losses=np.array([loss, loss / 2], dtype=np.float32)))
