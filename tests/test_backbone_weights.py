"""Backbone weights the OpenMMLab way: ``model.backbone.init_cfg.checkpoint``.

Every det/seg config gives its backbone
``init_cfg=dict(type='Pretrained', checkpoint=None, prefix='backbone.')``.
Through ``tools/train.py``, on a detector and a segmenter:

* ``--cfg-options model.backbone.init_cfg.checkpoint=PATH``, or a child config
  setting it, makes the backbone start from PATH's tensors (checked exactly:
  the run trains one iteration with lr 0 and saves a checkpoint);
* no path: training starts from SAEViT's own init, and one log line says so;
* a missing file, or a file of another arch, stops the run before training
  with a message naming the file and what does not match.

The backbone files are written as ``tools/model_converters/
cls_to_backbone.py`` writes them (:func:`convert_cls_to_backbone`).
"""
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch
from e2e_utils import (DEMO_CONFIGS, TINY_OPTIONS, demo_data_root,
                       last_checkpoint, run_tool, train_demo)

from saevit_mm.models import SAEViT
from saevit_mm.models.utils.checkpoint import (BACKBONE_PREFIX,
                                               check_pretrained_state_dict,
                                               convert_cls_to_backbone)

NO_CHECKPOINT_LINE = ('SAEViT: init_cfg.checkpoint is None, so no pretrained '
                      'weights are loaded')

HOSTS = [
    pytest.param('retinanet', 'det', marks=pytest.mark.det, id='retinanet'),
    pytest.param('fpn', 'seg', marks=pytest.mark.seg, id='fpn'),
]
#: One iteration with lr 0, a checkpoint after it: the saved backbone
#: parameters are those the run started from (AdamW with lr 0 leaves every
#: parameter bit-identical). The det TINY_OPTIONS already train one
#: iteration (2 images, batch 2) and save at the end of the epoch.
LR0_OPTIONS = {
    'det': ['optim_wrapper.optimizer.lr=0'],
    'seg': [
        'optim_wrapper.optimizer.lr=0', 'train_cfg.max_iters=1',
        'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1'
    ],
}


def _host(task: str) -> None:
    pytest.importorskip(dict(det='mmdet', seg='mmseg')[task] + '.models')


def _backbone_file(path: Path, arch: str,
                   seed: int) -> Dict[str, torch.Tensor]:
    """A SAEViT backbone file of ``arch`` as the converter writes it, with
    distinctive weights (the default init plus noise, so that no parameter
    equals a fresh init); returns the state dict without prefix."""
    model = SAEViT(arch, out_indices=(0, 1, 2, 3))
    model.init_weights()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.01 * torch.randn(param.shape, generator=gen))
    state = model.state_dict()
    classifier = {f'{BACKBONE_PREFIX}{k}': v for k, v in state.items()}
    torch.save(
        convert_cls_to_backbone({'state_dict': classifier}, source='test'),
        path)
    return state


@pytest.fixture(scope='module')
def backbone_files(tmp_path_factory):
    """``t`` (the demo configs' arch), ``s`` and a ResNet-18 backbone file,
    and the ``t`` tensors."""
    folder = tmp_path_factory.mktemp('backbones')
    t_state = _backbone_file(folder / 'saevit-t_backbone.pth', 't', seed=1)
    _backbone_file(folder / 'saevit-s_backbone.pth', 's', seed=2)
    files = dict(
        t=folder / 'saevit-t_backbone.pth', s=folder / 'saevit-s_backbone.pth')
    torchvision = pytest.importorskip('torchvision')
    resnet = torchvision.models.resnet18().state_dict()
    files['resnet'] = folder / 'resnet18_backbone.pth'
    torch.save(
        convert_cls_to_backbone({
            'state_dict': {
                f'{BACKBONE_PREFIX}{k}': v
                for k, v in resnet.items()
            }
        }), files['resnet'])
    return files, t_state


def _train(name: str,
           task: str,
           work_dir: Path,
           tmp_path_factory,
           options: List[str],
           config: Optional[Path] = None,
           check: bool = True):
    return run_tool([
        'tools/train.py', config or DEMO_CONFIGS[name], '--work-dir', work_dir,
        '--cfg-options', *TINY_OPTIONS[task], *options
    ],
                    data_root=demo_data_root(tmp_path_factory),
                    check=check)


def _assert_stopped_before_training(proc, work_dir: Path) -> None:
    assert proc.returncode != 0
    assert 'Epoch(train)' not in proc.stdout
    assert 'Iter(train)' not in proc.stdout
    assert not list(work_dir.rglob('*.pth'))


# ------------------------------------------------------------ the check


def test_check_accepts_the_same_arch_and_names_what_differs(backbone_files):
    files, t_state = backbone_files
    t_model = SAEViT('t', out_indices=(0, 1, 2, 3)).state_dict()

    def check(name, prefix=BACKBONE_PREFIX):
        check_pretrained_state_dict(t_model,
                                    torch.load(files[name], weights_only=True),
                                    prefix, str(files[name]))

    check('t')  # same keys and shapes: no error
    with pytest.raises(ValueError) as err:
        check('s')
    message = str(err.value)
    assert str(files['s']) in message
    assert 'stem.conv1.conv.weight: file 24x3x3x3 vs model 20x3x3x3' \
        in message
    # s has one more block in stage 2: keys the t model does not have
    assert 'stages.2.blocks.5.' in message
    with pytest.raises(ValueError) as err:
        check('resnet')
    message = str(err.value)
    assert str(files['resnet']) in message
    assert f'it lacks {len(t_model)} of the model\'s {len(t_model)} keys' \
        in message
    assert 'not in the model (conv1.weight, bn1.weight' in message
    # a prefix with no key: mmengine's error type, with the file named
    with pytest.raises(
            AssertionError,
            match="encoder. is not in the "
            "pretrained model .*saevit-t_backbone.pth.*backbone"):
        check('t', prefix='encoder.')


# ------------------------------------------------- through tools/train.py


@pytest.mark.slow
@pytest.mark.parametrize('how', ['cfg-options', 'child-config'])
@pytest.mark.parametrize('name,task', HOSTS)
def test_training_starts_from_the_given_backbone_file(backbone_files,
                                                      tmp_path_factory,
                                                      tmp_path, name, task,
                                                      how):
    _host(task)
    files, t_state = backbone_files
    work_dir = tmp_path / 'work'
    if how == 'cfg-options':
        config = DEMO_CONFIGS[name]
        options = [f'model.backbone.init_cfg.checkpoint={files["t"]}']
    else:  # the child config the det/seg READMEs show
        config = tmp_path / f'child_{DEMO_CONFIGS[name].name}'
        config.write_text(f'_base_ = {str(DEMO_CONFIGS[name])!r}\n'
                          'model = dict(backbone=dict(init_cfg=dict(\n'
                          f'    checkpoint={str(files["t"])!r})))\n')
        options = []
    proc = _train(
        name,
        task,
        work_dir,
        tmp_path_factory, [*LR0_OPTIONS[task], *options],
        config=config)
    assert NO_CHECKPOINT_LINE not in proc.stdout
    saved = torch.load(
        last_checkpoint(work_dir), map_location='cpu',
        weights_only=False)['state_dict']
    params = [n for n, _ in SAEViT('t').named_parameters()]
    assert len(params) > 100
    differ = [
        n for n in params
        if not torch.equal(saved[f'{BACKBONE_PREFIX}{n}'], t_state[n])
    ]
    assert not differ, f'{len(differ)} of {len(params)}: {differ[:5]}'


@pytest.mark.slow
@pytest.mark.parametrize('name,task', HOSTS)
def test_no_checkpoint_trains_from_own_init_and_says_so_once(
        tmp_path_factory, name, task):
    _host(task)
    work_dir = train_demo(tmp_path_factory, name, task)
    logs = sorted(work_dir.glob('*/*.log'))
    assert logs, f'no <timestamp>/<timestamp>.log in {work_dir}'
    text = logs[-1].read_text()
    assert text.count(NO_CHECKPOINT_LINE) == 1
    assert 'load backbone. in model from' not in text
    assert 'Epoch(train)' in text or 'Iter(train)' in text


@pytest.mark.slow
@pytest.mark.det
def test_missing_file_stops_before_training(tmp_path_factory, tmp_path):
    _host('det')
    missing = tmp_path / 'no_such_backbone.pth'
    work_dir = tmp_path / 'work'
    proc = _train(
        'retinanet',
        'det',
        work_dir,
        tmp_path_factory, [f'model.backbone.init_cfg.checkpoint={missing}'],
        check=False)
    _assert_stopped_before_training(proc, work_dir)
    assert f'FileNotFoundError: SAEViT init_cfg.checkpoint: {missing} is ' \
        'not a file' in proc.stdout


OTHER_ARCH = [
    pytest.param(
        'fpn',
        'seg',
        's',
        'tensors have another shape',
        marks=pytest.mark.seg,
        id='fpn-s-into-t'),
    pytest.param(
        'retinanet',
        'det',
        'resnet',
        'not in the model (conv1.weight',
        marks=pytest.mark.det,
        id='retinanet-resnet18'),
]


@pytest.mark.slow
@pytest.mark.parametrize('name,task,which,mismatch', OTHER_ARCH)
def test_other_arch_stops_before_training(backbone_files, tmp_path_factory,
                                          tmp_path, name, task, which,
                                          mismatch):
    _host(task)
    files, _ = backbone_files
    work_dir = tmp_path / 'work'
    proc = _train(
        name,
        task,
        work_dir,
        tmp_path_factory,
        [f'model.backbone.init_cfg.checkpoint={files[which]}'],
        check=False)
    _assert_stopped_before_training(proc, work_dir)
    assert f'ValueError: {files[which]} does not fit this backbone' \
        in proc.stdout
    assert mismatch in proc.stdout
