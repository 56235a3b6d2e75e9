"""The steps of the end-to-end demo, each run through the standard tools.

Every step is a subprocess of ``tools/train.py``, ``tools/test.py`` or
``tools/model_converters/cls_to_backbone.py``, exactly as a user would type
it, so the demo exercises the real entry points. Progress is read from the
log the Runner writes; metrics from the JSON file mmengine's ``LoggerHook``
dumps after a test.
"""
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

__all__ = [
    'ToolRun', 'run_tool', 'last_checkpoint', 'test_metrics', 'train_losses'
]

REPO = Path(__file__).resolve().parents[2]
# "Iter(train) [ 40/300]" (iteration based) or "Epoch(train) [2][ 5/20]"
_ITER_RE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\]')
_EPOCH_RE = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')


@dataclass
class ToolRun:
    """What one tool invocation did."""
    command: List[str]
    log: Path
    seconds: float
    returncode: int
    tail: List[str] = field(default_factory=list)


def run_tool(args: Sequence[str],
             log: Path,
             on_progress: Optional[Callable[[int, int], None]] = None,
             max_epochs: Optional[int] = None,
             poll: float = 1.0,
             env: Optional[Dict[str, str]] = None) -> ToolRun:
    """Run ``python <args>`` from the repository root, logging to ``log``.

    Args:
        args: The script and its arguments, e.g. ``['tools/train.py', cfg]``.
        log: File that receives stdout and stderr.
        on_progress: Called with ``(done, total)`` training iterations as the
            Runner logs them. Defaults to None.
        max_epochs: For epoch-based configs, the number of epochs, so the
            total can be derived from the iterations per epoch. Defaults to
            None.
        poll: Seconds between looks at the log. Defaults to 1.0.
        env: Variables set for the tool on top of this process's
            environment (e.g. ``OMP_NUM_THREADS``). Defaults to None.

    Returns:
        The run; ``returncode`` is not checked here.
    """
    command = [sys.executable, *map(str, args)]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})})
        while proc.poll() is None:
            time.sleep(poll)
            if on_progress is not None:
                progress = _progress(
                    log.read_text(errors='replace'), max_epochs)
                if progress:
                    on_progress(*progress)
    text = log.read_text(errors='replace').splitlines()
    return ToolRun(command, log,
                   time.time() - start, proc.returncode, text[-30:])


def _progress(text: str, max_epochs: Optional[int]):
    iters = _ITER_RE.findall(text)
    if iters:
        done, total = iters[-1]
        return int(done), int(total)
    epochs = _EPOCH_RE.findall(text)
    if epochs and max_epochs:
        epoch, done, per_epoch = map(int, epochs[-1])
        return (epoch - 1) * per_epoch + done, max_epochs * per_epoch
    return None


def last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint named in ``work_dir/last_checkpoint``."""
    marker = work_dir / 'last_checkpoint'
    if not marker.exists():
        raise FileNotFoundError(
            f'no {marker}: training wrote no checkpoint in {work_dir}')
    return Path(marker.read_text().strip())


def test_metrics(work_dir: Path) -> Dict[str, float]:
    """Metrics of the newest test run in ``work_dir``.

    mmengine's ``LoggerHook`` dumps them to ``<work_dir>/<timestamp>/
    <timestamp>.json`` after the test loop.
    """
    dumps = sorted(work_dir.glob('*/*.json'), key=lambda p: p.stat().st_mtime)
    dumps = [p for p in dumps if p.stem == p.parent.name]
    if not dumps:
        raise FileNotFoundError(f'no test metrics JSON under {work_dir}')
    return json.loads(dumps[-1].read_text().splitlines()[-1])


def train_losses(work_dir: Path) -> Dict[str, List[float]]:
    """``{'step': [...], 'loss': [...]}`` of the newest training run.

    A test run writes its own ``scalars.json`` without losses, so the newest
    file that holds any loss is taken.
    """
    scalars = sorted(
        work_dir.glob('*/vis_data/scalars.json'),
        key=lambda p: p.stat().st_mtime,
        reverse=True)
    for path in scalars:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        records = [r for r in records if 'loss' in r and 'step' in r]
        if records:
            return dict(step=[r['step'] for r in records],
                        loss=[r['loss'] for r in records])
    return dict(step=[], loss=[])
