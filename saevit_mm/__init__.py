"""saevit_mm: the SAEViT backbone for mmpretrain, mmdet and mmsegmentation.

``custom_imports=dict(imports=['saevit_mm'], allow_failed_imports=False)`` in a
config imports this package, which registers ``SAEViT`` and
``RandomStateHook`` (see :mod:`saevit_mm.registry`) and routes mmengine's
checkpoint loading (local files and URLs) through one restricted unpickler:
runner checkpoints load on every torch and numpy we support, code-running
pickles are refused (see :mod:`saevit_mm.engine.checkpoint_loader`).
"""
from .engine import checkpoint_loader  # noqa: F401  (registers the loaders)
from .engine import hooks  # noqa: F401  (registers RandomStateHook)
from .models import *  # noqa: F401,F403
from .version import __version__

__all__ = ['__version__']
