"""mmengine 0.10.7 checkpoints on torch >= 2.6, and nothing on older torch.

torch 2.6 changed the default of ``torch.load`` to ``weights_only=True``.
mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so a runner
checkpoint (which holds mmengine's ``HistoryBuffer`` and numpy arrays and
scalars in its message hub) fails to load and ``--resume``, ``load_from`` and
``tools/test.py CONFIG CKPT`` break with ``Weights only load failed``.

What importing :mod:`saevit_mm` does to checkpoint loading:

* **torch < 2.6** (``torch.load`` defaults to ``weights_only=False`` and
  mmengine works): nothing. No loader is registered; checkpoints load exactly
  as they do without :mod:`saevit_mm`.
* **torch >= 2.6**: mmengine's local-file loader is replaced, through its
  extension point ``CheckpointLoader.register_scheme``, by
  :func:`safe_load_checkpoint`. That is mmengine's loader (``torch.load``
  without ``weights_only``, so torch's default and torch's switches apply)
  run inside ``torch.serialization.safe_globals`` with the extra globals an
  mmengine runner checkpoint needs:

  - ``mmengine.logging.HistoryBuffer`` (rebuilt from its ``__dict__``, no code
    runs);
  - numpy arrays, scalars and dtypes under the names numpy 2 writes
    (``numpy._core.multiarray._reconstruct``, ``...scalar``) **and** the names
    numpy 1.x writes (``numpy.core.multiarray._reconstruct``, ``...scalar``),
    plus ``numpy.ndarray``, ``numpy.dtype`` and the ``numpy.dtypes`` classes;
  - ``builtins.getattr`` replaced by :func:`_history_buffer_getattr`, which
    only resolves the statistics methods of ``HistoryBuffer`` (its pickled
    state names them as ``getattr(HistoryBuffer, 'mean')``) and refuses
    anything else. An unrestricted ``getattr`` would reopen arbitrary code
    execution.

  The allowlist is widened only while that call runs; ``torch.load``
  elsewhere in the process sees torch's allowlist and whatever the user added
  with ``torch.serialization.add_safe_globals``. Any other global (an
  arbitrary pickled object, ``os.system``) is refused with an
  ``UnpicklingError`` that names it. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``,
  torch's documented opt-out for trusted files, turns the restriction off
  here as it does for a plain ``torch.load``.
"""
import os.path as osp
import pickle
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY', 'safe_load_checkpoint',
    'runner_checkpoint_globals'
]


def _torch_release() -> Tuple[int, int]:
    """``(major, minor)`` of torch; a 2.6 pre-release counts as 2.6."""
    major, minor = torch.__version__.split('.')[:2]
    return int(major), int(minor)


#: torch >= 2.6: ``torch.load`` defaults to ``weights_only=True``, which is
#: what breaks mmengine 0.10.7 and the only case in which a loader is
#: registered.
TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY = _torch_release() >= (2, 6)


def _history_buffer_methods() -> List[str]:
    """Public methods defined on ``HistoryBuffer`` (``min``, ``mean``...)."""
    return sorted(name for name, value in vars(HistoryBuffer).items()
                  if callable(value) and not name.startswith('_'))


def _history_buffer_getattr(obj: Any, name: str) -> Callable:
    """``getattr`` limited to the methods ``HistoryBuffer`` pickles."""
    if obj is HistoryBuffer and name in _history_buffer_methods():
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Refused getattr({obj!r}, {name!r}) while loading a checkpoint: '
        'only the methods of mmengine HistoryBuffer '
        f'({_history_buffer_methods()}) are allowed.')


GlobalEntry = Union[Callable, Tuple[Callable, str]]


def _numpy_globals() -> List[GlobalEntry]:
    """What numpy's pickles name, under numpy 1.x and numpy 2 names.

    The two functions are taken from numpy's own ``__reduce__``, so they are
    the right objects whichever numpy is installed; each is allowed under both
    module paths (``numpy.core`` in 1.x, ``numpy._core`` in 2.x).
    """
    reconstruct = np.empty(0).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    # numpy < 1.25 has no np.dtypes: its dtypes pickle as plain np.dtype
    dtypes = getattr(np, 'dtypes', None)
    dtype_classes = [] if dtypes is None else [
        cls for cls in vars(dtypes).values()
        if isinstance(cls, type) and issubclass(cls, np.dtype)
    ]
    entries: List[GlobalEntry] = []
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries += [(reconstruct, f'{module}._reconstruct'),
                    (scalar, f'{module}.scalar')]
    return entries + [np.ndarray, np.dtype, *dtype_classes]


def runner_checkpoint_globals() -> List[GlobalEntry]:
    """The globals, besides torch's own, that a runner checkpoint needs.

    Entries are classes/functions, or ``(object, 'module.name')`` pairs for
    a name that differs from the object's own, as
    ``torch.serialization.safe_globals`` accepts them.
    """
    return [
        HistoryBuffer,
        (_history_buffer_getattr, 'builtins.getattr'),
        *_numpy_globals(),
    ]


def safe_load_checkpoint(filename: str,
                         map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint as mmengine does, runner checkpoints included.

    On torch >= 2.6 the load is torch's default, a ``weights_only`` load
    (unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set), with
    :func:`runner_checkpoint_globals` allowed during this call. On older
    torch there is no allowlist to widen: this is mmengine's own local loader
    (``torch.load`` with torch's default, an unrestricted pickle load), and
    :mod:`saevit_mm` does not register it.

    Args:
        filename: Path of the checkpoint file; ``~`` is expanded.
        map_location: Passed to :func:`torch.load`. Defaults to None.

    Returns:
        Whatever the file holds: a state dict or a runner checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        pickle.UnpicklingError: torch >= 2.6, weights-only load: the file
            holds a global that is neither a tensor, nor a plain container,
            nor part of a runner checkpoint; the message names it.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if not TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY:
        return torch.load(filename, map_location=map_location)
    # safe_globals removes its entries on exit: leave out those the user
    # already added process-wide, so that they stay allowed after this call.
    user_globals = torch.serialization.get_safe_globals()
    extra = [g for g in runner_checkpoint_globals() if g not in user_globals]
    with torch.serialization.safe_globals(extra):
        try:
            # no weights_only argument: torch's default and its environment
            # switches (TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) decide, as for any
            # plain torch.load
            return torch.load(filename, map_location=map_location)
        except pickle.UnpicklingError as err:
            if 'Weights only load failed' not in str(err):
                raise  # a broken file under a full pickle load
            raise _refusal(filename, err) from None


def _refusal(filename: str, err: Exception) -> pickle.UnpicklingError:
    """The refusal, naming the globals torch would not load.

    Called inside the ``safe_globals`` block, so the names already exclude
    torch's allowlist, the user's and ours.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # not a zip checkpoint: torch's message says why
        names = []
    return pickle.UnpicklingError(
        f'saevit_mm refused to unpickle {filename}: it holds globals that '
        'are not allowed in a checkpoint: '
        f'{sorted(names) or "(see torch message below)"}. Allowed are '
        'tensors, plain containers and what an mmengine runner checkpoint '
        'holds (HistoryBuffer, numpy arrays, scalars and dtypes). If you '
        'trust the file, allow its classes with '
        'torch.serialization.add_safe_globals([...]) before loading, or set '
        'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (a full pickle load, which can '
        f'run code).\ntorch said: {err}')


if TORCH_LOAD_DEFAULTS_TO_WEIGHTS_ONLY:
    CheckpointLoader.register_scheme(
        prefixes='', loader=safe_load_checkpoint, force=True)
