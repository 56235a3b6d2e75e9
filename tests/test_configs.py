"""Every shipped config loads, builds its model and runs a forward pass."""
import ast
import re
from pathlib import Path

import pytest
import torch
from e2e_utils import CONFIGS
from mmengine.config import Config

from saevit_mm.engine.cli import load_config, train_parser
from saevit_mm.models import SAEViT

# configs/ablation holds the sweep's arms, peers included: test_ablation.py;
# configs/_base_/{models,datasets,schedules} the parts the configs share.
ALL_CONFIGS = sorted(
    p for p in CONFIGS.glob('*/*.py')
    if p.parent.name not in ('ablation', '_base_'))
BASE_FILES = sorted((CONFIGS / '_base_').rglob('*.py'))
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


def test_config_files_are_offline():
    for path in sorted(CONFIGS.rglob('*.py')):
        text = path.read_text()
        assert 'http://' not in text and 'https://' not in text, path


def _local_bases(path: Path):
    """The files of this repository a config's ``_base_`` names."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, 'id', None) == '_base_' for t in node.targets):
            bases = ast.literal_eval(node.value)
            for base in [bases] if isinstance(bases, str) else bases:
                if '::' not in base:
                    yield (path.parent / base).resolve()


def test_every_base_file_exists_and_is_used():
    named = {
        base
        for path in CONFIGS.rglob('*.py')
        for base in _local_bases(path)
    }
    assert all(base.exists() for base in named), named
    assert {p.resolve() for p in BASE_FILES} <= named


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: p.stem)
def test_config_uses_saevit(path):
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


@pytest.mark.parametrize('task', ['cls', 'det', 'seg'])
def test_every_config_has_a_metafile_entry_and_readme_row(task):
    yaml = pytest.importorskip('yaml')
    folder = CONFIGS / task
    meta = yaml.safe_load((folder / 'metafile.yml').read_text())
    listed = {model['Config'] for model in meta['Models']}
    shipped = {f'configs/{task}/{p.name}' for p in folder.glob('*.py')}
    assert listed == shipped
    assert all(model['Name'] == Path(model['Config']).stem
               for model in meta['Models'])
    # the truth about weights: none exist, so none is listed
    assert not any('Weights' in model or model.get('Results')
                   for model in meta['Models'])
    readme = (folder / 'README.md').read_text()
    assert all(f'(./{Path(cfg).name})' in readme for cfg in shipped)


DENSE_T = [
    'det/retinanet_saevit-t_fpn_8xb2-1x_coco.py',
    'det/mask-rcnn_saevit-t_fpn_8xb2-1x_coco.py',
    'seg/fpn_saevit-t_4xb4-80k_ade20k-512x512.py',
    'seg/upernet_saevit-t_8xb2-160k_ade20k-512x512.py',
]
PRETRAINED_NONE = dict(type='Pretrained', checkpoint=None, prefix='backbone.')


@pytest.mark.parametrize(
    'path',
    sorted(CONFIGS.glob('[ds]e[tg]/*.py')) +
    [p for p in sorted(CONFIGS.glob('demo/*.py')) if 'in1k' not in p.name],
    ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_dense_backbone_has_pretrained_init_without_checkpoint(path):
    """Every det/seg config (demos included) gives its backbone a
    ``Pretrained`` init with no file, for ``--cfg-options`` or a child
    config to fill; no top-level variable stands in for it."""
    assert 'backbone_checkpoint' not in path.read_text()
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.init_cfg == PRETRAINED_NONE
    assert 'backbone_checkpoint' not in cfg


#: SAA delegate bound of the dense configs (README, "Resolution-adaptive
#: sampling"): COCO 800x1333 at the arch default, ADE20K above its test sizes.
DENSE_BOUNDS = dict(det=1024, seg=2048)


@pytest.mark.parametrize(
    'path',
    sorted(CONFIGS.glob('[ds]e[tg]/*.py')),
    ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_dense_configs_bound_the_saa_delegates(path):
    cfg = Config.fromfile(str(path))
    bound = DENSE_BOUNDS[path.parent.name]
    assert cfg.model.backbone.max_delegates == bound
    backbone = cfg.model.backbone.to_dict()
    backbone.pop('type')
    backbone.update(norm_cfg=dict(type='BN'), init_cfg=None)
    assert SAEViT(**backbone).arch_settings['max_delegates'] == (bound, ) * 4


@pytest.mark.parametrize('config', DENSE_T, ids=lambda c: Path(c).stem)
def test_cfg_options_set_the_backbone_checkpoint(config):
    """What ``tools/train.py --cfg-options
    model.backbone.init_cfg.checkpoint=...`` does to the config: the -t
    config and its -s variant (which inherits the init_cfg)."""
    t_file = CONFIGS / config
    s_file = t_file.with_name(t_file.name.replace('saevit-t', 'saevit-s'))
    for path, ckpt, arch in ((t_file, 't.pth', 't'), (s_file, 's.pth', 's')):
        cfg = load_config(train_parser().parse_args([
            str(path), '--cfg-options',
            f'model.backbone.init_cfg.checkpoint={ckpt}'
        ]))
        assert cfg.model.backbone.init_cfg == dict(
            PRETRAINED_NONE, checkpoint=ckpt)
        assert cfg.model.backbone.arch == arch


@pytest.mark.parametrize('config', DENSE_T, ids=lambda c: Path(c).stem)
def test_child_config_from_the_readme_sets_the_checkpoint(config, tmp_path):
    """The child config the det/seg READMEs show, over the -t config and
    over its -s variant."""
    t_file = CONFIGS / config
    s_file = t_file.with_name(t_file.name.replace('saevit-t', 'saevit-s'))
    for base in (t_file, s_file):
        child = tmp_path / f'child_of_{base.name}'
        child.write_text(
            f'_base_ = {str(base)!r}\n'
            "model = dict(backbone=dict(init_cfg=dict(\n"
            "    checkpoint='checkpoints/saevit-t_in1k_backbone.pth')))\n")
        assert Config.fromfile(str(child)).model.backbone.init_cfg == dict(
            PRETRAINED_NONE,
            checkpoint='checkpoints/saevit-t_in1k_backbone.pth')


def _flatten(node, prefix=''):
    """``{'a.b.0.c': leaf}`` for a config; ``_scope_`` markers dropped."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key != '_scope_':
                yield from _flatten(value, f'{prefix}{key}.')
    elif isinstance(node, list) and node and isinstance(node[0], dict):
        for i, value in enumerate(node):
            yield from _flatten(value, f'{prefix}{i}.')
    else:
        yield prefix[:-1], node


# What a demo config may change in the real config it inherits: the data
# (root, classes; the mmseg dataset class, since ADE20KDataset accepts only
# ADE20K class names), the image scale, the schedule (as in the hosts'
# ``_base_/schedules/``: epochs or iterations, learning rate, warm-up,
# gradient clipping), and SyncBN -> BN.
DEMO_MAY_CHANGE = [
    r'data_root$', r'metainfo\.', r'num_classes$', r'ann_file$',
    r'dataset\.(type|img_suffix|seg_map_suffix|reduce_zero_label)$',
    r'\.scale$', r'crop_size$', r'data_preprocessor\.size$', r'^train_cfg\.',
    r'^param_scheduler\.', r'^custom_hooks\.0\.momentum$',
    r'^optim_wrapper\.(optimizer\.lr|clip_grad\.)',
    r'^default_hooks\.(logger|checkpoint)\.', r'batch_size$', r'num_workers$',
    r'norm_cfg\.type$',
    r'^(demo_\w+|data_root|num_classes|crop_size|norm_cfg|max_epochs|'
    r'max_iters)(\.|$)'
]
# What the 5-epoch classification demo also turns off, because only a long
# schedule needs it (its config header gives the measurements): the batch
# augmentations, two transforms, and the smallest RandomResizedCrop crops.
CLS_DEMO_OFF = ('RandAugment', 'RandomErasing')
CLS_DEMO_MAY_CHANGE = [r'^model\.train_cfg(\.|$)', r'crop_ratio_range$']


def _without(pipeline, types):
    return [step for step in pipeline if step['type'] not in types]


DEMOS = sorted((CONFIGS / 'demo').glob('*.py'))
#: ``demo-in1k``, ``demo-coco``, ``demo-ade20k``: the layout of the data
LAYOUTS = dict(in1k='ImageNet', coco='COCO', ade20k='ADE20K')


def _real_config(demo: Path) -> Path:
    """The config a demo's header names: ``# Demo: configs/<task>/<name>.py
    on synthetic data.``"""
    match = re.match(r'# Demo: configs/(\S+\.py) on synthetic',
                     demo.read_text())
    assert match, f'{demo.name}: the header names no real config'
    return CONFIGS / match[1]


@pytest.mark.parametrize('path', DEMOS, ids=lambda p: p.stem)
def test_demo_header_says_the_data_is_synthetic(path):
    """``demo-in1k`` and the like name the layout of the generated data, not
    a subset of the real dataset; every demo header says so."""
    header = ' '.join(line[1:].strip()
                      for line in path.read_text().splitlines()
                      if line.startswith('#'))
    layout = re.search(r'_demo-(in1k|coco|ade20k)', path.name)[1]
    assert f'"demo-{layout}" names the layout' in header
    assert 'tools/misc/make_demo_data.py' in header
    assert f'in the {LAYOUTS[layout]} layout' in header
    assert 'not a subset of' in header
    assert _real_config(path).exists()


@pytest.mark.parametrize('path', DEMOS, ids=lambda p: p.stem)
def test_demo_changes_only_data_scale_schedule_and_norm(path):
    """The demo runs the real recipe, but for what the list above names."""
    demo = Config.fromfile(str(path))
    real = Config.fromfile(str(_real_config(path)))
    rules = DEMO_MAY_CHANGE
    if demo.default_scope == 'mmpretrain':
        rules = rules + CLS_DEMO_MAY_CHANGE
        # the demo drops exactly CLS_DEMO_OFF, keeping the order of the rest
        assert [step.type for step in demo.train_pipeline] == [
            step['type']
            for step in _without(real.train_pipeline, CLS_DEMO_OFF)
        ]
        for cfg in (real, demo):
            cfg.train_pipeline = _without(cfg.train_pipeline, CLS_DEMO_OFF)
            cfg.train_dataloader.dataset.pipeline = _without(
                cfg.train_dataloader.dataset.pipeline, CLS_DEMO_OFF)
    demo_flat = dict(_flatten(demo.to_dict()))
    real_flat = dict(_flatten(real.to_dict()))
    changed = sorted(key for key in demo_flat.keys() | real_flat.keys()
                     if demo_flat.get(key) != real_flat.get(key))
    assert changed, 'a demo config must change the data root at least'
    unexpected = [
        key for key in changed
        if not any(re.search(rule, key) for rule in rules)
    ]
    assert not unexpected, unexpected
    assert demo.model.backbone.arch == real.model.backbone.arch


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: p.stem)
def test_random_state_hook_comes_with_a_fixed_seed(path):
    """RandomStateHook's exact resume needs ``randomness.seed``: without it
    the resumed run draws a new seed for its sampler (the hook warns)."""
    cfg = Config.fromfile(str(path))
    hooks = [h.get('type') for h in cfg.get('custom_hooks', [])]
    if 'RandomStateHook' in hooks:
        assert cfg.get('randomness', {}).get('seed') is not None
