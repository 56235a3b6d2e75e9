"""Every shipped config loads, builds its model and runs a forward pass."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from e2e_utils import CONFIGS

ALL_CONFIGS = sorted(CONFIGS.glob('*/*.py'))
HOSTS = dict(mmpretrain='cls', mmdet='det', mmseg='seg')


def _param(path: Path):
    scope = Config.fromfile(str(path)).default_scope
    return pytest.param(
        path,
        scope,
        marks=getattr(pytest.mark, HOSTS[scope]),
        id=f'{path.parent.name}/{path.stem}')


CONFIG_PARAMS = [_param(path) for path in ALL_CONFIGS]


def test_every_task_folder_has_configs():
    folders = {path.parent.name for path in ALL_CONFIGS}
    assert {'cls', 'det', 'seg', 'demo'} <= folders


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: p.stem)
def test_config_is_offline_and_uses_saevit(path):
    text = path.read_text()
    assert 'http://' not in text and 'https://' not in text
    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports == dict(
        imports=['saevit_mm'], allow_failed_imports=False)
    assert cfg.model.backbone.type == 'SAEViT'
    assert cfg.get('load_from') is None


def _batch(scope: str, height: int, width: int):
    """One uint8 image and the data sample the host's test_step expects."""
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    meta = dict(
        img_shape=(height, width),
        ori_shape=(height, width),
        pad_shape=(height, width),
        scale_factor=(1., 1.))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=meta)
    elif scope == 'mmseg':
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=meta)
    else:
        from mmpretrain.structures import DataSample
        sample = DataSample(metainfo=meta)
    return dict(inputs=[image], data_samples=[sample])


@pytest.mark.parametrize('path,scope', CONFIG_PARAMS)
def test_config_builds_and_predicts(path, scope):
    pytest.importorskip(f'{scope}.models')
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(str(path))
    init_default_scope(scope)
    if cfg.get('data_preprocessor'):  # as the Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model).eval()

    out_channels = list(model.backbone.out_channels)
    if scope == 'mmpretrain':  # the head takes the last stage
        assert out_channels == [cfg.model.head.in_channels]
    else:  # the neck or the decode head takes all four stages
        consumer = cfg.model.get('neck') or cfg.model.decode_head
        assert out_channels == list(consumer.in_channels)

    height, width = (64, 64) if scope == 'mmpretrain' else (97, 131)
    with torch.no_grad():
        (pred, ) = model.test_step(_batch(scope, height, width))
    if scope == 'mmpretrain':
        num_classes = cfg.model.head.num_classes
        assert pred.pred_score.shape == (num_classes, )
        assert torch.allclose(pred.pred_score.sum(), torch.tensor(1.))
    elif scope == 'mmdet':
        boxes = pred.pred_instances.bboxes
        assert boxes.ndim == 2 and boxes.shape[1] == 4
        assert torch.isfinite(boxes).all()
        if 'masks' in pred.pred_instances:
            assert pred.pred_instances.masks.shape[1:] == (height, width)
    else:
        assert pred.pred_sem_seg.data.shape == (1, height, width)
        assert torch.isfinite(pred.seg_logits.data).all()
