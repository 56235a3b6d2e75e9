"""Pure state-dict conversions for SAEViT checkpoints.

A classification checkpoint (mmpretrain ``ImageClassifier``, written by the
Runner) holds ``state_dict`` with ``backbone.*``, ``neck.*`` and ``head.*``
keys, plus optimizer state, message hub and numpy objects in ``meta``. The
dense configs load the backbone with
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``,
which keeps the keys under ``backbone.`` and strips that prefix.

:func:`convert_cls_to_backbone` keeps the ``backbone.`` prefix, so the same
``init_cfg`` loads either the full classifier checkpoint or the converted
file. The converted file holds tensors and plain ``str``/``int`` metadata
only, so it loads with ``torch.load(weights_only=True)``.

All functions here are pure (no I/O, inputs not mutated) and idempotent:
converting a converted checkpoint returns it unchanged.
"""
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional

import torch

__all__ = [
    'BACKBONE_PREFIX', 'CONVERTER', 'get_state_dict', 'extract_backbone',
    'convert_cls_to_backbone', 'is_backbone_checkpoint'
]

#: Prefix of the backbone in every OpenMMLab model (classifier, detector,
#: segmentor); ``init_cfg`` uses it to pick the backbone out of a checkpoint.
BACKBONE_PREFIX = 'backbone.'
#: Written into ``meta['converter']`` of converted files.
CONVERTER = 'saevit_mm.cls_to_backbone'
_DDP_PREFIX = 'module.'


def get_state_dict(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    """The state dict inside a checkpoint.

    Args:
        checkpoint: A runner checkpoint (``state_dict`` key), a checkpoint
            with a ``model`` key, or a state dict itself.

    Returns:
        The state dict (not copied).

    Raises:
        TypeError: ``checkpoint`` is not a mapping.
    """
    if not isinstance(checkpoint, Mapping):
        raise TypeError('A checkpoint must be a dict (a state dict or a '
                        'dict with "state_dict"), got '
                        f'{type(checkpoint).__name__}.')
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    return checkpoint


def extract_backbone(
        state_dict: Mapping[str, Any],
        prefix: str = BACKBONE_PREFIX) -> 'OrderedDict[str, torch.Tensor]':
    """Keep the tensors under ``prefix``, with the prefix kept.

    A leading ``module.`` (a state dict saved from a DDP-wrapped model) is
    removed first. Tensors are detached, moved to CPU and made contiguous.

    Args:
        state_dict: A model state dict.
        prefix: The backbone's prefix. Defaults to ``'backbone.'``.

    Returns:
        A new ordered dict ``{'backbone.<name>': tensor}``.

    Raises:
        ValueError: ``prefix`` is empty or no tensor key starts with it.
    """
    if not prefix:
        raise ValueError('prefix must be a non-empty key prefix such as '
                         f'{BACKBONE_PREFIX!r}.')
    if not prefix.endswith('.'):
        prefix += '.'
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(_DDP_PREFIX):
            key = key[len(_DDP_PREFIX):]
        if key.startswith(prefix) and isinstance(value, torch.Tensor):
            out[key] = value.detach().cpu().contiguous()
    if not out:
        sample = sorted({key.split('.')[0] for key in state_dict})[:10]
        raise ValueError(
            f'No tensor key starts with {prefix!r}. The checkpoint\'s '
            f'top-level key groups are {sample}. Pass the prefix the '
            'backbone has in this checkpoint (a classifier, detector or '
            f'segmentor uses {BACKBONE_PREFIX!r}).')
    return out


def is_backbone_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    """Whether ``checkpoint`` was written by :func:`convert_cls_to_backbone`.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    return isinstance(meta, Mapping) and meta.get('converter') == CONVERTER


def _plain_meta(meta: Any) -> Dict[str, Any]:
    """The ``str``/``int`` entries of a source ``meta`` worth keeping."""
    if not isinstance(meta, Mapping):
        return {}
    keep = ('epoch', 'iter', 'experiment_name', 'mmengine_version', 'seed')
    return {
        f'source_{key}': meta[key]
        for key in keep if isinstance(meta.get(key), (str, int))
        and not isinstance(meta.get(key), bool)
    }


def convert_cls_to_backbone(checkpoint: Mapping[str, Any],
                            prefix: str = BACKBONE_PREFIX,
                            source: Optional[str] = None) -> Dict[str, Any]:
    """Turn a classification checkpoint into a backbone-only checkpoint.

    Args:
        checkpoint: A runner checkpoint of a classifier, or its state dict.
            When it has ``ema_state_dict`` (mmengine's ``EMAHook``), its
            ``state_dict`` already holds the averaged weights, and those are
            the ones kept.
        prefix: The backbone's prefix. Defaults to ``'backbone.'``.
        source: A name for the source, recorded in ``meta``. Defaults to
            None.

    Returns:
        ``{'state_dict': {'backbone.<name>': tensor}, 'meta': {...}}`` with
        ``meta`` holding only ``str`` and ``int`` values. A checkpoint that
        is already converted is returned as a shallow copy.

    Raises:
        TypeError: ``checkpoint`` is not a mapping.
        ValueError: No tensor is under ``prefix``.
    """
    if is_backbone_checkpoint(checkpoint):
        return dict(checkpoint)
    state_dict = extract_backbone(get_state_dict(checkpoint), prefix)
    meta: Dict[str, Any] = {
        'converter': CONVERTER,
        'prefix': prefix if prefix.endswith('.') else prefix + '.',
        'num_tensors': len(state_dict),
        'weights': 'ema' if 'ema_state_dict' in checkpoint else 'model',
    }
    if source is not None:
        meta['source'] = str(source)
    meta.update(_plain_meta(checkpoint.get('meta')))
    return {'state_dict': state_dict, 'meta': meta}
