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

:func:`check_pretrained_state_dict` is the check ``SAEViT`` runs before
``init_cfg=dict(type='Pretrained', ...)`` loads a file: mmengine loads with
``strict=False`` and only warns about missing keys and other shapes, so a
checkpoint of another arch would otherwise start training silently.

All functions here are pure (no I/O, inputs not mutated) and idempotent:
converting a converted checkpoint returns it unchanged.
"""
import re
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional

import torch

__all__ = [
    'BACKBONE_PREFIX', 'CONVERTER', 'get_state_dict', 'extract_backbone',
    'convert_cls_to_backbone', 'is_backbone_checkpoint',
    'pretrained_state_dict', 'check_pretrained_state_dict'
]

#: Prefix of the backbone in every OpenMMLab model (classifier, detector,
#: segmentor); ``init_cfg`` uses it to pick the backbone out of a checkpoint.
BACKBONE_PREFIX = 'backbone.'
#: Written into ``meta['converter']`` of converted files.
CONVERTER = 'saevit_mm.cls_to_backbone'
_DDP_PREFIX = 'module.'


def _require_mapping(checkpoint: Any) -> None:
    if not isinstance(checkpoint, Mapping):
        raise TypeError('A checkpoint must be a dict (a state dict or a '
                        'dict with "state_dict"), got '
                        f'{type(checkpoint).__name__}.')


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
    _require_mapping(checkpoint)
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


def pretrained_state_dict(
        checkpoint: Mapping[str, Any],
        prefix: Optional[str] = BACKBONE_PREFIX) -> 'OrderedDict[str, Any]':
    """The state dict that mmengine's ``PretrainedInit`` loads from a file.

    As mmengine 0.10 does it: ``checkpoint['state_dict']`` if present, else
    the checkpoint itself; with ``prefix``, the keys under it with the prefix
    removed (``_load_checkpoint_with_prefix``); without, a leading
    ``module.`` removed (``load_checkpoint``).

    Args:
        checkpoint: What the checkpoint file holds.
        prefix: ``init_cfg``'s ``prefix``; None for a bare backbone state
            dict. Defaults to ``'backbone.'``.

    Returns:
        A new ordered dict; empty when no key is under ``prefix``.

    Raises:
        TypeError: ``checkpoint`` is not a mapping.
    """
    _require_mapping(checkpoint)
    state_dict = checkpoint.get('state_dict', checkpoint)
    if prefix is None:
        ddp = re.compile(f'^{re.escape(_DDP_PREFIX)}')
        return OrderedDict(
            (ddp.sub('', key), value) for key, value in state_dict.items())
    if not prefix.endswith('.'):
        prefix += '.'
    return OrderedDict((key[len(prefix):], value)
                       for key, value in state_dict.items()
                       if key.startswith(prefix))


def _shape(tensor: Any) -> str:
    return 'x'.join(map(str, tensor.shape)) or 'scalar'


def _listed(names: List[str], limit: int) -> str:
    shown = ', '.join(names[:limit])
    more = len(names) - limit
    return shown + (f' and {more} more' if more > 0 else '')


def check_pretrained_state_dict(model_state: Mapping[str, Any],
                                checkpoint: Mapping[str, Any],
                                prefix: Optional[str],
                                source: str,
                                limit: int = 5,
                                loaded: Optional[Mapping[str, Any]] = None
                                ) -> None:
    """Check that a checkpoint holds exactly the model's keys and shapes.

    Args:
        model_state: The state dict of the model to load into.
        checkpoint: What the checkpoint file holds.
        prefix: ``init_cfg``'s ``prefix`` (see :func:`pretrained_state_dict`).
        source: The file's name, for the messages.
        limit: How many names each part of the message lists. Defaults to 5.
        loaded: The state dict under ``prefix`` if the caller has it already
            (e.g. with keys of an earlier layout renamed); None: taken from
            ``checkpoint``. Defaults to None.

    Raises:
        AssertionError: No key is under ``prefix`` (the type mmengine's
            ``PretrainedInit`` raises for this); the message names the key
            groups the file has.
        ValueError: Keys are missing, unexpected, or of another shape; the
            message summarises each kind and names the file.
    """
    if loaded is None:
        loaded = pretrained_state_dict(checkpoint, prefix)
    if not loaded:
        groups = sorted({
            key.split('.')[0]
            for key in checkpoint.get('state_dict', checkpoint)
        })
        held = f'its top-level key groups are {groups[:10]}' if groups \
            else 'it holds no keys'
        raise AssertionError(
            f'{prefix} is not in the pretrained model {source}: no key '
            f'starts with {prefix!r}; {held}. Set init_cfg.prefix to the '
            'prefix the backbone has in the file '
            f'({BACKBONE_PREFIX!r} in a classifier, detector or segmentor, '
            'and in tools/model_converters/cls_to_backbone.py output).')
    missing = [key for key in model_state if key not in loaded]
    unexpected = [key for key in loaded if key not in model_state]
    shapes = [
        f'{key}: file {_shape(value)} vs model {_shape(model_state[key])}'
        for key, value in loaded.items()
        if key in model_state and hasattr(value, 'shape')
        and tuple(value.shape) != tuple(model_state[key].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    problems = []
    if missing:
        problems.append(f'it lacks {len(missing)} of the model\'s '
                        f'{len(model_state)} keys '
                        f'({_listed(missing, limit)})')
    if unexpected:
        problems.append(f'{len(unexpected)} of its {len(loaded)} keys are '
                        f'not in the model ({_listed(unexpected, limit)})')
    if shapes:
        problems.append(f'{len(shapes)} tensors have another shape '
                        f'({_listed(shapes, limit)})')
    where = f'under {prefix!r}' if prefix else 'in the file'
    raise ValueError(
        f'{source} does not fit this backbone ({where}): '
        f'{"; ".join(problems)}. A backbone loads only a checkpoint of its '
        'own arch with every key and shape equal (for example an \'s\' '
        'file with arch=\'s\'); set init_cfg.checkpoint=None to train '
        'from the default init instead.')
