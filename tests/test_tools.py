"""tools/train.py and tools/test.py for the three hosts, and their shared
command-line plumbing (saevit_mm.engine.cli)."""
import argparse
import shutil
from pathlib import Path

import pytest
from e2e_utils import (CONFIGS, DEMO_CONFIGS, TINY_OPTIONS, assert_finite,
                       demo_data_root, last_checkpoint, read_test_metrics,
                       run_tool, train_demo)
from mmengine.config import Config

from saevit_mm.engine.cli import (VISUALIZATION_HOOKS, apply_train_args,
                                  enable_visualization, load_config,
                                  train_parser)
from saevit_mm.engine.cli import test_parser as make_test_parser

CLS_CONFIG = str(CONFIGS / 'cls' / 'saevit-t_8xb128-coslr-300e_in1k.py')


def _train_args(*argv: str) -> argparse.Namespace:
    return train_parser().parse_args([CLS_CONFIG, *argv])


def test_work_dir_priority_cli_then_config_name():
    cfg = load_config(_train_args())
    assert cfg.work_dir == './work_dirs/saevit-t_8xb128-coslr-300e_in1k'
    cfg = load_config(_train_args('--work-dir', 'elsewhere'))
    assert cfg.work_dir == 'elsewhere'


def test_cfg_options_and_launcher_are_applied():
    cfg = load_config(
        _train_args('--cfg-options', 'train_cfg.max_epochs=2',
                    'model.backbone.arch=s', '--launcher', 'pytorch'))
    assert cfg.train_cfg.max_epochs == 2
    assert cfg.model.backbone.arch == 's'
    assert cfg.launcher == 'pytorch'


@pytest.mark.parametrize('resume,expected', [
    ([], (False, None)),
    (['--resume'], (True, None)),
    (['--resume', 'w/epoch_3.pth'], (True, 'w/epoch_3.pth')),
])
def test_resume(resume, expected):
    args = _train_args(*resume)
    cfg = apply_train_args(load_config(args), args)
    assert (cfg.resume, cfg.load_from) == expected


def test_auto_scale_lr_needs_base_batch_size():
    args = _train_args('--auto-scale-lr')
    cfg = apply_train_args(load_config(args), args)
    assert cfg.auto_scale_lr == dict(base_batch_size=1024, enable=True)
    cfg = load_config(args)
    cfg.pop('auto_scale_lr')
    with pytest.raises(RuntimeError, match='base_batch_size'):
        apply_train_args(cfg, args)


def test_amp_is_refused_on_cpu():
    pytest.importorskip('torch')
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    args = _train_args('--amp')
    with pytest.raises(RuntimeError, match='--amp needs one of'):
        apply_train_args(load_config(args), args)


def test_train_py_amp_on_cpu_exits_with_usage_error():
    proc = run_tool(['tools/train.py', CLS_CONFIG, '--amp'], check=False)
    assert proc.returncode == 2
    assert 'error: --amp needs one of' in proc.stdout


@pytest.mark.parametrize('scope', sorted(VISUALIZATION_HOOKS))
def test_show_dir_enables_the_hosts_hook(scope, tmp_path):
    cfg = Config(
        dict(
            default_scope=scope,
            default_hooks=dict(),
            visualizer=dict(),
            work_dir=str(tmp_path)))
    enable_visualization(cfg, show_dir='painted')
    hook = cfg.default_hooks.visualization
    assert hook.type == VISUALIZATION_HOOKS[scope]
    saved_to = dict(
        mmpretrain=hook.get('out_dir'),
        mmdet=hook.get('test_out_dir'),
        mmseg=cfg.visualizer.get('save_dir'))[scope]
    assert saved_to == str(tmp_path / 'painted')  # under the work dir
    assert hook.get('enable', hook.get('draw')) is True
    enable_visualization(cfg, show_dir=str(tmp_path / 'abs'))
    assert str(tmp_path /
               'abs') in (cfg.default_hooks.visualization.get('out_dir'),
                          cfg.default_hooks.visualization.get('test_out_dir'),
                          cfg.visualizer.get('save_dir'))


def test_show_dir_rejects_unknown_scope():
    with pytest.raises(ValueError, match='supported scopes are'):
        enable_visualization(Config(dict(default_scope='mmocr')), 'vis')


def test_test_parser_requires_checkpoint():
    with pytest.raises(SystemExit):
        make_test_parser().parse_args([CLS_CONFIG])


# ---------------------------------------------------------------------------
# End to end: tools/train.py then tools/test.py with --show-dir on the tiny
# demo data; the host's real metric must be present and finite.

E2E = [
    pytest.param(
        'cls',
        'cls', ['accuracy/top1', 'accuracy/top5'], [],
        marks=pytest.mark.cls,
        id='mmpretrain-cls'),
    pytest.param(
        'retinanet',
        'det', ['coco/bbox_mAP', 'coco/bbox_mAP_50'],
        ['model.test_cfg.score_thr=0.0'],
        marks=pytest.mark.det,
        id='mmdet-retinanet'),
    pytest.param(
        'mask-rcnn',
        'det', ['coco/bbox_mAP', 'coco/segm_mAP'], [
            'model.test_cfg.rcnn.score_thr=0.0',
            'model.test_cfg.rcnn.max_per_img=20'
        ],
        marks=pytest.mark.det,
        id='mmdet-mask-rcnn'),
    pytest.param(
        'fpn',
        'seg', ['mIoU', 'aAcc'], [],
        marks=pytest.mark.seg,
        id='mmseg-fpn'),
]


@pytest.mark.slow
@pytest.mark.parametrize('name,task,metric_keys,test_options', E2E)
def test_train_then_test(tmp_path_factory, tmp_path, name, task, metric_keys,
                         test_options):
    host = dict(cls='mmpretrain', det='mmdet', seg='mmseg')[task]
    pytest.importorskip(f'{host}.models')
    data_root = demo_data_root(tmp_path_factory)
    checkpoint = last_checkpoint(train_demo(tmp_path_factory, name, task))
    work_dir = tmp_path / 'test'
    show_dir = work_dir / 'painted'
    run_tool([
        'tools/test.py', DEMO_CONFIGS[name], checkpoint, '--work-dir',
        work_dir, '--show-dir', 'painted', '--cfg-options',
        *TINY_OPTIONS[task], *test_options
    ],
             data_root=data_root)
    assert_finite(read_test_metrics(work_dir), metric_keys)
    painted = [p for p in show_dir.rglob('*') if p.suffix in ('.png', '.jpg')]
    assert painted, f'--show-dir {show_dir} received no image'


@pytest.mark.slow
@pytest.mark.seg
def test_hosts_own_train_py_runs_our_config(tmp_path_factory, tmp_path):
    """mmseg's packaged tools/train.py (what ``mim train mmseg`` runs)."""
    mmseg = pytest.importorskip('mmseg')
    pytest.importorskip('mmseg.models')
    host_train = Path(mmseg.__file__).parent / '.mim' / 'tools' / 'train.py'
    if not host_train.exists():
        pytest.skip(f'{host_train} is not installed')
    work_dir = tmp_path / 'work'
    run_tool([
        host_train, DEMO_CONFIGS['fpn'], '--work-dir', work_dir,
        '--cfg-options', *TINY_OPTIONS['seg']
    ],
             data_root=demo_data_root(tmp_path_factory))
    assert (work_dir / 'iter_2.pth').exists()


@pytest.mark.slow
@pytest.mark.seg
def test_resume_continues_from_the_latest_checkpoint(tmp_path_factory,
                                                     tmp_path):
    pytest.importorskip('mmseg.models')
    trained = train_demo(tmp_path_factory, 'fpn', 'seg')
    work_dir = tmp_path / 'work'
    shutil.copytree(trained, work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_2.pth'))
    options = [o for o in TINY_OPTIONS['seg'] if 'max_iters' not in o]
    proc = run_tool([
        'tools/train.py', DEMO_CONFIGS['fpn'], '--work-dir', work_dir,
        '--resume', '--cfg-options', 'train_cfg.max_iters=3', *options
    ],
                    data_root=demo_data_root(tmp_path_factory))
    assert 'resumed epoch: 0, iter: 2' in proc.stdout
    assert 'Iter(train) [3/3]' in proc.stdout
    assert (work_dir / 'iter_3.pth').exists()
