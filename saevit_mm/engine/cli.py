"""Command-line plumbing shared by ``tools/train.py`` and ``tools/test.py``.

One pair of scripts serves mmpretrain, mmdet and mmseg configs: the config's
``default_scope`` (set by every host's ``default_runtime.py``) decides which
registries the Runner uses. What differs per host, the visualisation hook
behind ``--show-dir``, is looked up in :data:`VISUALIZATION_HOOKS` by that
scope. Unlike mmpretrain's ``tools/train.py`` nothing injects a
``collate_fn`` into the dataloaders, which would break mmdet's batching.
"""
import argparse
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner

from .dist import LAUNCHERS, setup_distributed

__all__ = [
    'VISUALIZATION_HOOKS', 'AMP_DEVICES', 'train_parser', 'test_parser',
    'load_config', 'apply_train_args', 'apply_test_args',
    'enable_visualization', 'build_runner'
]

#: Host scope -> the type of its visualisation hook.
VISUALIZATION_HOOKS = {
    'mmpretrain': 'VisualizationHook',
    'mmdet': 'DetVisualizationHook',
    'mmseg': 'SegVisualizationHook',
}
#: Devices on which mmengine's ``AmpOptimWrapper`` works.
AMP_DEVICES = ('cuda', 'npu', 'mlu', 'musa')


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--work-dir',
        help='directory for logs and checkpoints; defaults to the '
        'config\'s work_dir, else ./work_dirs/<config name>')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs (nested keys with '
        'dots, lists as key="[a,b]"), merged after the config is loaded')
    parser.add_argument(
        '--launcher',
        choices=LAUNCHERS,
        default='none',
        help='job launcher; CPU-only machines use gloo automatically')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument(
        '--local_rank',
        '--local-rank',
        type=int,
        default=0,
        help=argparse.SUPPRESS)


def train_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/train.py``."""
    parser = argparse.ArgumentParser(
        description='Train a model of mmpretrain, mmdet or mmseg; the '
        'config\'s default_scope selects the host.')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        help='resume from this checkpoint; without a path, from the latest '
        'checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (needs a CUDA/NPU/MLU device)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the real total batch size against '
        'auto_scale_lr.base_batch_size of the config')
    _common_args(parser)
    return parser


def test_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/test.py``."""
    parser = argparse.ArgumentParser(
        description='Test (evaluate) a checkpoint of mmpretrain, mmdet or '
        'mmseg; the config\'s default_scope selects the host.')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--show-dir',
        help='save painted predictions into this directory (a relative '
        'path is relative to the work directory)')
    parser.add_argument(
        '--show', action='store_true', help='show predictions in a window')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2.,
        help='seconds each shown image stays open (with --show)')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='paint every n-th test sample (mmpretrain, mmseg)')
    _common_args(parser)
    return parser


def load_config(args: argparse.Namespace) -> Config:
    """Load ``args.config`` and apply the options common to both tools.

    Order: the file, then ``--cfg-options``, then ``--launcher`` and the
    work directory (CLI > ``work_dir`` in the file > config name).

    Args:
        args: Parsed arguments of :func:`train_parser` or :func:`test_parser`.

    Returns:
        The config, ready for the tool-specific options.
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def apply_train_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply ``--amp``, ``--auto-scale-lr`` and ``--resume`` to ``cfg``.

    Raises:
        RuntimeError: ``--amp`` without an accelerator, or
            ``--auto-scale-lr`` with a config that has no
            ``auto_scale_lr.base_batch_size``.
    """
    if args.amp:
        device = get_device()
        if device not in AMP_DEVICES:
            raise RuntimeError(
                f'--amp needs one of {list(AMP_DEVICES)}, but this run is on '
                f'{device!r} (torch.cuda.is_available() is False), where '
                'mmengine\'s AmpOptimWrapper does not work; run without '
                '--amp.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise RuntimeError(
                '--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=N) '
                'in the config (N = the total batch size the learning rate '
                'was tuned for), and this config has none.')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def enable_visualization(cfg: Config,
                         show_dir: Optional[str] = None,
                         show: bool = False,
                         wait_time: float = 2.,
                         interval: int = 1) -> Config:
    """Turn on the host's visualisation hook for testing.

    The hook type comes from :data:`VISUALIZATION_HOOKS` by the config's
    ``default_scope``; it is added to ``default_hooks`` when missing. The
    hosts read a relative ``show_dir`` differently (mmdet: under
    ``work_dir/<timestamp>``, mmpretrain and mmseg: under the current
    directory), so it is made absolute here, relative to ``cfg.work_dir``.

    Args:
        cfg: The config, changed in place.
        show_dir: Where painted predictions are saved; a relative path is
            relative to ``cfg.work_dir``. Defaults to None.
        show: Show predictions in a window. Defaults to False.
        wait_time: Seconds per shown image. Defaults to 2.
        interval: Paint every n-th sample. Defaults to 1.

    Returns:
        ``cfg``.

    Raises:
        ValueError: The config's scope has no known visualisation hook.
    """
    scope = cfg.get('default_scope')
    if scope not in VISUALIZATION_HOOKS:
        raise ValueError(
            f'--show/--show-dir: the config has default_scope={scope!r}; '
            f'supported scopes are {sorted(VISUALIZATION_HOOKS)}.')
    hooks = cfg.setdefault('default_hooks', {})
    hook = hooks.get('visualization') or {}
    hook = dict(hook)
    hook.setdefault('type', VISUALIZATION_HOOKS[scope])
    if show_dir:
        show_dir = osp.abspath(osp.join(cfg.get('work_dir', '.'), show_dir))
    if scope == 'mmpretrain':
        hook.update(
            enable=True, show=show, wait_time=wait_time, interval=interval)
        if show_dir:
            hook['out_dir'] = show_dir
    elif scope == 'mmdet':
        hook.update(draw=True, show=show, wait_time=wait_time)
        if show_dir:
            hook['test_out_dir'] = show_dir
    else:  # mmseg: the visualizer's save_dir receives the images
        hook.update(
            draw=True, show=show, wait_time=wait_time, interval=interval)
        if show_dir:
            cfg.visualizer['save_dir'] = show_dir
    hooks['visualization'] = hook
    return cfg


def apply_test_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Set the checkpoint to test and the visualisation options."""
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show, args.wait_time,
                             args.interval)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """Prepare distributed execution (CPU too) and build the Runner.

    A config with ``runner_type`` is built from the host's ``RUNNERS``
    registry under its default scope, otherwise mmengine's ``Runner``.
    """
    setup_distributed(cfg, cfg.get('launcher', 'none'))
    if 'runner_type' in cfg:
        init_default_scope(cfg.get('default_scope'))
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)
