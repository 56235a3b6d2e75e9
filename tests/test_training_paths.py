"""Training paths users take with the real demo configs.

- ``frozen_stages`` inside a RetinaNet trained by mmengine's Runner (the
  in-process path of ``tools/train.py``): the frozen weights and their BN
  statistics keep their initial values over the steps, the other backbone
  weights move, and the optimizer holds none of the frozen parameters.
- ``kill -9`` of the SAEViT classification demo in the middle of an epoch,
  then ``tools/train.py --resume`` from the last epoch checkpoint: the final
  weights equal those of an uninterrupted run (the config's
  ``RandomStateHook`` restores the random-number states of the epoch).
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest
import torch
from e2e_utils import (DEMO_CONFIGS, REPO, TINY_OPTIONS, demo_data_root,
                       last_checkpoint, run_tool, tool_env)
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

# ------------------------------------------------ frozen_stages in RetinaNet

FROZEN_STAGES = 2
#: Backbone entries frozen_stages=2 freezes: the stem, stages 0 and 1 and
#: their norms.
FROZEN_PREFIXES = ('stem.', 'stages.0.', 'stages.1.', 'norm0.', 'norm1.')
#: Six images in batches of two: three optimizer steps in one epoch.
DET_STEPS = 3


def is_frozen(name: str) -> bool:
    return name.startswith(FROZEN_PREFIXES)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


class BackboneWatch(Hook):
    """Keeps the backbone's state after weight init (before the first step)
    and, before every step, whether any frozen module is in training mode."""
    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self.initial: Dict[str, torch.Tensor] = {}
        self.frozen_training: List[List[str]] = []

    def before_train(self, runner) -> None:
        backbone = unwrap(runner.model).backbone
        self.initial = {
            k: v.detach().clone()
            for k, v in backbone.state_dict().items()
        }

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        backbone = unwrap(runner.model).backbone
        self.frozen_training.append([
            name for name, m in backbone.named_modules()
            if is_frozen(name + '.') and m.training
        ])


def _train_retinanet_frozen(work_dir: Path):
    """Train the RetinaNet demo with frozen_stages=2 for DET_STEPS steps in
    this process, as tools/train.py does; returns the runner and watch."""
    from saevit_mm.engine.cli import (apply_train_args, build_runner,
                                      load_config, train_parser)
    args = train_parser().parse_args([
        str(DEMO_CONFIGS['retinanet']), '--work-dir',
        str(work_dir), '--cfg-options', *TINY_OPTIONS['det'],
        f'train_dataloader.dataset.indices={2 * DET_STEPS}',
        f'model.backbone.frozen_stages={FROZEN_STAGES}'
    ])
    cfg = apply_train_args(load_config(args), args)
    # the steps are what is checked: no validation, no checkpoint
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = None
    runner = build_runner(cfg)
    watch = BackboneWatch()
    runner.register_hook(watch)
    runner.train()
    return runner, watch


@pytest.fixture(scope='module')
def retinanet_frozen(tmp_path_factory):
    pytest.importorskip('mmdet.models')
    pytest.importorskip('mmcv.ops')
    data_root = demo_data_root(tmp_path_factory)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    previous = os.environ.get('SAEVIT_DEMO_DATA')
    os.environ['SAEVIT_DEMO_DATA'] = str(data_root)
    try:
        yield _train_retinanet_frozen(
            tmp_path_factory.mktemp('retinanet_frozen'))
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop('SAEVIT_DEMO_DATA')
        else:
            os.environ['SAEVIT_DEMO_DATA'] = previous


@pytest.mark.slow
@pytest.mark.det
def test_frozen_stages_keep_weights_and_bn_stats_under_runner(
        retinanet_frozen):
    runner, watch = retinanet_frozen
    assert runner.iter == DET_STEPS
    backbone = unwrap(runner.model).backbone
    assert backbone.frozen_stages == FROZEN_STAGES
    # before every step, after the loop's model.train(): frozen modules eval
    assert len(watch.frozen_training) == DET_STEPS
    assert watch.frozen_training == [[]] * DET_STEPS, \
        'frozen modules in training mode during a step'

    final = backbone.state_dict()
    assert final.keys() == watch.initial.keys()
    frozen = [k for k in final if is_frozen(k)]
    assert any(k.endswith('running_mean') for k in frozen)
    for key in frozen:
        assert torch.equal(final[key], watch.initial[key]), \
            f'frozen {key} changed during training'

    params = dict(backbone.named_parameters())
    trained = [k for k in params if not is_frozen(k)]
    assert trained
    for key in trained:
        assert params[key].requires_grad, key
        assert not torch.equal(final[key], watch.initial[key]), \
            f'{key} (not frozen) did not change in {DET_STEPS} steps'
    # the BN statistics of the stages that train do move, so the equality
    # above is not a property of the BN layers themselves
    for key in final:
        if not is_frozen(key) and key.endswith('num_batches_tracked'):
            assert final[key].item() == DET_STEPS, key
        if not is_frozen(key) and key.endswith('running_mean'):
            assert not torch.equal(final[key], watch.initial[key]), key


@pytest.mark.slow
@pytest.mark.det
def test_frozen_stages_the_optimizer_holds_and_steps_no_frozen_parameter(
        retinanet_frozen):
    runner, _ = retinanet_frozen
    optimizer = runner.optim_wrapper.optimizer
    held = {id(p) for group in optimizer.param_groups for p in group['params']}
    backbone = unwrap(runner.model).backbone
    for name, param in backbone.named_parameters():
        if is_frozen(name):
            assert not param.requires_grad, name
            assert id(param) not in held, f'the optimizer holds frozen {name}'
            assert param.grad is None, name
        else:
            assert id(param) in held, f'the optimizer lacks {name}'
            assert optimizer.state.get(param), \
                f'the optimizer never stepped {name}'


# ------------------------------------------- kill -9 mid-epoch and --resume

#: Four iterations an epoch (8 images, batch 2), two epochs: 8 iterations.
CLS_ITERS_PER_EPOCH = 4
CLS_EPOCHS = 2
#: The real config's checkpointing (by epoch, max_keep_ckpts=1) with an
#: interval the two-epoch schedule reaches: epoch_1.pth, then epoch_2.pth.
#: A kill in the middle of epoch 2 resumes from epoch_1.pth and redoes
#: epoch 2. (mmengine deletes the older checkpoint *before* it writes the
#: next, so with max_keep_ckpts=1 a kill during that write would leave
#: last_checkpoint naming a deleted file; this kill lands between
#: iterations, long before the epoch_2.pth write.)
KILL_OPTIONS = [
    *TINY_OPTIONS['cls'],
    'randomness.seed=0',
    'randomness.deterministic=True',
    'default_hooks.checkpoint.interval=1',
]
#: "Epoch(train) [2][1/4]": an iteration of epoch 2 (mmengine counts from 1)
#: in the Runner's log.
_EPOCH_ITER_RE = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')


def _train_args(work_dir: Path, resume: bool = False) -> List[str]:
    """Arguments of tools/train.py for the classification demo."""
    return [
        'tools/train.py',
        str(DEMO_CONFIGS['cls']), '--work-dir',
        str(work_dir), *(['--resume'] if resume else []), '--cfg-options',
        *KILL_OPTIONS
    ]


def _logged_iters(log: Path) -> List[Tuple[int, int]]:
    """``(epoch, iteration in the epoch)`` of every logged training step."""
    text = log.read_text(errors='replace') if log.exists() else ''
    return [(int(m.group(1)), int(m.group(2)))
            for m in _EPOCH_ITER_RE.finditer(text)]


def _kill_in_epoch(args: Sequence[str], data_root: Path, work_dir: Path,
                   epoch: int) -> Path:
    """Run the tool ``args``; SIGKILL it as soon as its log shows an
    iteration of ``epoch``. Returns the log."""
    log = work_dir.parent / f'{work_dir.name}.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen([sys.executable, *args],
                                cwd=REPO,
                                env=tool_env(data_root),
                                stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline:
                if any(e == epoch for e, _ in _logged_iters(log)):
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.005)
        finally:
            if proc.poll() is None:  # timed out, or the test failed
                proc.kill()
            proc.wait()
    if proc.returncode != -signal.SIGKILL:
        tail = '\n'.join(log.read_text().splitlines()[-40:])
        pytest.fail(f'the run was not killed in epoch {epoch} (exit code '
                    f'{proc.returncode}):\n{tail}')
    return log


def _final_state(work_dir: Path) -> Dict[str, Dict[str, torch.Tensor]]:
    from saevit_mm.engine.checkpoint_loader import safe_load_checkpoint
    ckpt = safe_load_checkpoint(str(last_checkpoint(work_dir)))
    states = {'state_dict': ckpt['state_dict']}
    if 'ema_state_dict' in ckpt:  # EMAHook: the raw weights
        states['ema_state_dict'] = ckpt['ema_state_dict']
    return dict(states, meta=ckpt['meta'])


@pytest.mark.slow
@pytest.mark.cls
def test_kill_mid_epoch_then_resume_matches_uninterrupted_run(
        tmp_path_factory, tmp_path):
    pytest.importorskip('mmpretrain.models')
    from saevit_mm.engine.checkpoint_loader import safe_load_checkpoint
    data_root = demo_data_root(tmp_path_factory)

    reference = tmp_path / 'reference'
    run_tool(_train_args(reference), data_root=data_root)

    work_dir = tmp_path / 'killed'
    log = _kill_in_epoch(_train_args(work_dir), data_root, work_dir, epoch=2)
    trained = _logged_iters(log)
    assert (2, CLS_ITERS_PER_EPOCH) not in trained, \
        f'the kill came after the last iteration of epoch 2: {trained}'
    resume_from = last_checkpoint(work_dir)
    assert resume_from.name == 'epoch_1.pth', resume_from
    checkpoint = safe_load_checkpoint(str(resume_from))
    assert (checkpoint['meta']['epoch'],
            checkpoint['meta']['iter']) == (1, CLS_ITERS_PER_EPOCH)
    assert 'random_state' in checkpoint, 'RandomStateHook is not enabled'
    proc = run_tool(_train_args(work_dir, resume=True), data_root=data_root)
    assert f'resumed epoch: 1, iter: {CLS_ITERS_PER_EPOCH}' in proc.stdout

    expected = _final_state(reference)
    actual = _final_state(work_dir)
    assert expected['meta']['iter'] == CLS_EPOCHS * CLS_ITERS_PER_EPOCH
    assert actual['meta']['iter'] == expected['meta']['iter'], \
        f'the resumed run ended at iteration {actual["meta"]["iter"]}, ' \
        f'the uninterrupted one at {expected["meta"]["iter"]}'
    assert actual.keys() == expected.keys()
    for part in ('state_dict', 'ema_state_dict'):
        if part not in expected:
            continue
        assert actual[part].keys() == expected[part].keys(), part
        different = [
            key for key, value in expected[part].items()
            if not torch.equal(actual[part][key], value)
        ]
        assert not different, \
            f'{part}: {len(different)} of {len(expected[part])} tensors ' \
            f'differ from the uninterrupted run, e.g. {different[:3]}'
