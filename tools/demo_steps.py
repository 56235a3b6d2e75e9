"""The steps of the end-to-end demo, each run through the standard tools.

A module of ``tools/demo.py`` (and of the end-to-end tests), not a command.

Every step is a subprocess of ``tools/train.py``, ``tools/test.py`` or
``tools/model_converters/cls_to_backbone.py``, exactly as a user would type
it, so the demo exercises the real entry points. Progress is read from the
log the Runner writes; metrics from the JSON file mmengine's ``LoggerHook``
dumps after a test.

Runs that go side by side are *processes* polled from one thread
(:func:`run_lanes`): nothing in this process runs in two threads at once
(mmengine's ``Config.fromfile`` is not thread-safe), and the first step that
fails ends the other runs at once and raises :class:`StepFailed`.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (Any, Callable, Dict, Generator, List, Mapping, Optional,
                    Sequence)

__all__ = [
    'Step', 'ToolRun', 'StepFailed', 'Lane', 'run_lanes', 'run_step',
    'last_checkpoint', 'read_test_metrics', 'train_losses'
]

REPO = Path(__file__).resolve().parents[1]
# "Iter(train) [ 40/300]" (iteration based) or "Epoch(train) [2][ 5/20]"
_ITER_RE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\]')
_EPOCH_RE = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')
#: Lines of a failed step's log shown in the error.
TAIL_LINES = 30


@dataclass
class Step:
    """One tool invocation: ``python <args>`` from the repository root.

    Attributes:
        name: What the step does, e.g. ``'training retinanet'``.
        args: The script and its arguments, e.g. ``['tools/train.py', cfg]``.
        log: File that receives stdout and stderr.
        env: Variables set on top of this process's environment.
        on_progress: Called with ``(done, total)`` training iterations as the
            Runner logs them.
        max_epochs: For epoch-based configs, the number of epochs, so the
            total can be derived from the iterations per epoch.
        timeout: Seconds after which the step is killed and fails.
        interpreter: What runs ``args``; ``()`` runs ``args`` as a command.
    """
    name: str
    args: Sequence[Any]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)
    on_progress: Optional[Callable[[int, int], None]] = None
    max_epochs: Optional[int] = None
    timeout: Optional[float] = None
    interpreter: Sequence[str] = (sys.executable, )

    @property
    def command(self) -> List[str]:
        return [*self.interpreter, *map(str, self.args)]


@dataclass
class ToolRun:
    """What one finished step did."""
    step: Step
    seconds: float
    returncode: int
    tail: List[str] = field(default_factory=list)

    @property
    def command(self) -> List[str]:
        return self.step.command

    @property
    def log(self) -> Path:
        return self.step.log


class StepFailed(RuntimeError):
    """A step exited with an error (or was ended because another failed)."""

    def __init__(self, run: ToolRun):
        self.run = run
        super().__init__(
            f'{run.step.name} failed (exit {run.returncode}); command:\n  '
            f'{" ".join(run.command)}\nlog: {run.log}, last lines:\n' +
            '\n'.join(f'  | {line}' for line in run.tail))


#: A lane is a generator that yields the steps of one task in order, receives
#: each step's :class:`ToolRun` and returns the task's result.
Lane = Generator[Step, ToolRun, Any]


class _Running:
    """A started step and the process running it."""

    def __init__(self, step: Step):
        self.step = step
        self.start = time.time()
        step.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(step.log, 'w')
        self.proc = subprocess.Popen(
            step.command,
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **step.env},
            start_new_session=True)  # its own group: ended with its workers

    def done(self) -> bool:
        """Whether the process ended; kills it once past its timeout."""
        if self.proc.poll() is not None:
            return True
        timeout = self.step.timeout
        if timeout is not None and time.time() - self.start > timeout:
            self.kill()
            with open(self.step.log, 'a') as log:
                log.write(f'\n[killed: still running after {timeout} s]\n')
            return True
        return False

    def report_progress(self) -> None:
        if self.step.on_progress is None:
            return
        progress = _progress(
            self.step.log.read_text(errors='replace'), self.step.max_epochs)
        if progress:
            self.step.on_progress(*progress)

    def finish(self) -> ToolRun:
        self.proc.wait()
        self._out.close()
        text = self.step.log.read_text(errors='replace').splitlines()
        return ToolRun(self.step,
                       time.time() - self.start, self.proc.returncode,
                       text[-TAIL_LINES:])

    def kill(self) -> None:
        """End the process and its workers (dataloader processes)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self._out.close()


def run_lanes(lanes: Mapping[str, Lane], poll: float = 1.0) -> Dict[str, Any]:
    """Run the lanes side by side, each one step at a time.

    The lanes' code (config reading, result parsing) runs in this thread
    only; their steps run as concurrent processes.

    Args:
        lanes: Name -> lane (see :data:`Lane`).
        poll: Seconds between looks at the running processes.

    Returns:
        Name -> the value the lane returned.

    Raises:
        StepFailed: A step exited with a non-zero status. The steps still
            running in other lanes are killed first.
    """
    results: Dict[str, Any] = {}
    running: Dict[str, _Running] = {}

    def advance(name: str, lane: Lane, run: Optional[ToolRun]) -> None:
        try:
            step = next(lane) if run is None else lane.send(run)
        except StopIteration as stop:
            results[name] = stop.value
            return
        running[name] = _Running(step)

    try:
        for name, lane in lanes.items():
            advance(name, lane, None)
        while running:
            time.sleep(poll)
            for name in list(running):
                current = running[name]
                current.report_progress()
                if not current.done():
                    continue
                run = current.finish()
                del running[name]
                if run.returncode != 0:
                    raise StepFailed(run)
                advance(name, lanes[name], run)
    finally:  # a failure, an error in a lane, or Ctrl-C: end the others
        for current in running.values():
            current.kill()
    return results


def run_step(step: Step, poll: float = 1.0, check: bool = True) -> ToolRun:
    """Run one step on its own.

    Raises:
        StepFailed: With ``check``, when the step exits with an error.
    """
    current = _Running(step)
    try:
        while not current.done():
            current.report_progress()
            time.sleep(poll)
    finally:  # Ctrl-C or an error in a progress callback
        current.kill()
    run = current.finish()
    if check and run.returncode != 0:
        raise StepFailed(run)
    return run


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


def read_test_metrics(work_dir: Path) -> Dict[str, float]:
    """Metrics of the newest test run in ``work_dir``.

    mmengine's ``LoggerHook`` dumps them to ``<work_dir>/<timestamp>/
    <timestamp>.json`` after the test loop; timestamps (``%Y%m%d_%H%M%S``)
    sort in time order.
    """
    runs = sorted(p.parent for p in work_dir.glob('*/*.json')
                  if p.stem == p.parent.name)
    if not runs:
        raise FileNotFoundError(
            f'no <timestamp>/<timestamp>.json test metrics in {work_dir}')
    lines = (runs[-1] / f'{runs[-1].name}.json').read_text().splitlines()
    return json.loads(lines[-1])


def train_losses(work_dir: Path) -> Dict[str, List[float]]:
    """``{'step': [...], 'loss': [...]}`` of the newest training run.

    A test run writes its own ``scalars.json`` without losses, so the newest
    file that holds any loss is taken.
    """
    scalars = sorted(
        work_dir.glob('*/vis_data/scalars.json'),
        key=lambda p: p.parent.parent.name,  # newest timestamp first
        reverse=True)
    for path in scalars:
        records = [json.loads(line) for line in path.read_text().splitlines()]
        records = [r for r in records if 'loss' in r and 'step' in r]
        if records:
            return dict(step=[r['step'] for r in records],
                        loss=[r['loss'] for r in records])
    return dict(step=[], loss=[])
