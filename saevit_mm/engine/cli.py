"""Command-line plumbing shared by ``tools/train.py`` and ``tools/test.py``.

One pair of scripts serves mmpretrain, mmdet and mmseg configs: the config's
``default_scope`` (set by every host's ``default_runtime.py``) decides which
registries the Runner uses. The scripts take the union of the flags of
mmpretrain 1.2.0, mmdet 3.3.0 and mmsegmentation 1.2.2 ``tools/train.py``
and ``tools/test.py``. Where the hosts give a flag different meanings
(``tools/test.py --out``, ``--tta``), the config's scope selects the host's
meaning: :data:`VISUALIZATION_HOOKS`, :data:`RESULT_DUMPS` and
:func:`enable_tta`. Unlike mmpretrain's ``tools/train.py`` nothing injects a
``collate_fn`` into the dataloaders, which would break mmdet's batching.
"""
import argparse
import os
import os.path as osp
from typing import Optional, Sequence

from mmengine.config import Config, ConfigDict, DictAction
from mmengine.device import get_device
from mmengine.registry import RUNNERS, init_default_scope
from mmengine.runner import Runner

from .dist import LAUNCHERS, setup_distributed
from .host_scope import host_scope
from .result_dump import RESULT_DUMPS, dump_metrics, enable_result_dump
from .test_time_aug import enable_tta

__all__ = [
    'VISUALIZATION_HOOKS', 'RESULT_DUMPS', 'AMP_DEVICES', 'LOADERS',
    'train_parser', 'test_parser', 'load_config', 'apply_train_args',
    'apply_test_args', 'set_dataloader_defaults', 'enable_visualization',
    'enable_tta', 'enable_result_dump', 'dump_metrics', 'build_runner'
]

#: Host scope -> the type of its visualisation hook.
VISUALIZATION_HOOKS = {
    'mmpretrain': 'VisualizationHook',
    'mmdet': 'DetVisualizationHook',
    'mmseg': 'SegVisualizationHook',
}
#: Devices on which mmengine's ``AmpOptimWrapper`` works.
AMP_DEVICES = ('cuda', 'npu', 'mlu', 'musa')
#: The dataloaders of a config.
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--work-dir',
        help='directory for logs and checkpoints; defaults to the '
        'config\'s work_dir, else ./work_dirs/<config name>')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='pin_memory=False in the dataloaders, whatever the config says '
        '(without it they default to True)')
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
        'config\'s default_scope selects the host. The dataloaders default '
        'to pin_memory=True and, with num_workers > 0, '
        'persistent_workers=True (as in mmpretrain\'s tools/train.py); '
        'values in the config or in --cfg-options win over these defaults.')
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
        '--no-validate',
        action='store_true',
        help='train without validation (val_cfg, val_dataloader and '
        'val_evaluator become None)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the real total batch size against '
        'auto_scale_lr.base_batch_size of the config')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='persistent_workers=False in the dataloaders, whatever the '
        'config says (without it they default to True when num_workers > '
        '0); an exact --resume with RandomStateHook (configs/cls) needs it '
        'when num_workers > 0')
    _common_args(parser)
    return parser


def test_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/test.py``."""
    parser = argparse.ArgumentParser(
        description='Test (evaluate) a checkpoint of mmpretrain, mmdet or '
        'mmseg; the config\'s default_scope selects the host and, where the '
        'hosts differ (--out, --tta), the meaning of the flag. The test '
        'dataloader defaults to pin_memory=True (as in mmpretrain\'s '
        'tools/test.py).')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='mmpretrain: a .pkl file of the predictions (DumpResults), or '
        'of the metrics with --out-item metrics (.pkl/.json/.yaml); mmdet: a '
        '.pkl file of the predictions (DumpDetResults) for offline '
        'evaluation; mmseg: a directory that receives one predicted label '
        'map (.png) per image (output_dir of the test metric); a relative '
        'path is relative to the current directory')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds, predictions (pred, the default) or metrics; '
        'mmpretrain and mmdet configs (mmseg\'s --out is a directory)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation from the config\'s tta_model and '
        'tta_pipeline; mmpretrain and mmdet configs without them get the '
        'host\'s default (flip, scores averaged / boxes merged), mmseg '
        'configs must have both')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='test under autocast (test_cfg.fp16=True): float16 on a GPU, '
        'bfloat16 on the CPU (mmpretrain and mmseg configs only: mmcv\'s '
        'nms in mmdet takes no bfloat16)')
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


def set_dataloader_defaults(
        cfg: Config,
        fields: Sequence[str] = LOADERS,
        pin_memory: bool = True,
        persistent_workers: Optional[bool] = True) -> Config:
    """Default ``pin_memory`` and ``persistent_workers`` of dataloaders.

    The defaults of mmpretrain's tools: a key the loader already has (from
    the config or ``--cfg-options``) is kept, and ``False`` (the ``--no-*``
    flags) turns a key off whatever the config says. ``persistent_workers``
    is defaulted only for ``num_workers > 0``, the only case torch's
    ``DataLoader`` accepts it in. On a machine without an accelerator torch
    ignores ``pin_memory=True`` (it warns).

    Args:
        cfg: The config, changed in place.
        fields: The loaders to change; missing or ``None`` ones are skipped.
            Defaults to :data:`LOADERS`.
        pin_memory: Default ``pin_memory=True``, else force it off.
            Defaults to True.
        persistent_workers: Default ``persistent_workers=True`` (with
            workers), ``False`` forces it off, ``None`` leaves it alone.
            Defaults to True.

    Returns:
        ``cfg``.
    """
    for field in fields:
        if cfg.get(field) is None:
            continue
        # a copy: configs often make the val and test loaders one dict
        loader = ConfigDict(cfg[field])
        if pin_memory:
            loader.setdefault('pin_memory', True)
        else:
            loader.pin_memory = False
        if persistent_workers is False:
            loader.persistent_workers = False
        elif persistent_workers and loader.get('num_workers', 0) > 0:
            loader.setdefault('persistent_workers', True)
        cfg[field] = loader
    return cfg


def apply_train_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the options of :func:`train_parser` beyond
    :func:`load_config` to ``cfg``.

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
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    set_dataloader_defaults(
        cfg,
        pin_memory=not args.no_pin_memory,
        persistent_workers=not args.no_persistent_workers)
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
    scope = host_scope(cfg, '--show/--show-dir')
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
    """Apply the options of :func:`test_parser` beyond :func:`load_config`
    to ``cfg``: the checkpoint, visualisation, ``--amp``, ``--tta``,
    ``--out`` and the test loader's ``pin_memory``.

    Raises:
        ValueError: See :func:`enable_visualization`, :func:`enable_tta` and
            :func:`enable_result_dump`; ``--out-item`` without ``--out``; or
            ``--amp`` with an mmdet config on the CPU.
    """
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show, args.wait_time,
                             args.interval)
    if args.amp:
        if cfg.get('default_scope') == 'mmdet' and get_device() == 'cpu':
            raise ValueError(
                '--amp with an mmdet config on the CPU: mmengine autocasts to '
                'bfloat16 there, and mmcv\'s nms (in every mmdet head) takes '
                'float32 only ("expected scalar type Float but found '
                'BFloat16"); run without --amp, or on a GPU.')
        cfg.test_cfg = ConfigDict(cfg.get('test_cfg') or {}, fp16=True)
    if args.tta:
        enable_tta(cfg)
    if args.out is not None:
        enable_result_dump(cfg, args.out, args.out_item)
    elif args.out_item is not None:
        raise ValueError(
            f'--out-item {args.out_item} needs --out FILE: the file it '
            'names receives the item.')
    set_dataloader_defaults(
        cfg, ('test_dataloader', ),
        pin_memory=not args.no_pin_memory,
        persistent_workers=None)
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
