"""Safe checkpoint loading for mmengine 0.10.7 on torch >= 2.6.

torch >= 2.6 loads with ``weights_only=True`` by default. mmengine 0.10.7
calls ``torch.load`` without ``weights_only``, so a runner checkpoint (which
holds mmengine's ``HistoryBuffer`` and numpy scalars in its message hub) fails
to load and ``--resume``, ``load_from`` and ``tools/test.py CONFIG CKPT``
break with ``Weights only load failed``.

We keep safe loading on, for every file: importing :mod:`saevit_mm` replaces
mmengine's local-file loader (its official extension point,
``CheckpointLoader.register_scheme``) with one that calls
``torch.load(..., weights_only=True)`` and allows exactly the extra globals an
mmengine runner checkpoint needs:

* ``mmengine.logging.HistoryBuffer`` (rebuilt from its ``__dict__``, no code
  runs);
* numpy arrays, scalars and dtypes (``_reconstruct``, ``scalar``, ``dtype``,
  ``ndarray`` and the ``numpy.dtypes`` classes);
* ``builtins.getattr`` replaced by :func:`_history_buffer_getattr`, which only
  resolves the statistics methods of ``HistoryBuffer`` (its pickled state
  names them as ``getattr(HistoryBuffer, 'mean')``) and refuses anything
  else. An unrestricted ``getattr`` would reopen arbitrary code execution.

Anything else (an arbitrary pickled object) is refused with an
``UnpicklingError`` that names the offending globals. Tensor-only files, like
the pretrained backbones this project ships, load exactly as before.
"""
import os.path as osp
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['safe_load_checkpoint', 'runner_checkpoint_globals']


def _history_buffer_methods() -> List[str]:
    """Public methods defined on ``HistoryBuffer`` (``min``, ``mean``...)."""
    return sorted(name for name, value in vars(HistoryBuffer).items()
                  if callable(value) and not name.startswith('_'))


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` limited to the methods ``HistoryBuffer`` pickles."""
    if obj is HistoryBuffer and name in _history_buffer_methods():
        return getattr(obj, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'Refused getattr({obj!r}, {name!r}) while loading a checkpoint: '
        'only the methods of mmengine HistoryBuffer '
        f'({_history_buffer_methods()}) are allowed.')


GlobalEntry = Union[Callable, Tuple[Callable, str]]


def runner_checkpoint_globals() -> List[GlobalEntry]:
    """The globals, besides torch's own, that a runner checkpoint needs."""
    numpy_dtypes = [
        cls for cls in vars(np.dtypes).values()
        if isinstance(cls, type) and issubclass(cls, np.dtype)
    ]
    return [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        np._core.multiarray._reconstruct,
        np._core.multiarray.scalar,
        np.ndarray,
        np.dtype,
        *numpy_dtypes,
    ]


def safe_load_checkpoint(filename: str,
                         map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint with ``weights_only=True``.

    Args:
        filename: Path of the checkpoint file; ``~`` is expanded.
        map_location: Passed to :func:`torch.load`. Defaults to None.

    Returns:
        Whatever the file holds: a state dict or a runner checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        pickle.UnpicklingError: The file holds a global that is neither a
            tensor, nor a plain container, nor part of a runner checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    with torch.serialization.safe_globals(runner_checkpoint_globals()):
        try:
            return torch.load(
                filename, map_location=map_location, weights_only=True)
        except torch.serialization.pickle.UnpicklingError as err:
            raise _refusal(filename, err) from None


def _refusal(filename: str, err: Exception) -> Exception:
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(
            filename)
    except Exception:  # not a zip checkpoint: torch's message says why
        unsafe = []
    allowed = {
        g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
        for g in runner_checkpoint_globals()
    }
    names = sorted(set(unsafe) - allowed) or ['(see torch message below)']
    return torch.serialization.pickle.UnpicklingError(
        f'saevit_mm refused to unpickle {filename}: it holds globals that '
        f'are not allowed in a checkpoint: {names}. Allowed are tensors, '
        'plain containers and what an mmengine runner checkpoint holds '
        '(HistoryBuffer, numpy arrays and scalars). If you trust the file, '
        'allow its classes with torch.serialization.add_safe_globals([...]) '
        'before loading, or re-save its tensors only.\n'
        f'torch said: {err}')


CheckpointLoader.register_scheme(
    prefixes='', loader=safe_load_checkpoint, force=True)
