"""Registration of saevit_mm modules: the only module that knows registries.

Choice: a child registry of mmengine's root ``MODELS`` with the scope
``saevit_mm`` (the mmyolo pattern), and every class is also added to
mmengine's root ``MODELS``.

* ``type='SAEViT'`` resolves under any default scope (mmpretrain, mmdet,
  mmseg, or a future host), because every host registry has the root as
  parent, and no host package is imported by ``import saevit_mm``.
* ``type='saevit_mm.SAEViT'`` resolves through our child registry.
"""
from typing import Type

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

__all__ = ['MODELS', 'register_model']

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='saevit_mm',
    locations=['saevit_mm.models'])


def register_model(cls: Type) -> Type:
    """Class decorator: register ``cls`` in our scope and in mmengine's root.

    Re-running the defining module (``importlib.reload``, or a second import
    under the same name) replaces our own earlier entry instead of failing;
    a class of another module under the same name still raises mmengine's
    ``KeyError: '... is already registered ...'``.
    """
    for registry in (MODELS, MMENGINE_MODELS):
        existing = registry.module_dict.get(cls.__name__)
        ours = existing is not None and (
            existing.__module__, existing.__qualname__) == (cls.__module__,
                                                            cls.__qualname__)
        registry.register_module(module=cls, force=ours)
    return cls
