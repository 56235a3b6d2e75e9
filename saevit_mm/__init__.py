"""saevit_mm: the SAEViT backbone for mmpretrain, mmdet and mmsegmentation.

``custom_imports=dict(imports=['saevit_mm'], allow_failed_imports=False)`` in a
config imports this package, which registers ``SAEViT`` and
``RandomStateHook`` (see :mod:`saevit_mm.registry`) and makes mmengine's
checkpoint loading work on torch >= 2.6 without turning off safe loading
(see :mod:`saevit_mm.engine.checkpoint_loader`).
"""
from .engine import checkpoint_loader  # noqa: F401  (activates safe loading)
from .engine import hooks  # noqa: F401  (registers RandomStateHook)
from .models import *  # noqa: F401,F403
from .version import __version__

__all__ = ['__version__']
