"""The models the benchmark compares, built through the hosts' registries.

Every model is measured as *backbone + global average pooling + one linear
layer to 1000 classes* (:class:`GAPLinearClassifier`), whatever head its own
classifier config uses (MobileNetV3's extra 1280-wide layer and
EfficientFormer's distillation head are left out), so that "classifier
throughput" compares backbones on equal terms. The backbone arguments follow
each host's own ImageNet (or, for PVTv2, RetinaNet) config.

The timm peers (scope ``'timm'``) are built with
``timm.create_model(name, pretrained=False, features_only=True,
out_indices=(-1,))``: their last stage, without the classifier's extra
layers (FastViT's ``final_conv``, MobileNetV4's and EfficientViT's head
convolutions). Models that have a deploy form (FastViT, RepViT: MobileOne /
RepVGG-style branches, conv-BN pairs) are measured in it, as their authors
deploy them: ``timm.utils.model.reparameterize_model`` after ``eval()``.

Each spec names where its published ImageNet-1K top-1 comes from
(:mod:`.accuracy`): the host's metafile where the host ships one, else the
paper or the authors' model zoo.

Peers whose host package is not installed are skipped with a reason.
"""
import importlib
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .accuracy import MetafileTop1, PaperTop1, Top1Ref

__all__ = [
    'ModelSpec', 'SAEVIT_SPECS', 'TIMM_SPECS', 'PEER_SPECS', 'default_specs',
    'GAPLinearClassifier', 'build_backbone', 'build_classifier'
]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the comparison.

    Attributes:
        name: Display name, e.g. ``'EdgeNeXt-xsmall'``.
        scope: Registry scope (package) that builds the backbone, or
            ``'timm'`` (see :func:`build_backbone`).
        cfg: The backbone config: ``type`` and arguments for a registry;
            for timm, ``model`` (the timm name) and ``reparameterize``.
        source: Where the arguments come from (for the report).
        top1: Where its published ImageNet-1K top-1 comes from.
    """

    name: str
    scope: str
    cfg: Dict[str, object] = field(hash=False)
    source: str = ''
    top1: Optional[Top1Ref] = field(default=None, hash=False)


def _mmpretrain(model: str, entry: str) -> MetafileTop1:
    return MetafileTop1('mmpretrain', f'.mim/configs/{model}/metafile.yml',
                        entry)


_SAEVIT_PAPER = ('Zhang et al., "A Lightweight Convolution and Vision '
                 'Transformer integrated model with Multi-scale '
                 'Self-attention Mechanism", arXiv 2508.16884 (ImageNet-1K, '
                 '224): the paper\'s model; this implementation follows the '
                 'paper but is not that checkpoint')

SAEVIT_SPECS: Tuple[ModelSpec, ...] = (
    ModelSpec('SAEViT-t', 'saevit_mm',
              dict(type='SAEViT', arch='t', out_indices=(3, )),
              'saevit_mm arch_zoo', PaperTop1(76.3, _SAEVIT_PAPER)),
    ModelSpec('SAEViT-s', 'saevit_mm',
              dict(type='SAEViT', arch='s', out_indices=(3, )),
              'saevit_mm arch_zoo', PaperTop1(79.6, _SAEVIT_PAPER)),
)

_TIMM = ('timm {} (pretrained=False, features_only=True, last stage)')
_REPARAM = ('; deploy form: timm.utils.model.reparameterize_model after '
            'eval() (branches and conv-BN pairs folded)')

TIMM_SPECS: Tuple[ModelSpec, ...] = (
    ModelSpec(
        'FastViT-T8', 'timm', dict(model='fastvit_t8', reparameterize=True),
        _TIMM.format('fastvit_t8') + _REPARAM,
        PaperTop1(
            76.2, 'Vasu et al., "FastViT: A Fast Hybrid Vision Transformer '
            'using Structural Reparameterization", arXiv 2303.14189; 76.2 is '
            'the authors\' model zoo (github.com/apple/ml-fastvit README: '
            'ImageNet-1K, no distillation, 256) for the released weights '
            '(timm fastvit_t8.apple_in1k)')),
    ModelSpec(
        'RepViT-M0.9', 'timm', dict(model='repvit_m0_9', reparameterize=True),
        _TIMM.format('repvit_m0_9') + _REPARAM,
        PaperTop1(
            78.7, 'Wang et al., "RepViT: Revisiting Mobile CNN From ViT '
            'Perspective", arXiv 2307.09283 (ImageNet-1K, 224, 300 epochs '
            'with distillation; 79.1 after 450 epochs)')),
    ModelSpec(
        'MobileNetV4-conv-small', 'timm',
        dict(model='mobilenetv4_conv_small', reparameterize=False),
        _TIMM.format('mobilenetv4_conv_small') + '; no deploy form',
        PaperTop1(
            73.8, 'Qin et al., "MobileNetV4: Universal Models for the '
            'Mobile Ecosystem", arXiv 2404.10518 (ImageNet-1K, 224)')),
    ModelSpec(
        'MobileNetV4-conv-medium', 'timm',
        dict(model='mobilenetv4_conv_medium', reparameterize=False),
        _TIMM.format('mobilenetv4_conv_medium') + '; no deploy form',
        PaperTop1(
            79.9, 'Qin et al., "MobileNetV4: Universal Models for the '
            'Mobile Ecosystem", arXiv 2404.10518 (ImageNet-1K, 256)')),
    ModelSpec(
        'EfficientViT-B1', 'timm',
        dict(model='efficientvit_b1', reparameterize=False),
        _TIMM.format('efficientvit_b1') + '; no deploy form',
        PaperTop1(
            79.4, 'Cai et al., "EfficientViT: Multi-Scale Linear Attention '
            'for High-Resolution Dense Prediction", arXiv 2205.14756 '
            '(ImageNet-1K, 224)')),
)

PEER_SPECS: Tuple[ModelSpec, ...] = (
    ModelSpec(
        'EdgeNeXt-xsmall', 'mmpretrain',
        dict(
            type='EdgeNeXt',
            arch='xsmall',
            out_indices=(3, ),
            gap_before_final_norm=True),
        'mmpretrain configs/_base_/models/edgenext/edgenext-xsmall.py',
        _mmpretrain('edgenext', 'edgenext-xsmall_3rdparty_in1k')),
    ModelSpec(
        'EdgeNeXt-small', 'mmpretrain',
        dict(
            type='EdgeNeXt',
            arch='small',
            out_indices=(3, ),
            gap_before_final_norm=True),
        'mmpretrain configs/_base_/models/edgenext/edgenext-small.py',
        _mmpretrain('edgenext', 'edgenext-small_3rdparty_in1k')),
    ModelSpec('MobileViT-x_small', 'mmpretrain',
              dict(type='MobileViT', arch='x_small'),
              'mmpretrain configs/_base_/models/mobilevit/mobilevit_xs.py',
              _mmpretrain('mobilevit', 'mobilevit-xsmall_3rdparty_in1k')),
    ModelSpec('MobileViT-small', 'mmpretrain',
              dict(type='MobileViT', arch='small'),
              'mmpretrain configs/_base_/models/mobilevit/mobilevit_s.py',
              _mmpretrain('mobilevit', 'mobilevit-small_3rdparty_in1k')),
    ModelSpec(
        'EfficientFormer-l1', 'mmpretrain',
        dict(type='EfficientFormer', arch='l1'),
        'mmpretrain configs/_base_/models/efficientformer-l1.py',
        _mmpretrain('efficientformer',
                    'efficientformer-l1_3rdparty_8xb128_in1k')),
    ModelSpec(
        'MobileNetV3-large', 'mmpretrain',
        dict(type='MobileNetV3', arch='large'),
        'mmpretrain configs/_base_/models/mobilenet_v3/'
        'mobilenet_v3_large_imagenet.py',
        _mmpretrain('mobilenet_v3', 'mobilenet-v3-large_3rdparty_in1k')),
    ModelSpec(
        'PVTv2-b0', 'mmdet',
        dict(
            type='PyramidVisionTransformerV2',
            embed_dims=32,
            num_layers=[2, 2, 2, 2],
            out_indices=(3, )),
        'mmdet configs/pvt/retinanet_pvtv2-b0_fpn_1x_coco.py',
        PaperTop1(
            70.5, 'Wang et al., "PVT v2: Improved Baselines with Pyramid '
            'Vision Transformer", arXiv 2106.13797 (ImageNet-1K, 224; mmdet '
            'ships no ImageNet number)')),
    ModelSpec('ResNet-18', 'mmpretrain',
              dict(type='ResNet', depth=18, out_indices=(3, )),
              'mmpretrain configs/_base_/models/resnet18.py',
              _mmpretrain('resnet', 'resnet18_8xb32_in1k')),
) + TIMM_SPECS


def default_specs(names: Optional[Sequence[str]] = None) -> List[ModelSpec]:
    """SAEViT variants then peers, optionally filtered by display name.

    Args:
        names: Keep only these names (case-insensitive). Defaults to
            ``None``: all.

    Raises:
        KeyError: If a requested name is unknown; the message lists the
            known names.
    """
    specs = list(SAEVIT_SPECS + PEER_SPECS)
    if names is None:
        return specs
    by_name = {s.name.lower(): s for s in specs}
    unknown = [n for n in names if n.lower() not in by_name]
    if unknown:
        raise KeyError(f'unknown model(s) {unknown}; known: '
                       f'{[s.name for s in specs]}')
    return [by_name[n.lower()] for n in names]


def _last_output(outputs: object) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    return outputs[-1]


def _pool(feat: torch.Tensor) -> torch.Tensor:
    """Global average over every axis after the channel axis."""
    if feat.dim() == 2:  # already pooled (EdgeNeXt gap_before_final_norm)
        return feat
    return feat.flatten(2).mean(dim=2)


class GAPLinearClassifier(nn.Module):
    """Backbone, global average pooling of its last output, linear head.

    The last backbone output may be ``N x C x H x W``, ``N x C x L``
    (EfficientFormer's token stage) or an already pooled ``N x C``. The
    classifier of both ``benchmark.py`` and ``get_flops.py``.

    Args:
        backbone: The feature extractor.
        in_channels: Channels of its last output.
        num_classes: Head width. Defaults to 1000.

    Example:
        >>> from torch import nn
        >>> net = GAPLinearClassifier(nn.Conv2d(3, 8, 3), 8, 10)
        >>> net(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self,
                 backbone: nn.Module,
                 in_channels: int,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(_pool(_last_output(self.backbone(x))))


def _build_timm(cfg: Dict[str, object]) -> nn.Module:
    """A timm model's last stage (eval mode; deploy form if asked)."""
    import timm
    from timm.utils.model import reparameterize_model
    model = timm.create_model(
        cfg['model'], pretrained=False, features_only=True, out_indices=(-1, ))
    model.eval()
    if cfg.get('reparameterize'):
        model = reparameterize_model(model, inplace=True)
    return model


def build_backbone(spec: ModelSpec) -> nn.Module:
    """Build the backbone of ``spec`` with its host's registry (eval mode).

    A ``'timm'`` spec is built by ``timm.create_model`` instead (timm has no
    mmengine registry): ``features_only=True`` with the last stage as the
    only output, then ``reparameterize_model`` if ``cfg['reparameterize']``.

    Raises:
        ModuleNotFoundError: If the host package (or mmcv, which the hosts'
            models need; or timm) is not installed.
    """
    if spec.scope == 'timm':
        return _build_timm(spec.cfg)
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{spec.scope}.registry').MODELS
    # nested types (e.g. mmpretrain's LN2d) resolve in the default scope;
    # mmcv's construction-time advice (conv bias before BN...) is noise here
    with DefaultScope.overwrite_default_scope(spec.scope), \
            warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        model = registry.build(dict(spec.cfg))
    model.eval()  # not chained: some host train() overrides return None
    return model


def build_classifier(spec: ModelSpec,
                     probe_size: int = 224,
                     num_classes: int = 1000) -> GAPLinearClassifier:
    """Build ``spec`` as :class:`GAPLinearClassifier` (eval mode, CPU).

    Args:
        spec: The model.
        probe_size: Input side of the probe pass that reads the width of the
            last backbone output (EfficientFormer only accepts 224).
            Defaults to 224.
        num_classes: Head width. Defaults to 1000.
    """
    backbone = build_backbone(spec)
    with torch.no_grad():
        feat = _last_output(
            backbone(torch.zeros(1, 3, probe_size, probe_size)))
    classifier = GAPLinearClassifier(backbone, feat.shape[1], num_classes)
    classifier.eval()
    return classifier
