"""Helpers for the end-to-end tests: demo data, tool runs, metrics.

Not a test module. The demo data is generated once per pytest session into
the session's base temp directory and reused by every test that needs it.
"""
import math
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
from demo_data import DemoDataSpec, make_demo_data
from demo_steps import REPO, Step, StepFailed, last_checkpoint  # noqa: F401
from demo_steps import read_test_metrics, run_step  # noqa: F401

CONFIGS = REPO / 'configs'
DEMO_CONFIGS = {
    'cls':
    CONFIGS / 'demo' / 'saevit-t_1xb16-5e_demo-in1k-64px.py',
    'retinanet':
    CONFIGS / 'demo' / 'retinanet_saevit-t_fpn_1xb2-4e_demo-coco.py',
    'mask-rcnn':
    CONFIGS / 'demo' / 'mask-rcnn_saevit-t_fpn_1xb2-4e_demo-coco.py',
    'fpn':
    CONFIGS / 'demo' / 'fpn_saevit-t_1xb4-800_demo-ade20k-128x128.py',
    'upernet':
    CONFIGS / 'demo' / 'upernet_saevit-t_1xb4-400_demo-ade20k-128x128.py',
}

#: --cfg-options that shrink each demo run to a handful of iterations.
TINY_OPTIONS: Dict[str, List[str]] = {
    'cls': [
        # two epochs of four batches: the demo's quarter-epoch warm-up needs
        # at least four iterations an epoch (it ends at int(0.25 * 4) = 1)
        'train_cfg.max_epochs=2',
        'train_dataloader.dataset.indices=8',
        'train_dataloader.batch_size=2',
        'val_dataloader.batch_size=8',
        'test_dataloader.batch_size=8',
        'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0',
        'default_hooks.logger.interval=1'
    ],
    'det': [
        'train_cfg.max_epochs=1', 'train_dataloader.dataset.indices=2',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        'test_dataloader.dataset.indices=2', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1'
    ],
    'seg': [
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=2'
    ],
}


def demo_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny demo data of all three tasks, made once per session."""
    root = tmp_path_factory.getbasetemp() / 'demo_data'
    done = root / '.complete'
    if not done.exists():
        make_demo_data(root, spec=DemoDataSpec.tiny())
        done.touch()
    return root


def tool_env(data_root: Optional[Path] = None) -> Dict[str, str]:
    """Environment for a tool subprocess: repo importable, CPU, demo root."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (str(REPO), env.get('PYTHONPATH')) if p)
    env['CUDA_VISIBLE_DEVICES'] = '-1'
    env.setdefault('OMP_NUM_THREADS', '1')  # see README: faster on 2 cores
    if data_root is not None:
        env['SAEVIT_DEMO_DATA'] = str(data_root)
    return env


def run_tool(args: Sequence[str],
             data_root: Optional[Path] = None,
             timeout: float = 600,
             python: bool = True,
             env_extra: Optional[Dict[str, str]] = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """Run a tool from the repository root (with ``sys.executable`` unless
    ``python`` is False), as the demo does (:func:`demo_steps.run_step`);
    with ``check``, fail the test on a non-zero exit, showing the end of the
    output. The output is in the result's ``stdout``."""
    env = tool_env(data_root)
    env.update(env_extra or {})
    with tempfile.TemporaryDirectory() as tmp:
        step = Step(
            'tool', args, Path(tmp) / 'tool.log', env=env, timeout=timeout,
            **({} if python else dict(interpreter=())))
        run = run_step(step, poll=0.2, check=False)
        output = step.log.read_text(errors='replace')
    if check and run.returncode != 0:
        tail = '\n'.join(output.splitlines()[-60:])
        pytest.fail(f'{" ".join(run.command)} exited with {run.returncode}:'
                    f'\n{tail}')
    return subprocess.CompletedProcess(run.command, run.returncode, output)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago: the
    ``MASTER_PORT`` of a distributed test run, so that runs going on at the
    same time do not meet on one port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_dist_train(config: Path,
                   nproc: int,
                   work_dir: Path,
                   options: Sequence[str] = (),
                   args: Sequence[str] = (),
                   data_root: Optional[Path] = None,
                   timeout: float = 600,
                   env_extra: Optional[Dict[str, str]] = None,
                   check: bool = True) -> subprocess.CompletedProcess:
    """``bash tools/dist_train.sh CONFIG NPROC --work-dir WORK_DIR *ARGS
    --cfg-options *OPTIONS`` (the launcher a user runs: torchrun, gloo on
    CPU) with this interpreter and a free master port; see
    :func:`run_tool`."""
    env = dict(PYTHON=sys.executable, PORT=str(free_port()))
    env.update(env_extra or {})
    return run_tool([
        'bash', 'tools/dist_train.sh', config,
        str(nproc), '--work-dir', work_dir, *args,
        *(['--cfg-options', *options] if options else [])
    ],
                    data_root=data_root,
                    python=False,
                    timeout=timeout,
                    env_extra=env,
                    check=check)


def assert_finite(metrics: Dict[str, float], keys: Sequence[str]) -> None:
    """Each key is present and a finite number."""
    for key in keys:
        assert key in metrics, f'{key} missing from {sorted(metrics)}'
        value = float(metrics[key])
        assert math.isfinite(value), f'{key}={value} is not finite'


def train_demo(tmp_path_factory: pytest.TempPathFactory,
               name: str,
               task: str,
               extra: Sequence[str] = ()) -> Path:
    """Train ``DEMO_CONFIGS[name]`` for a handful of iterations through
    ``tools/train.py``, once per session; returns the work directory."""
    data_root = demo_data_root(tmp_path_factory)
    work_dir = tmp_path_factory.getbasetemp() / f'train_{name}'
    done = work_dir / '.complete'
    if not done.exists():
        run_tool([
            'tools/train.py', DEMO_CONFIGS[name], '--work-dir', work_dir,
            '--cfg-options', *TINY_OPTIONS[task], *extra
        ],
                 data_root=data_root)
        done.touch()
    return work_dir
