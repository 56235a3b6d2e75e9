"""Every full config trains and validates: one ``train_step`` and one
``val_step`` of the model the Runner builds, on a batch from the config's
own pipelines.

The data are the demo data in the host's layout (the full configs point at
ImageNet, COCO and ADE20K, which CI does not have); the pipelines are the
full config's, with the detection and segmentation scales divided by
:data:`SHRINK` so that the step runs in seconds on a CPU. Every head runs,
auxiliary heads included: their losses must be among the step's.
"""
import copy
from pathlib import Path

import pytest
import torch
from e2e_utils import CONFIGS, DEMO_CONFIGS, demo_data_root
from mmengine.config import Config

#: The full configs: what a user trains on the real datasets.
FULL_CONFIGS = sorted(
    p for task in ('cls', 'det', 'seg') for p in (CONFIGS / task).glob('*.py'))
#: The demo config whose dataset (root, annotations, classes) stands in for
#: the full config's, by host; Mask R-CNN's demo data has masks for both
#: detectors.
DEMO_DATA_CONFIG = dict(
    mmpretrain=DEMO_CONFIGS['cls'],
    mmdet=DEMO_CONFIGS['mask-rcnn'],
    mmseg=DEMO_CONFIGS['fpn'])
#: Factor by which the detection and segmentation image scales shrink.
SHRINK = 4
#: Pipeline and preprocessor keys that hold an image scale.
SCALE_KEYS = ('scale', 'crop_size', 'size')


def _shrunk(value):
    if isinstance(value, int):
        return max(value // SHRINK, 32)
    if isinstance(value, (tuple, list)) and all(
            isinstance(v, int) for v in value):
        return type(value)(_shrunk(v) for v in value)
    return value


def shrink_scales(node):
    """A copy of a config node with every image scale divided by
    :data:`SHRINK` (at least 32, the backbone's smallest input)."""
    if isinstance(node, dict):
        return type(node)({
            key: _shrunk(value) if key in SCALE_KEYS else shrink_scales(value)
            for key, value in node.items()
        })
    if isinstance(node, (list, tuple)):
        return type(node)(shrink_scales(v) for v in node)
    return node


def _dataset_cfg(cfg, demo, split: str, scope: str):
    """The demo's dataset for ``split`` with the full config's pipeline."""
    dataset = copy.deepcopy(demo[f'{split}_dataloader'].dataset)
    pipeline = cfg[f'{split}_dataloader'].dataset.pipeline
    dataset.pipeline = pipeline if scope == 'mmpretrain' else shrink_scales(
        pipeline)
    return dataset


def _batch(cfg, dataset, split: str, size: int = 2):
    """``size`` samples collated as the Runner's dataloader does."""
    from mmengine.registry import FUNCTIONS
    collate_cfg = dict(cfg[f'{split}_dataloader'].get(
        'collate_fn', dict(type='pseudo_collate')))
    collate = FUNCTIONS.get(collate_cfg.pop('type'))
    return collate([dataset[i] for i in range(size)], **collate_cfg)


def _param(path: Path):
    scope = Config.fromfile(str(path)).default_scope
    return pytest.param(
        path,
        scope,
        marks=getattr(pytest.mark, dict(mmpretrain='cls', mmdet='det',
                                        mmseg='seg')[scope]),
        id=f'{path.parent.name}/{path.stem}')


def test_every_task_has_t_and_s_configs():
    names = {p.stem for p in FULL_CONFIGS}
    for task in ('cls', 'det', 'seg'):
        stems = [p.stem for p in FULL_CONFIGS if p.parent.name == task]
        assert any('saevit-t' in s for s in stems), task
        assert any('saevit-s' in s for s in stems), task
    assert len(names) == len(FULL_CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize('path,scope', [_param(p) for p in FULL_CONFIGS])
def test_full_config_takes_a_train_step_and_a_val_step(
        path, scope, tmp_path_factory, monkeypatch, single_thread):
    pytest.importorskip(f'{scope}.models')
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DATASETS, MODELS, init_default_scope

    monkeypatch.setenv('SAEVIT_DEMO_DATA',
                       str(demo_data_root(tmp_path_factory)))
    cfg = Config.fromfile(str(path))
    demo = Config.fromfile(str(DEMO_DATA_CONFIG[scope]))
    init_default_scope(scope)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor'):  # as the Runner does
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    if scope != 'mmpretrain':
        model_cfg.data_preprocessor = shrink_scales(
            model_cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

    train_set = DATASETS.build(_dataset_cfg(cfg, demo, 'train', scope))
    before = {
        name: p.detach().clone()
        for name, p in model.backbone.named_parameters() if p.requires_grad
    }
    model.train()
    log_vars = model.train_step(_batch(cfg, train_set, 'train'), optim_wrapper)
    assert torch.isfinite(log_vars['loss']), log_vars
    # every head ran: its losses are among the step's
    if 'auxiliary_head' in cfg.model:
        assert any(key.startswith('aux.') for key in log_vars), sorted(
            log_vars)
    if 'mask_head' in cfg.model.get('roi_head', {}):
        assert 'loss_mask' in log_vars, sorted(log_vars)
    if 'rpn_head' in cfg.model:
        assert 'loss_rpn_cls' in log_vars, sorted(log_vars)
    # the loss reached the whole backbone: the optimizer moved every weight
    after = dict(model.backbone.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n])]
    assert before and not unchanged, unchanged

    val_set = DATASETS.build(_dataset_cfg(cfg, demo, 'val', scope))
    model.eval()
    # mmseg validates one image at a time (its val images differ in size)
    size = min(2, cfg.val_dataloader.batch_size)
    with torch.no_grad():
        preds = model.val_step(_batch(cfg, val_set, 'val', size))
    assert len(preds) == size
