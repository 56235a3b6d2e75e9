"""Helpers for the end-to-end tests: demo data, tool runs, metrics.

Not a test module. The demo data is generated once per pytest session into
the session's base temp directory and reused by every test that needs it.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
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
    demo = pytest.importorskip('saevit_mm.demo')
    root = tmp_path_factory.getbasetemp() / 'demo_data'
    done = root / '.complete'
    if not done.exists():
        demo.make_demo_data(root, spec=demo.DemoDataSpec.tiny())
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
    ``python`` is False); with ``check``, fail the test on a non-zero exit,
    showing the end of the output."""
    command = [sys.executable, *map(str, args)] if python else list(
        map(str, args))
    env = tool_env(data_root)
    env.update(env_extra or {})
    proc = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    if check and proc.returncode != 0:
        tail = '\n'.join(proc.stdout.splitlines()[-60:])
        pytest.fail(f'{" ".join(command)} exited with {proc.returncode}:\n'
                    f'{tail}')
    return proc


def read_test_metrics(work_dir: Path) -> Dict[str, float]:
    """Metrics of the latest test run in ``work_dir`` (LoggerHook JSON)."""
    runs = sorted(p for p in work_dir.iterdir()
                  if p.is_dir() and (p / f'{p.name}.json').exists())
    assert runs, f'no <timestamp>/<timestamp>.json in {work_dir}'
    latest = runs[-1]
    lines = (latest / f'{latest.name}.json').read_text().splitlines()
    return json.loads(lines[-1])


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


def last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint mmengine's ``last_checkpoint`` file points to."""
    pointer = work_dir / 'last_checkpoint'
    assert pointer.exists(), f'no checkpoint was saved in {work_dir}'
    return Path(pointer.read_text().strip())
