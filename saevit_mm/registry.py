"""Registration of saevit_mm modules: the only module that knows registries.

Choice: child registries of mmengine's root ``MODELS`` and ``HOOKS`` with the
scope ``saevit_mm`` (the mmyolo pattern), and every class is also added to
mmengine's root registry of its kind.

* ``type='SAEViT'`` (and ``type='RandomStateHook'`` in ``custom_hooks``)
  resolves under any default scope (mmpretrain, mmdet, mmseg, or a future
  host), because every host registry has the root as parent, and no host
  package is imported by ``import saevit_mm``.
* ``type='saevit_mm.SAEViT'`` (``'saevit_mm.RandomStateHook'``) resolves
  through our child registry.
"""
from typing import Type

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

__all__ = ['MODELS', 'HOOKS', 'register_model', 'register_hook']

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='saevit_mm',
    locations=['saevit_mm.models'])
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='saevit_mm',
    locations=['saevit_mm.engine.hooks'])


def _register(cls: Type, registries: tuple) -> Type:
    """Register ``cls`` in each of ``registries`` under its class name.

    Re-running the defining module (``importlib.reload``, or a second import
    under the same name) replaces our own earlier entry instead of failing;
    a class of another module under the same name still raises mmengine's
    ``KeyError: '... is already registered ...'``.
    """
    for registry in registries:
        existing = registry.module_dict.get(cls.__name__)
        ours = existing is not None and (
            existing.__module__, existing.__qualname__) == (cls.__module__,
                                                            cls.__qualname__)
        registry.register_module(module=cls, force=ours)
    return cls


def register_model(cls: Type) -> Type:
    """Class decorator: register ``cls`` in our ``MODELS`` and mmengine's
    root ``MODELS`` (see :func:`_register` for re-imports)."""
    return _register(cls, (MODELS, MMENGINE_MODELS))


def register_hook(cls: Type) -> Type:
    """Class decorator: register ``cls`` in our ``HOOKS`` and mmengine's
    root ``HOOKS`` (see :func:`_register` for re-imports)."""
    return _register(cls, (HOOKS, MMENGINE_HOOKS))
