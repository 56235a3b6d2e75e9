"""The models the benchmark compares, built through the hosts' registries.

Every model is measured as *backbone + global average pooling + one linear
layer to 1000 classes* (:class:`GAPLinearClassifier`), whatever head its own
classifier config uses (MobileNetV3's extra 1280-wide layer and
EfficientFormer's distillation head are left out), so that "classifier
throughput" compares backbones on equal terms. The backbone arguments follow
each host's own ImageNet (or, for PVTv2, RetinaNet) config.

Peers whose host package is not installed are skipped with a reason.
"""
import importlib
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    'ModelSpec', 'SAEVIT_SPECS', 'PEER_SPECS', 'default_specs',
    'GAPLinearClassifier', 'build_backbone', 'build_classifier'
]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the comparison.

    Attributes:
        name: Display name, e.g. ``'EdgeNeXt-xsmall'``.
        scope: Registry scope (package) that builds the backbone.
        cfg: The backbone config (``type`` and arguments).
        source: Where the arguments come from (for the report).
    """

    name: str
    scope: str
    cfg: Dict[str, object] = field(hash=False)
    source: str = ''


SAEVIT_SPECS: Tuple[ModelSpec, ...] = (
    ModelSpec('SAEViT-t', 'saevit_mm',
              dict(type='SAEViT', arch='t', out_indices=(3, )),
              'saevit_mm arch_zoo'),
    ModelSpec('SAEViT-s', 'saevit_mm',
              dict(type='SAEViT', arch='s', out_indices=(3, )),
              'saevit_mm arch_zoo'),
)

PEER_SPECS: Tuple[ModelSpec, ...] = (
    ModelSpec(
        'EdgeNeXt-xsmall', 'mmpretrain',
        dict(
            type='EdgeNeXt',
            arch='xsmall',
            out_indices=(3, ),
            gap_before_final_norm=True),
        'mmpretrain configs/_base_/models/edgenext/edgenext-xsmall.py'),
    ModelSpec(
        'EdgeNeXt-small', 'mmpretrain',
        dict(
            type='EdgeNeXt',
            arch='small',
            out_indices=(3, ),
            gap_before_final_norm=True),
        'mmpretrain configs/_base_/models/edgenext/edgenext-small.py'),
    ModelSpec('MobileViT-x_small', 'mmpretrain',
              dict(type='MobileViT', arch='x_small'),
              'mmpretrain configs/_base_/models/mobilevit/mobilevit_xs.py'),
    ModelSpec('MobileViT-small', 'mmpretrain',
              dict(type='MobileViT', arch='small'),
              'mmpretrain configs/_base_/models/mobilevit/mobilevit_s.py'),
    ModelSpec('EfficientFormer-l1', 'mmpretrain',
              dict(type='EfficientFormer', arch='l1'),
              'mmpretrain configs/_base_/models/efficientformer-l1.py'),
    ModelSpec(
        'MobileNetV3-large', 'mmpretrain',
        dict(type='MobileNetV3', arch='large'),
        'mmpretrain configs/_base_/models/mobilenet_v3/'
        'mobilenet_v3_large_imagenet.py'),
    ModelSpec(
        'PVTv2-b0', 'mmdet',
        dict(
            type='PyramidVisionTransformerV2',
            embed_dims=32,
            num_layers=[2, 2, 2, 2],
            out_indices=(3, )),
        'mmdet configs/pvt/retinanet_pvtv2-b0_fpn_1x_coco.py'),
    ModelSpec('ResNet-18', 'mmpretrain',
              dict(type='ResNet', depth=18, out_indices=(3, )),
              'mmpretrain configs/_base_/models/resnet18.py'),
)


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


def build_backbone(spec: ModelSpec) -> nn.Module:
    """Build the backbone of ``spec`` with its host's registry (eval mode).

    Raises:
        ModuleNotFoundError: If the host package (or mmcv, which the hosts'
            models need) is not installed.
    """
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
