"""Classification -> backbone checkpoints, and loading them into detectors
and segmentors through ``init_cfg=dict(type='Pretrained', ...)``."""
import copy
import pickle
import subprocess
import sys

import pytest
import torch
from e2e_utils import CONFIGS, REPO, last_checkpoint, tool_env, train_demo
from mmengine.config import Config

from saevit_mm.models.utils.checkpoint import (BACKBONE_PREFIX,
                                               convert_cls_to_backbone,
                                               extract_backbone,
                                               get_state_dict,
                                               is_backbone_checkpoint)


def _classifier_state_dict():
    return {
        'backbone.stem.0.conv.weight': torch.randn(4, 3, 3, 3),
        'backbone.stages.0.blocks.0.norm.running_mean': torch.zeros(4),
        'backbone.stages.0.blocks.0.norm.num_batches_tracked': torch.tensor(3),
        'head.fc.weight': torch.randn(10, 4),
        'head.fc.bias': torch.randn(10),
    }


def test_extract_backbone_keeps_prefix_and_only_backbone():
    out = extract_backbone(_classifier_state_dict())
    assert list(out) == [
        'backbone.stem.0.conv.weight',
        'backbone.stages.0.blocks.0.norm.running_mean',
        'backbone.stages.0.blocks.0.norm.num_batches_tracked'
    ]


def test_extract_backbone_strips_ddp_prefix():
    ddp = {f'module.{k}': v for k, v in _classifier_state_dict().items()}
    assert list(extract_backbone(ddp)) == list(
        extract_backbone(_classifier_state_dict()))


def test_conversion_is_idempotent_and_pure():
    source = {'state_dict': _classifier_state_dict(), 'meta': {'epoch': 3}}
    before = copy.deepcopy(source)
    once = convert_cls_to_backbone(source, source='cls.pth')
    twice = convert_cls_to_backbone(once)
    assert is_backbone_checkpoint(once)
    assert twice['state_dict'].keys() == once['state_dict'].keys()
    assert all(
        torch.equal(once['state_dict'][k], twice['state_dict'][k])
        for k in once['state_dict'])
    assert twice['meta'] == once['meta']
    assert source.keys() == before.keys()
    assert source['state_dict'].keys() == before['state_dict'].keys()
    assert once['meta']['source_epoch'] == 3
    assert once['meta']['weights'] == 'model'


def test_conversion_marks_ema_weights():
    source = {'state_dict': _classifier_state_dict(), 'ema_state_dict': {}}
    assert convert_cls_to_backbone(source)['meta']['weights'] == 'ema'


def test_get_state_dict_accepts_three_layouts():
    sd = _classifier_state_dict()
    assert get_state_dict({'state_dict': sd}) is sd
    assert get_state_dict({'model': sd}) is sd
    assert get_state_dict(sd) is sd
    with pytest.raises(TypeError, match='must be a dict'):
        get_state_dict([1, 2])


def test_wrong_prefix_names_what_is_there():
    with pytest.raises(ValueError, match=r"'neck\.'.*\['backbone', 'head'\]"):
        extract_backbone(_classifier_state_dict(), prefix='neck')
    with pytest.raises(ValueError, match='non-empty'):
        extract_backbone(_classifier_state_dict(), prefix='')


def test_converted_file_is_tensors_only(tmp_path):
    path = tmp_path / 'backbone.pth'
    torch.save(
        convert_cls_to_backbone({'state_dict': _classifier_state_dict()},
                                source='x'), path)
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == {'state_dict', 'meta'}
    assert all(k.startswith(BACKBONE_PREFIX) for k in loaded['state_dict'])
    assert all(isinstance(v, (str, int)) for v in loaded['meta'].values())


# ---------------------------------------------------------------------------
# Real models: a classifier built from configs/cls, loaded into detectors and
# segmentors built from configs/det and configs/seg.

DENSE_T_CONFIGS = [
    pytest.param(
        'det/retinanet_saevit-t_fpn_8xb2-1x_coco.py',
        'mmdet',
        marks=pytest.mark.det,
        id='retinanet'),
    pytest.param(
        'det/mask-rcnn_saevit-t_fpn_8xb2-1x_coco.py',
        'mmdet',
        marks=pytest.mark.det,
        id='mask-rcnn'),
    pytest.param(
        'seg/fpn_saevit-t_4xb4-80k_ade20k-512x512.py',
        'mmseg',
        marks=pytest.mark.seg,
        id='fpn'),
    pytest.param(
        'seg/upernet_saevit-t_8xb2-160k_ade20k-512x512.py',
        'mmseg',
        marks=pytest.mark.seg,
        id='upernet'),
]


def _build(config: str, scope: str, backbone_init=None):
    pytest.importorskip(f'{scope}.models')
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(CONFIGS / config))
    if backbone_init is not None:
        cfg.model.backbone.init_cfg = backbone_init
    init_default_scope(scope)
    return MODELS.build(cfg.model)


@pytest.fixture(scope='module')
def cls_checkpoint(tmp_path_factory):
    """The runner checkpoint of a short tools/train.py run of the SAEViT-T
    classification demo, and the backbone file the converter CLI makes of
    it."""
    pytest.importorskip('mmpretrain.models')
    full = last_checkpoint(train_demo(tmp_path_factory, 'cls', 'cls'))
    converted = tmp_path_factory.mktemp('ckpt') / 'backbone.pth'
    proc = subprocess.run([
        sys.executable, 'tools/model_converters/cls_to_backbone.py', full,
        converted
    ],
                          cwd=REPO,
                          env=tool_env(),
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cls_state = torch.load(
        full, map_location='cpu', weights_only=False)['state_dict']
    return full, converted, cls_state


@pytest.mark.slow
def test_converter_cli_writes_weights_only_file(cls_checkpoint):
    full, converted, cls_state = cls_checkpoint
    with pytest.raises(pickle.UnpicklingError):  # a runner checkpoint
        torch.load(full, weights_only=True)
    loaded = torch.load(converted, weights_only=True)
    expected = {k for k in cls_state if k.startswith(BACKBONE_PREFIX)}
    assert set(loaded['state_dict']) == expected
    assert loaded['meta']['source'] == full.name
    assert loaded['meta']['source_epoch'] == 2  # TINY_OPTIONS['cls']
    assert loaded['meta']['weights'] == 'ema'  # the recipe has EMAHook
    assert len(loaded['meta']['source_sha256']) == 64


@pytest.mark.slow
@pytest.mark.parametrize('which', ['converted', 'full'])
@pytest.mark.parametrize('config,scope', DENSE_T_CONFIGS)
def test_classifier_weights_load_into_dense_backbone(cls_checkpoint, config,
                                                     scope, which):
    full, converted, cls_state = cls_checkpoint
    path = converted if which == 'converted' else full
    model = _build(
        config, scope,
        dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    backbone_state = model.backbone.state_dict()
    expected = {
        k[len(BACKBONE_PREFIX):]: v
        for k, v in cls_state.items() if k.startswith(BACKBONE_PREFIX)
    }
    # Every stage ends in its norm{i}, so the classifier (out_indices=(3,))
    # holds every key of the four-output dense backbone: nothing is missing.
    missing = sorted(set(backbone_state) - set(expected))
    unexpected = sorted(set(expected) - set(backbone_state))
    assert not missing and not unexpected, (missing, unexpected)
    different = [
        k for k, v in expected.items()
        if not torch.equal(v, backbone_state[k])
    ]
    assert not different, different[:5]


@pytest.mark.slow
def test_wrong_prefix_fails_clearly(cls_checkpoint):
    _, converted, _ = cls_checkpoint
    model = _build(
        'seg/fpn_saevit-t_4xb4-80k_ade20k-512x512.py', 'mmseg',
        dict(type='Pretrained', checkpoint=str(converted), prefix='encoder.'))
    with pytest.raises(
            AssertionError, match='encoder. is not in the '
            'pretrained model'):
        model.init_weights()


def test_missing_file_fails_clearly(tmp_path):
    missing = tmp_path / 'no_such_backbone.pth'
    model = _build(
        'det/retinanet_saevit-t_fpn_8xb2-1x_coco.py', 'mmdet',
        dict(type='Pretrained', checkpoint=str(missing), prefix='backbone.'))
    with pytest.raises(FileNotFoundError, match='no_such_backbone.pth'):
        model.init_weights()


@pytest.mark.slow
def test_converter_cli_reports_wrong_prefix(cls_checkpoint, tmp_path):
    full, _, _ = cls_checkpoint
    proc = subprocess.run([
        sys.executable, 'tools/model_converters/cls_to_backbone.py', full,
        tmp_path / 'out.pth', '--prefix', 'encoder.'
    ],
                          cwd=REPO,
                          env=tool_env(),
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0
    assert "No tensor key starts with 'encoder.'" in proc.stderr
    assert not (tmp_path / 'out.pth').exists()
