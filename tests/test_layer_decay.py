"""Layer-wise learning-rate decay on a SAEViT classifier.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the
classifier, which asks the backbone (``SAEViT.get_layer_depth``), for the
depth of every parameter. The expected depth is worked out here from the
module structure, not from parameter names: the stem is layer 0, block ``j``
of stage ``i`` is the running block count plus one (a stage's downsampling
goes with its first block, ``norm{i}`` with its last), the head is the top
layer, whose lr is the base lr.
"""
from typing import Dict, Tuple

import pytest
from e2e_utils import CONFIGS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn

pytestmark = pytest.mark.cls

CLS_CONFIG = CONFIGS / 'cls' / 'saevit-t_8xb128-coslr-300e_in1k.py'
#: Far from 1, so that every depth has its own learning rate.
DECAY = 0.5


def expected_layer_ids(model: nn.Module) -> Tuple[Dict[int, int], int]:
    """Layer id of every parameter of ``model`` (keyed by ``id(param)``) and
    the number of layers, from the structure of the classifier."""
    backbone = model.backbone
    depths = [len(stage.blocks) for stage in backbone.stages]
    num_layers = sum(depths) + 2
    ids: Dict[int, int] = {}

    def assign(module: nn.Module, layer_id: int) -> None:
        for param in module.parameters():
            assert id(param) not in ids, 'a parameter is in two modules'
            ids[id(param)] = layer_id

    assign(backbone.stem, 0)
    done = 0
    for i, stage in enumerate(backbone.stages):
        if getattr(stage, 'downsample', None) is not None:
            assign(stage.downsample, done + 1)
        for j, block in enumerate(stage.blocks):
            assign(block, done + j + 1)
        assign(getattr(backbone, f'norm{i}'), done + depths[i])
        done += depths[i]
    assign(model.head, num_layers - 1)
    if model.neck is not None:
        assign(model.neck, num_layers - 1)
    # a parameter the structure above does not place (a new submodule) is a
    # decision to make here and in get_layer_depth
    unplaced = [
        name for name, p in model.named_parameters() if id(p) not in ids
    ]
    assert not unplaced, f'no expected depth for {unplaced}'
    return ids, num_layers


@pytest.mark.parametrize('arch', ['tiny', 't'])
def test_layer_decay_gives_each_parameter_the_lr_of_its_depth(
        arch, tiny_arch, single_thread):
    pytest.importorskip('mmpretrain.models')
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(str(CLS_CONFIG))
    backbone_arch = tiny_arch if arch == 'tiny' else arch
    cfg.model.backbone.arch = backbone_arch
    cfg.model.backbone.drop_path_rate = 0.
    cfg.model.head.num_classes = 10
    # the user's switch: the recipe's optimizer and paramwise_cfg, plus the
    # constructor and a decay rate
    optim_cfg = cfg.optim_wrapper.to_dict()
    optim_cfg['constructor'] = 'LearningRateDecayOptimWrapperConstructor'
    optim_cfg['paramwise_cfg']['layer_decay_rate'] = DECAY
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        if arch == 'tiny':
            from saevit_mm.models import SAEViT
            cfg.model.head.in_channels = SAEViT(backbone_arch).out_channels[-1]
        model = MODELS.build(cfg.model)
        optim_wrapper = build_optim_wrapper(model, optim_cfg)

    base_lr = optim_cfg['optimizer']['lr']
    base_wd = optim_cfg['optimizer']['weight_decay']
    expected, num_layers = expected_layer_ids(model)
    names = {id(p): name for name, p in model.named_parameters()}
    groups = optim_wrapper.optimizer.param_groups
    seen = [id(p) for group in groups for p in group['params']]
    assert sorted(seen) == sorted(expected), \
        'the param groups do not hold every parameter exactly once'
    lrs = set()
    for group in groups:
        for param in group['params']:
            name = names[id(param)]
            layer_id = expected[id(param)]
            lr = base_lr * DECAY**(num_layers - 1 - layer_id)
            assert group['lr'] == pytest.approx(lr, rel=1e-12), \
                f'{name}: lr {group["lr"]}, depth {layer_id} implies {lr}'
            # the recipe's paramwise_cfg: no decay on norms, biases and
            # every other 1-d parameter
            wd = 0. if param.ndim <= 1 else base_wd
            assert group['weight_decay'] == wd, name
            lrs.add(lr)
    # every depth from the stem to the head has a parameter, and its own lr
    assert len(lrs) == num_layers
