"""A checkpoint in the inference form, for a model built with deploy=True.

mmpretrain's ``tools/model_converters/reparameterize_model.py``, for the
configs of every host: the config's ``default_scope`` selects the registry
(mmpretrain, mmdet, mmseg), the model is built as the Runner builds it, the
checkpoint is loaded into it, and ``model.backbone.switch_to_deploy()``
gives the state dict that the same config with
``model.backbone.deploy=True`` loads (``tools/test.py CONFIG OUT
--cfg-options model.backbone.deploy=True``).
"""
import os.path as osp
from typing import Dict

from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import nn

from ..version import __version__

__all__ = ['build_model', 'reparameterize_checkpoint']


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` as mmengine's Runner does: under the config's
    ``default_scope``, with the top-level ``data_preprocessor`` if the
    model has none."""
    init_default_scope(cfg.get('default_scope'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


def reparameterize_checkpoint(cfg: Config, checkpoint: str) -> Dict:
    """Load ``checkpoint`` into the model of ``cfg`` and switch its backbone
    to the deploy form.

    Args:
        cfg: The config the checkpoint was trained with (its backbone
            eager, ``deploy=False``).
        checkpoint: Path or URL of the checkpoint; every key must fit.

    Returns:
        ``{'state_dict': ..., 'meta': ...}``: the whole model's state dict
        (backbone deployed) and plain metadata (``deploy``, ``config``,
        ``source``, ``saevit_mm_version`` and the source's
        ``dataset_meta``), tensors only.

    Raises:
        TypeError: The model has no ``backbone`` with a
            ``switch_to_deploy()`` method.
        RuntimeError: The checkpoint's keys or shapes are not the model's.
    """
    model = build_model(cfg)
    backbone = getattr(model, 'backbone', None)
    if not callable(getattr(backbone, 'switch_to_deploy', None)):
        raise TypeError(
            'reparameterize_checkpoint switches model.backbone to its deploy '
            'form, but the model of this config has no backbone with a '
            f'switch_to_deploy() method (model: {type(model).__name__}, '
            f'backbone: {type(backbone).__name__}).')
    source = load_checkpoint(
        model, checkpoint, map_location='cpu', strict=True, logger='silent')
    backbone.switch_to_deploy()
    meta = dict(
        deploy=True,
        config=osp.basename(cfg.filename or ''),
        source=osp.basename(checkpoint),
        saevit_mm_version=__version__)
    dataset_meta = (source.get('meta') or {}).get('dataset_meta')
    if dataset_meta is not None:
        meta['dataset_meta'] = dataset_meta
    return dict(state_dict=model.state_dict(), meta=meta)
