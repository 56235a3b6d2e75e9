"""The flags of the hosts' tools/train.py and tools/test.py (mmpretrain
1.2.0, mmdet 3.3.0, mmsegmentation 1.2.2) that ours lacked: each is parsed
and applied to a real config of its host, and ``--out`` and ``--tta`` also
run on the demo configs. The flags both tools already had are in
``test_tools.py``."""
import argparse
import json
import pickle
from pathlib import Path
from typing import Tuple

import pytest
from e2e_utils import (CONFIGS, DEMO_CONFIGS, TINY_OPTIONS, assert_finite,
                       demo_data_root, last_checkpoint, read_test_metrics,
                       run_tool, train_demo)
from mmengine.config import Config

from saevit_mm.engine import cli

#: Host scope -> a config of ours under that scope.
HOST_CONFIGS = {
    'mmpretrain': CONFIGS / 'cls' / 'saevit-t_8xb128-coslr-300e_in1k.py',
    'mmdet': CONFIGS / 'det' / 'retinanet_saevit-t_fpn_8xb2-1x_coco.py',
    'mmseg': CONFIGS / 'seg' / 'fpn_saevit-t_4xb4-80k_ade20k-512x512.py',
}
#: The dataloaders of a config.
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
HOSTS = [
    pytest.param('mmpretrain', marks=pytest.mark.cls, id='mmpretrain'),
    pytest.param('mmdet', marks=pytest.mark.det, id='mmdet'),
    pytest.param('mmseg', marks=pytest.mark.seg, id='mmseg'),
]


def _train(host: str, *argv: str) -> Config:
    """The config ``tools/train.py CONFIG *argv`` would run."""
    pytest.importorskip(host)
    args = cli.train_parser().parse_args([str(HOST_CONFIGS[host]), *argv])
    return cli.apply_train_args(cli.load_config(args), args)


def _test(host: str, *argv: str) -> Tuple[Config, argparse.Namespace]:
    """The config ``tools/test.py CONFIG ckpt.pth *argv`` would run, and
    its arguments."""
    pytest.importorskip(host)
    args = cli.test_parser().parse_args(
        [str(HOST_CONFIGS[host]), 'ckpt.pth', *argv])
    return cli.apply_test_args(cli.load_config(args), args), args


def _apply_test_args(cfg: Config, *argv: str) -> Config:
    """``cfg`` (the config of an edited file) with ``tools/test.py``'s
    options ``argv``."""
    args = cli.test_parser().parse_args(['config.py', 'ckpt.pth', *argv])
    return cli.apply_test_args(cfg, args)


def _metric_types(cfg: Config) -> list:
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, dict):
        evaluator = evaluator.get('metrics', [evaluator])
    return [m['type'] for m in evaluator]


# ---------------------------------------------------------------------------
# tools/train.py: --no-validate (mmpretrain), the dataloader defaults and
# --no-pin-memory, --no-persistent-workers (mmpretrain)


@pytest.mark.parametrize('host', HOSTS)
def test_no_validate_trains_without_validation(host):
    cfg = _train(host)
    assert None not in (cfg.val_cfg, cfg.val_dataloader, cfg.val_evaluator)
    cfg = _train(host, '--no-validate')
    assert (cfg.val_cfg, cfg.val_dataloader, cfg.val_evaluator) == (None, ) * 3
    assert cfg.train_dataloader is not None


@pytest.mark.parametrize('host', HOSTS)
def test_train_loaders_default_to_pinned_persistent_workers(host):
    cfg = _train(host)
    for field in LOADERS:
        loader = cfg[field]
        assert loader.num_workers > 0, field
        assert (loader.pin_memory, loader.persistent_workers) == (True, True)


@pytest.mark.cls
def test_imagenet_config_gets_pinned_persistent_workers():
    """The issue's case: mmpretrain's ImageNet base runs five workers and
    sets neither key."""
    pytest.importorskip('mmpretrain')
    raw = Config.fromfile(HOST_CONFIGS['mmpretrain']).train_dataloader
    assert raw.num_workers == 5
    assert 'pin_memory' not in raw and 'persistent_workers' not in raw
    loader = _train('mmpretrain').train_dataloader
    assert (loader.pin_memory, loader.persistent_workers) == (True, True)


@pytest.mark.cls
def test_no_workers_get_no_persistent_workers():
    """torch's DataLoader refuses persistent_workers without workers."""
    cfg = _train('mmpretrain', '--cfg-options',
                 'train_dataloader.num_workers=0')
    assert cfg.train_dataloader.pin_memory is True
    assert 'persistent_workers' not in cfg.train_dataloader
    assert cfg.val_dataloader.persistent_workers is True


@pytest.mark.cls
def test_config_values_win_over_loader_defaults():
    cfg = _train('mmpretrain', '--cfg-options',
                 'val_dataloader.pin_memory=False',
                 'val_dataloader.persistent_workers=False')
    assert cfg.val_dataloader.pin_memory is False
    assert cfg.val_dataloader.persistent_workers is False
    assert cfg.test_dataloader.pin_memory is True


@pytest.mark.parametrize('host', HOSTS)
def test_no_pin_memory_turns_pinning_off(host):
    cfg = _train(host, '--no-pin-memory', '--cfg-options',
                 'train_dataloader.pin_memory=True')
    assert [cfg[f].pin_memory for f in LOADERS] == [False] * 3
    assert cfg.train_dataloader.persistent_workers is True


@pytest.mark.parametrize('host', HOSTS)
def test_no_persistent_workers_turns_them_off(host):
    # mmdet's and mmseg's dataset bases set persistent_workers=True
    cfg = _train(host, '--no-persistent-workers')
    assert [cfg[f].persistent_workers for f in LOADERS] == [False] * 3
    assert cfg.train_dataloader.pin_memory is True


# ---------------------------------------------------------------------------
# tools/test.py: --out (all hosts, three meanings), --out-item, --amp and
# --no-pin-memory (mmpretrain), --tta (all hosts)


@pytest.mark.parametrize('host,dump', [
    pytest.param('mmpretrain', 'DumpResults', marks=pytest.mark.cls),
    pytest.param('mmdet', 'DumpDetResults', marks=pytest.mark.det),
])
def test_out_adds_the_hosts_dump_metric(host, dump):
    before = _metric_types(_test(host)[0])
    cfg, _ = _test(host, '--out', 'results.pkl')
    assert _metric_types(cfg) == [*before, dump]
    assert cfg.test_evaluator[-1].out_file_path == 'results.pkl'
    cfg, _ = _test(host, '--out', 'r.pkl', '--out-item', 'pred')
    assert _metric_types(cfg) == [*before, dump]


@pytest.mark.parametrize('host', HOSTS[:2])
def test_out_refuses_a_file_that_is_not_a_pickle(host):
    with pytest.raises(ValueError, match=r"must end with one of \['.pkl'"):
        _test(host, '--out', 'results.json')


@pytest.mark.seg
def test_out_is_the_label_map_directory_with_mmseg():
    cfg, _ = _test('mmseg', '--out', 'label_maps')
    assert cfg.test_evaluator.type == 'IoUMetric'
    assert cfg.test_evaluator.output_dir == 'label_maps'
    assert cfg.test_evaluator.keep_results is True
    assert 'output_dir' not in cfg.val_evaluator


def test_out_with_mmseg_needs_a_test_metric():
    cfg = Config(dict(default_scope='mmseg', test_evaluator=None))
    with pytest.raises(ValueError, match='has no test_evaluator'):
        _apply_test_args(cfg, '--out', 'label_maps')


@pytest.mark.parametrize('host', HOSTS[:2])
def test_out_item_metrics_dumps_metrics_not_predictions(host, tmp_path):
    before = _metric_types(_test(host)[0])
    out = tmp_path / 'metrics.json'
    cfg, args = _test(host, '--out', str(out), '--out-item', 'metrics')
    assert _metric_types(cfg) == before
    cli.dump_metrics({'accuracy/top1': 50.0}, args)
    assert json.loads(out.read_text()) == {'accuracy/top1': 50.0}


@pytest.mark.cls
def test_out_item_needs_out():
    with pytest.raises(ValueError, match='--out-item metrics needs --out'):
        _test('mmpretrain', '--out-item', 'metrics')


@pytest.mark.seg
def test_out_item_is_refused_with_mmseg():
    with pytest.raises(ValueError, match='--out-item is for mmpretrain'):
        _test('mmseg', '--out', 'label_maps', '--out-item', 'pred')


@pytest.mark.cls
def test_test_py_reports_a_wrong_out_as_a_usage_error():
    pytest.importorskip('mmpretrain')
    proc = run_tool([
        'tools/test.py', HOST_CONFIGS['mmpretrain'], 'ckpt.pth', '--out-item',
        'metrics'
    ],
                    check=False)
    assert proc.returncode == 2
    assert 'error: --out-item metrics needs --out FILE' in proc.stdout


@pytest.mark.parametrize('host', HOSTS)
def test_amp_tests_under_autocast(host, monkeypatch):
    # the device decides only whether mmdet is refused (next test)
    monkeypatch.setattr(cli, 'get_device', lambda: 'cuda', raising=False)
    cfg, _ = _test(host, '--amp')
    assert cfg.test_cfg.fp16 is True
    assert cfg.test_cfg.get('type') == _test(host)[0].test_cfg.get('type')


@pytest.mark.det
def test_amp_with_mmdet_is_refused_on_cpu(monkeypatch):
    """On the CPU mmengine autocasts to bfloat16, which mmcv's nms refuses
    (measured with the retinanet demo: "expected scalar type Float but found
    BFloat16"); mmpretrain and mmseg configs test fine there."""
    monkeypatch.setattr(cli, 'get_device', lambda: 'cpu', raising=False)
    with pytest.raises(ValueError, match='nms .* takes float32 only'):
        _test('mmdet', '--amp')
    for host in ('mmpretrain', 'mmseg'):
        assert _test(host, '--amp')[0].test_cfg.fp16 is True


@pytest.mark.parametrize('host', HOSTS)
def test_test_loader_pin_memory_default_and_flag(host):
    cfg, _ = _test(host)
    assert cfg.test_dataloader.pin_memory is True
    persistent = cfg.test_dataloader.get('persistent_workers')
    cfg, _ = _test(host, '--no-pin-memory')
    assert cfg.test_dataloader.pin_memory is False
    assert cfg.test_dataloader.get('persistent_workers') == persistent


@pytest.mark.cls
def test_tta_with_mmpretrain_defaults_to_flip_averaging():
    """mmpretrain's tools/test.py: AverageClsScoreTTA over a flip when the
    config has no tta_model and tta_pipeline (ours has neither)."""
    plain, _ = _test('mmpretrain')
    assert 'tta_model' not in plain and 'tta_pipeline' not in plain
    cfg, _ = _test('mmpretrain', '--tta')
    assert cfg.model.type == 'mmpretrain.AverageClsScoreTTA'
    assert cfg.model.module == plain.model
    pipeline = cfg.test_dataloader.dataset.pipeline
    test_pipeline = plain.test_dataloader.dataset.pipeline
    assert pipeline[:-1] == test_pipeline[:-1]
    flips, pack = pipeline[-1].transforms
    assert pipeline[-1].type == 'TestTimeAug'
    assert [f['prob'] for f in flips] == [1., 0.]
    assert pack == [test_pipeline[-1]]
    # the val loader keeps its pipeline
    assert cfg.val_dataloader.dataset.pipeline == test_pipeline


@pytest.mark.parametrize('host,tta_type', [
    pytest.param('mmdet', 'DetTTAModel', marks=pytest.mark.det),
    pytest.param('mmseg', 'SegTTAModel', marks=pytest.mark.seg),
])
def test_tta_uses_the_configs_tta_settings(host, tta_type):
    plain, _ = _test(host)
    cfg, _ = _test(host, '--tta')
    assert cfg.model.type == tta_type
    assert cfg.model.module == plain.model
    assert cfg.test_dataloader.dataset.pipeline == plain.tta_pipeline


@pytest.mark.det
def test_tta_without_settings_gets_mmdets_flip_default():
    cfg, _ = _test('mmdet')
    cfg.pop('tta_model')
    cfg.pop('tta_pipeline')
    _apply_test_args(cfg, '--tta')
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.tta_cfg.nms.iou_threshold == 0.5
    aug = cfg.test_dataloader.dataset.pipeline[-1]
    assert aug.type == 'TestTimeAug'
    assert aug.transforms[-1][0].type == 'PackDetInputs'


@pytest.mark.seg
def test_tta_without_settings_is_refused_with_mmseg():
    cfg, _ = _test('mmseg')
    cfg.pop('tta_pipeline')
    with pytest.raises(ValueError, match='no tta_pipeline; mmseg'):
        _apply_test_args(cfg, '--tta')


@pytest.mark.parametrize('flag', [['--tta'], ['--out', 'x.pkl']])
def test_tta_and_out_refuse_an_unknown_scope(flag):
    cfg = Config(dict(default_scope='mmocr', test_dataloader=None))
    with pytest.raises(ValueError, match=f'{flag[0]}: .* supported scopes'):
        _apply_test_args(cfg, *flag)


# ---------------------------------------------------------------------------
# End to end on the demo data: --out and --tta through tools/test.py.


def _run_test(factory: pytest.TempPathFactory, tmp_path: Path, name: str,
              task: str, *argv: str) -> Tuple[str, Path]:
    """tools/test.py on the checkpoint of a tiny demo training; returns the
    output and the work directory."""
    checkpoint = last_checkpoint(train_demo(factory, name, task))
    work_dir = tmp_path / 'test'
    proc = run_tool([
        'tools/test.py', DEMO_CONFIGS[name], checkpoint, '--work-dir',
        work_dir, *argv
    ],
                    data_root=demo_data_root(factory))
    return proc.stdout, work_dir


@pytest.mark.slow
@pytest.mark.cls
def test_cls_tta_dumps_one_prediction_per_image(tmp_path_factory, tmp_path):
    pytest.importorskip('mmpretrain.models')
    out = tmp_path / 'preds.pkl'
    log, work_dir = _run_test(tmp_path_factory, tmp_path, 'cls', 'cls',
                              '--tta', '--out', str(out), '--cfg-options',
                              *TINY_OPTIONS['cls'])
    assert "type='mmpretrain.AverageClsScoreTTA'" in log
    assert_finite(read_test_metrics(work_dir), ['accuracy/top1'])
    preds = pickle.loads(out.read_bytes())
    assert len(preds) == 20  # the tiny demo's 2 val images of 10 classes
    assert all(p['pred_score'].shape == (10, ) for p in preds)


@pytest.mark.slow
@pytest.mark.det
def test_det_out_dumps_boxes_per_image(tmp_path_factory, tmp_path):
    pytest.importorskip('mmdet.models')
    out = tmp_path / 'dets.pkl'
    _, work_dir = _run_test(tmp_path_factory, tmp_path, 'retinanet', 'det',
                            '--out', str(out), '--cfg-options',
                            *TINY_OPTIONS['det'],
                            'model.test_cfg.score_thr=0.0')
    assert_finite(read_test_metrics(work_dir), ['coco/bbox_mAP'])
    dets = pickle.loads(out.read_bytes())
    assert len(dets) == 2  # TINY_OPTIONS: test_dataloader.dataset.indices=2
    for det in dets:
        boxes = det['pred_instances']['bboxes']
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 0


@pytest.mark.slow
@pytest.mark.seg
def test_seg_tta_writes_label_maps(tmp_path_factory, tmp_path):
    pytest.importorskip('mmseg.models')
    from PIL import Image
    out = tmp_path / 'label_maps'
    log, work_dir = _run_test(tmp_path_factory, tmp_path, 'fpn', 'seg',
                              '--tta', '--out', str(out), '--cfg-options',
                              *TINY_OPTIONS['seg'],
                              'test_dataloader.dataset.indices=2')
    assert "type='SegTTAModel'" in log
    assert_finite(read_test_metrics(work_dir), ['mIoU'])
    maps = sorted(out.glob('*.png'))
    assert len(maps) == 2
    images = demo_data_root(tmp_path_factory) / 'ADEChallengeData2016' / \
        'images' / 'validation'
    for path in maps:
        image = Image.open(images / f'{path.stem}.jpg')
        assert Image.open(path).size == image.size
