"""mmengine's checkpoint loading, restricted to what a checkpoint may hold.

Importing :mod:`saevit_mm` registers :func:`safe_load_checkpoint` for local
files (prefix ``''``) and :func:`safe_load_from_http` for ``http://`` and
``https://`` through mmengine's extension point
``CheckpointLoader.register_scheme``, on every torch version. Every path that
reads a checkpoint through mmengine therefore goes through them: ``init_cfg``
(``Pretrained``), ``load_from``, ``--resume``, ``tools/test.py CONFIG CKPT``
and the hosts' Inferencers.

Each file is unpickled once, by ``torch.load`` with the restricted
``pickle_module`` of :mod:`.checkpoint_unpickler`, the one place that decides
what a checkpoint may contain. That is:

* **safe on torch 2.1**, where ``torch.load`` defaults to a full pickle load
  (a ``__reduce__`` payload runs), and for URLs on any torch (mmengine's URL
  loader passes ``weights_only=False``);
* **mmengine runner checkpoints load on torch >= 2.6**, where
  ``weights_only=True`` by default refuses their ``HistoryBuffer`` and numpy
  values;
* **checkpoints move between numpy 1 and numpy 2** in both directions.

``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, torch's opt-out for trusted files,
turns the restriction off here too (a full pickle load), and
``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` gives torch's own weights-only load
(torch >= 2.6; stricter: runner checkpoints do not load under it). No
process-wide state of torch is changed: a ``torch.load`` elsewhere behaves
as without :mod:`saevit_mm`.
"""
import os
import os.path as osp
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.runner.checkpoint import CheckpointLoader

from . import checkpoint_unpickler

__all__ = [
    'safe_load_checkpoint', 'safe_load_from_http', 'download_checkpoint'
]

_TRUE = ('1', 'y', 'yes', 'true')


def _env_flag(name: str) -> bool:
    return os.getenv(name, '0').lower() in _TRUE


def safe_load_checkpoint(filename: str,
                         map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint, allowing only what a checkpoint may hold.

    Args:
        filename: Path of the checkpoint file; ``~`` is expanded.
        map_location: Passed to :func:`torch.load`. Defaults to None.

    Returns:
        Whatever the file holds: a state dict or a runner checkpoint.

    Raises:
        FileNotFoundError: The file does not exist.
        checkpoint_unpickler.CheckpointRefused: The file names a global that
            is not allowed (:func:`~.checkpoint_unpickler.resolve_global`);
            the message names the file and the global. Nothing of the
            file's code has run.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    if _env_flag('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'):
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    if _env_flag('TORCH_FORCE_WEIGHTS_ONLY_LOAD'):
        return torch.load(filename, map_location=map_location)
    try:
        return torch.load(
            filename,
            map_location=map_location,
            pickle_module=checkpoint_unpickler,
            weights_only=False)
    except checkpoint_unpickler.CheckpointRefused as err:
        raise checkpoint_unpickler.CheckpointRefused(
            f'saevit_mm refused to unpickle {filename}: {err}') from None


def download_checkpoint(url: str,
                        model_dir: Optional[str] = None,
                        progress: bool = True) -> str:
    """Download ``url`` once into torch hub's cache, as mmengine does.

    Args:
        url: ``http(s)://`` address of the file.
        model_dir: Where to keep it. Defaults to
            ``<torch.hub.get_dir()>/checkpoints``.
        progress: Show a progress bar.

    Returns:
        The path of the cached file.
    """
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        torch.hub.download_url_to_file(url, cached, None, progress=progress)
    return cached


def safe_load_from_http(filename: str,
                        map_location: Optional[Any] = None,
                        model_dir: Optional[str] = None,
                        progress: bool = os.isatty(0)) -> Any:
    """mmengine's ``load_from_http`` with :func:`safe_load_checkpoint`: rank
    0 downloads first, the other ranks after a barrier, all load the cached
    file."""
    rank, world_size = get_dist_info()
    if rank == 0:
        path = download_checkpoint(filename, model_dir, progress)
    if world_size > 1:
        barrier()
        if rank > 0:
            path = download_checkpoint(filename, model_dir, progress)
    return safe_load_checkpoint(path, map_location)


CheckpointLoader.register_scheme(
    prefixes='', loader=safe_load_checkpoint, force=True)
CheckpointLoader.register_scheme(
    prefixes=('http://', 'https://'), loader=safe_load_from_http, force=True)
