"""Distributed set-up that also works on machines without a GPU.

mmengine 0.10.7 assumes a GPU once a launcher is given: ``init_dist`` calls
``torch.cuda.set_device`` for the ``pytorch`` and ``slurm`` launchers, the
host runtimes default to the ``nccl`` backend, ``Runner.wrap_model`` passes
``device_ids=[LOCAL_RANK]`` to DDP and DDP refuses ``SyncBatchNorm`` on CPU
modules. :func:`setup_distributed` fixes all four before the Runner is built,
and only when the device is the CPU; on GPU (or NPU/MLU) machines it does
nothing and mmengine's own set-up runs unchanged.

On CPU it:

1. reads rank, world size and master address from the launcher's
   environment (``torchrun``; ``srun`` for slurm; ``mpirun`` for mpi);
2. switches the backend to ``gloo`` (``nccl`` cannot run without CUDA);
3. initialises the default process group itself, so that the Runner's
   ``setup_env`` finds one and skips ``init_dist``;
4. sets ``model_wrapper_cfg`` to ``MMDistributedDataParallel`` with
   ``device_ids=None``;
5. rewrites ``SyncBN``/``MMSyncBN`` norm layers in ``cfg.model`` to ``BN``.

:func:`close_distributed` ends the process group after a finished run, on any
device.
"""
import datetime
import os
import subprocess
from typing import Any, Dict, Mapping, Optional, Tuple

import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log

__all__ = [
    'LAUNCHERS', 'CPU_BACKENDS', 'launcher_env', 'revert_sync_bn_cfg',
    'setup_distributed', 'close_distributed'
]

#: Launchers accepted by ``tools/train.py`` and ``tools/test.py``.
LAUNCHERS: Tuple[str, ...] = ('none', 'pytorch', 'slurm', 'mpi')
#: torch.distributed backends that run on CPU tensors.
CPU_BACKENDS: Tuple[str, ...] = ('gloo', 'mpi')
#: Norm types that DDP refuses on CPU; they become ``BN`` there.
SYNC_BN_TYPES: Tuple[str, ...] = ('SyncBN', 'MMSyncBN')
DEFAULT_MASTER_PORT = '29500'
#: How each launcher is started, for error messages.
_STARTERS = {
    'pytorch': 'torchrun (tools/dist_train.sh, tools/dist_test.sh)',
    'slurm': 'srun (tools/slurm_train.sh, tools/slurm_test.sh)',
    'mpi': 'mpirun',
}


def _require(environ: Mapping[str, str], keys: Tuple[str, ...],
             launcher: str) -> None:
    missing = [key for key in keys if key not in environ]
    if missing:
        raise KeyError(
            f'--launcher {launcher} needs the environment variables '
            f'{list(keys)}, but {missing} are not set. Start the job with '
            f'{_STARTERS[launcher]}, or use --launcher none for one process.')


def _slurm_master_addr(node_list: str) -> str:
    """First host of a slurm node list, as ``scontrol`` expands it."""
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', node_list],
                             capture_output=True,
                             text=True,
                             check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as err:
        raise RuntimeError(
            f'Could not expand SLURM_NODELIST={node_list!r} with scontrol '
            f'({err}). Set MASTER_ADDR to the first node of the job.') from err
    if not out:
        raise RuntimeError(f'scontrol returned no host for {node_list!r}; '
                           'set MASTER_ADDR to the first node of the job.')
    return out[0]


def launcher_env(
        launcher: str,
        environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The ``env://`` variables torch needs, read from a launcher's own.

    Args:
        launcher: One of ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        environ: The environment to read. Defaults to ``os.environ``.

    Returns:
        ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
        ``MASTER_PORT`` as strings. Values already present in ``environ``
        win over derived ones.

    Raises:
        ValueError: ``launcher`` is not a distributed launcher.
        KeyError: A variable the launcher should have set is missing.
    """
    env = dict(os.environ if environ is None else environ)
    if launcher == 'pytorch':
        _require(env, ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
                 launcher)
        derived = dict(LOCAL_RANK=env.get('LOCAL_RANK', env['RANK']))
    elif launcher == 'slurm':
        _require(env, ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
                 launcher)
        derived = dict(
            RANK=env['SLURM_PROCID'],
            WORLD_SIZE=env['SLURM_NTASKS'],
            LOCAL_RANK=env.get('SLURM_LOCALID', '0'),
            MASTER_PORT=DEFAULT_MASTER_PORT)
        if 'MASTER_ADDR' not in env:
            derived['MASTER_ADDR'] = _slurm_master_addr(env['SLURM_NODELIST'])
    elif launcher == 'mpi':
        _require(env, ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
                       'OMPI_COMM_WORLD_LOCAL_RANK', 'MASTER_ADDR'), launcher)
        derived = dict(
            RANK=env['OMPI_COMM_WORLD_RANK'],
            WORLD_SIZE=env['OMPI_COMM_WORLD_SIZE'],
            LOCAL_RANK=env['OMPI_COMM_WORLD_LOCAL_RANK'],
            MASTER_PORT=DEFAULT_MASTER_PORT)
    else:
        raise ValueError(f'launcher={launcher!r} is not a distributed '
                         f'launcher; allowed are {list(LAUNCHERS[1:])}.')
    derived.update({
        key: env[key]
        for key in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                    'MASTER_PORT') if key in env
    })
    return derived


def revert_sync_bn_cfg(node: Any) -> int:
    """Replace ``SyncBN``/``MMSyncBN`` norm types by ``BN`` in place.

    Walks nested dicts and lists (a model config), keeps every other key of
    the norm config (``requires_grad``, ``eps``, ``momentum``).

    Args:
        node: A config node: dict, list, tuple or a leaf.

    Returns:
        How many norm configs were changed.
    """
    changed = 0
    if isinstance(node, dict):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = 'BN'
            changed += 1
        for value in node.values():
            changed += revert_sync_bn_cfg(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            changed += revert_sync_bn_cfg(value)
    return changed


def _cpu_backend(cfg: Config) -> Tuple[str, Dict[str, Any]]:
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}) or {})
    backend = dist_cfg.pop('backend', 'gloo')
    if backend not in CPU_BACKENDS:
        print_log(
            f'env_cfg.dist_cfg.backend={backend!r} needs CUDA; this run is '
            f'on CPU, so it uses "gloo" (allowed on CPU: '
            f'{list(CPU_BACKENDS)}).',
            logger='current')
        backend = 'gloo'
    timeout = dist_cfg.pop('timeout', None)
    kwargs: Dict[str, Any] = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    return backend, kwargs


def setup_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare ``cfg`` and the process group for a CPU distributed run.

    Call it after the config is final and before ``Runner.from_cfg``.

    Args:
        cfg: The config; ``env_cfg``, ``model_wrapper_cfg`` and ``model``
            are updated in place on CPU.
        launcher: The ``--launcher`` value.

    Returns:
        True if this function initialised a CPU process group; False when
        there is nothing to do (``launcher='none'``, an accelerator is
        present, or a process group already exists).

    Raises:
        ValueError: ``launcher`` is unknown, or ``cfg.sync_bn`` asks for
            SyncBN on CPU.
        KeyError: The launcher's environment variables are missing.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(
            f'launcher={launcher!r}; allowed are {list(LAUNCHERS)}.')
    if launcher == 'none' or get_device() != 'cpu':
        return False
    if torch_dist.is_available() and torch_dist.is_initialized():
        return False
    if not torch_dist.is_available():
        raise RuntimeError('This torch build has no torch.distributed; '
                           'run with --launcher none.')
    if cfg.get('sync_bn') is not None:
        raise ValueError(
            f'cfg.sync_bn={cfg.sync_bn!r} converts norms to SyncBatchNorm, '
            'which DDP refuses on CPU. Remove sync_bn for CPU runs.')

    os.environ.update(launcher_env(launcher))
    backend, kwargs = _cpu_backend(cfg)
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    cfg.env_cfg.dist_cfg['backend'] = backend

    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters',
                       cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper

    reverted = revert_sync_bn_cfg(cfg.model)
    torch_dist.init_process_group(
        backend=backend,
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)
    print_log(
        f'CPU distributed run: backend={backend}, rank '
        f'{torch_dist.get_rank()}/{torch_dist.get_world_size()}, '
        f'{reverted} SyncBN config(s) -> BN, model wrapper '
        f'{wrapper["type"]}(device_ids=None).',
        logger='current')
    return True


def close_distributed() -> None:
    """Destroy the default process group, if one exists, at the normal end of
    a run.

    torch asks for this before exit: without it, gloo's worker threads may
    still hold work while the interpreter finalises, and the process aborts
    (SIGABRT, "terminate called without an active exception") after a
    finished run. Call it only after success: a rank that failed must not
    wait in a collective shutdown for ranks that did not.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
