"""What a checkpoint may contain: one allowlist, one unpickler.

This module is a ``pickle_module`` for :func:`torch.load` (it has the
``Unpickler``, ``load`` and ``loads`` that torch uses), on torch 2.1 as on
torch >= 2.6. Its unpickler resolves a pickled global only if it is

* on torch's own weights-only allowlist (tensors, parameters, storages,
  dtypes, ``OrderedDict``, ``set``, bytes, ...), or added by the user with
  ``torch.serialization.add_safe_globals`` (torch >= 2.4);
* part of an mmengine runner checkpoint: ``HistoryBuffer`` (rebuilt from its
  ``__dict__``), ``getattr`` limited to ``HistoryBuffer``'s statistics methods
  (its state names them as ``getattr(HistoryBuffer, 'mean')``), numpy arrays,
  scalars and dtypes.

numpy moved ``numpy.core`` to ``numpy._core`` in 2.0. Both names resolve to
the installed numpy's own functions, so a checkpoint written under numpy 2
loads under numpy 1.24 and the reverse, without importing either module path.
Anything else (``os.system``, an arbitrary class) raises
:class:`CheckpointRefused` before it is called or built.
"""
import _compat_pickle
import codecs
import collections
import functools
import io
import pickle
from typing import Any, Callable, Dict

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = [
    'CheckpointRefused', 'Unpickler', 'load', 'loads', 'allowed_globals',
    'resolve_global'
]

#: numpy's package of array internals under numpy 1.x and under numpy 2
NUMPY_CORE_MODULES = ('numpy.core', 'numpy._core')


class CheckpointRefused(pickle.UnpicklingError):
    """A checkpoint names a global that it may not contain."""


def _history_buffer_methods() -> list:
    """Public methods defined on ``HistoryBuffer`` (``min``, ``mean``...)."""
    return sorted(name for name, value in vars(HistoryBuffer).items()
                  if callable(value) and not name.startswith('_'))


def history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` limited to the methods ``HistoryBuffer`` pickles."""
    if obj is HistoryBuffer and name in _history_buffer_methods():
        return getattr(obj, name)
    raise CheckpointRefused(
        f'Refused getattr({obj!r}, {name!r}) while loading a checkpoint: '
        'only the methods of mmengine HistoryBuffer '
        f'({_history_buffer_methods()}) are allowed.')


def _numpy_globals() -> Dict[str, Any]:
    """numpy's pickled names, under numpy 1.x and numpy 2 module paths.

    The functions come from numpy's own ``__reduce__``, so they are the
    installed numpy's objects whichever names the file uses.
    """
    reconstruct = np.empty(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    entries = {'numpy.ndarray': np.ndarray, 'numpy.dtype': np.dtype}
    for core in NUMPY_CORE_MODULES:
        entries[f'{core}.multiarray._reconstruct'] = reconstruct
        entries[f'{core}.multiarray.scalar'] = scalar
    # numpy >= 1.25 names its dtype classes numpy.dtypes.*; an older numpy
    # has none, and a file naming one is refused there
    for cls in vars(getattr(np, 'dtypes', object)).values():
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            entries[f'numpy.dtypes.{cls.__name__}'] = cls
    return entries


#: Plain values that protocol 2 pickles through a global (bytes as
#: ``_codecs.encode``); torch >= 2.4 allows them too, torch 2.1 handles
#: them outside its allowlist.
_PLAIN_GLOBALS = {
    '_codecs.encode': codecs.encode,
    'builtins.bytearray': bytearray,
    'builtins.set': set,
    'builtins.frozenset': frozenset,
    'builtins.complex': complex,
    'builtins.slice': slice,
    'collections.Counter': collections.Counter,
    'collections.OrderedDict': collections.OrderedDict,
}


def _torch_globals() -> Dict[str, Any]:
    """torch's weights-only allowlist (present since torch 1.13)."""
    from torch import _weights_only_unpickler
    return dict(_weights_only_unpickler._get_allowed_globals())


@functools.lru_cache(maxsize=1)
def allowed_globals() -> Dict[str, Any]:
    """``'module.name' -> object`` of every global a checkpoint may name,
    besides those the user allows with ``add_safe_globals``."""
    return {
        **_PLAIN_GLOBALS,
        **_torch_globals(),
        **_numpy_globals(),
        f'{HistoryBuffer.__module__}.HistoryBuffer': HistoryBuffer,
        'builtins.getattr': history_buffer_getattr,
    }


def _user_globals() -> Dict[str, Any]:
    """What ``torch.serialization.add_safe_globals`` allowed (torch >= 2.4;
    none before)."""
    get = getattr(torch.serialization, 'get_safe_globals', None)
    entries = {}
    for entry in get() if get is not None else []:
        obj, name = entry if isinstance(entry, tuple) else (
            entry, f'{entry.__module__}.{entry.__qualname__}')
        entries[name] = obj
    return entries


def resolve_global(module: str, name: str) -> Any:
    """The object a pickle's ``module.name`` may stand for, or a refusal."""
    key = f'{module}.{name}'
    allowed = allowed_globals()
    if key in allowed:
        return allowed[key]
    user = _user_globals()
    if key in user:
        return user[key]
    raise CheckpointRefused(
        f'{key!r} is not allowed in a checkpoint. Allowed are tensors, '
        "plain containers, torch's weights-only allowlist, what an mmengine "
        'runner checkpoint holds (HistoryBuffer, numpy arrays, scalars and '
        'dtypes, under numpy 1 and numpy 2 names) and globals added with '
        'torch.serialization.add_safe_globals (torch >= 2.4). If you trust '
        'the file, set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for a full pickle '
        'load, which can run code.')


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves globals by :func:`resolve_global`
    only."""

    def find_class(self, module: str, name: str) -> Any:
        # protocol 2 (torch.save's) names Python 2 modules, such as
        # __builtin__.getattr: map them as pickle's own find_class does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        return resolve_global(module, name)


def load(file, **kwargs) -> Any:
    """``pickle.load`` with :class:`Unpickler`."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs) -> Any:
    """``pickle.loads`` with :class:`Unpickler`."""
    return load(io.BytesIO(data), **kwargs)
