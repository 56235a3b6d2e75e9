"""The steps of the demo and of the ablation sweep: standard tools run as
subprocesses, exactly as a user would type them.

A module of ``tools/demo.py`` and ``tools/analysis_tools/ablation.py`` (and
of the end-to-end tests), not a command. Training progress is read from the
log the Runner writes; metrics from the JSON file mmengine's ``LoggerHook``
dumps after a test. Runs that go side by side are processes polled from one
thread (:func:`run_lanes`): nothing in this process runs in two threads at
once (mmengine's ``Config.fromfile`` is not thread-safe), and the first step
that fails ends the others and raises :class:`StepFailed`.
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

REPO = Path(__file__).resolve().parents[1]
# "Iter(train) [ 40/300]" (iteration based) or "Epoch(train) [2][ 5/20]"
_ITER_RE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\]')
_EPOCH_RE = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\]')


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
    """What one finished step did: seconds, exit status, last log lines."""
    step: Step
    seconds: float
    returncode: int
    tail: List[str] = field(default_factory=list)

    @property
    def command(self) -> List[str]:
        return self.step.command


class StepFailed(RuntimeError):
    """A step exited with an error (or was ended because another failed)."""

    def __init__(self, run: ToolRun):
        self.run = run
        super().__init__(
            f'{run.step.name} failed (exit {run.returncode}); command:\n  '
            f'{" ".join(run.command)}\nlog: {run.step.log}, last lines:\n' +
            '\n'.join(f'  | {line}' for line in run.tail))


#: A lane is a generator that yields the steps of one task in order, receives
#: each step's :class:`ToolRun` and returns the task's result.
Lane = Generator[Step, ToolRun, Any]


class _Running:
    """A started step and the process running it (in its own process
    group, so that killing it also ends its dataloader workers)."""

    def __init__(self, step: Step):
        self.step, self.start = step, time.time()
        step.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = open(step.log, 'w')
        self.proc = subprocess.Popen(
            step.command,
            cwd=REPO,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, **step.env),
            start_new_session=True)

    def poll(self) -> bool:
        """Report progress; whether the process ended (killed once past
        its timeout)."""
        if self.step.on_progress is not None:
            progress = _progress(
                self.step.log.read_text(errors='replace'),
                self.step.max_epochs)
            if progress:
                self.step.on_progress(*progress)
        if self.proc.poll() is not None:
            return True
        timeout = self.step.timeout
        if timeout is not None and time.time() - self.start > timeout:
            self.kill()
            with open(self.step.log, 'a') as log:
                log.write(f'\n[killed: still running after {timeout} s]\n')
            return True
        return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self._out.close()

    def finish(self) -> ToolRun:
        self.kill()  # a no-op for an ended process, but for its log file
        text = self.step.log.read_text(errors='replace').splitlines()
        return ToolRun(self.step,
                       time.time() - self.start, self.proc.returncode,
                       text[-30:])


def run_lanes(lanes: Mapping[str, Lane],
              poll: float = 1.0,
              check: bool = True) -> Dict[str, Any]:
    """Run the lanes side by side, each one step at a time.

    Args:
        lanes: Name -> lane (see :data:`Lane`).
        poll: Seconds between looks at the running processes.
        check: Raise :class:`StepFailed` when a step exits with an error,
            after killing the steps still running in other lanes; otherwise
            the lane receives the failed run.

    Returns:
        Name -> the value the lane returned.
    """
    results: Dict[str, Any] = {}
    running: Dict[str, _Running] = {}

    def advance(name: str, run: Optional[ToolRun]) -> None:
        try:
            step = next(lanes[name]) if run is None else lanes[name].send(run)
            running[name] = _Running(step)
        except StopIteration as stop:
            results[name] = stop.value

    try:
        for name in lanes:
            advance(name, None)
        while running:
            time.sleep(poll)
            for name in [n for n, r in running.items() if r.poll()]:
                run = running.pop(name).finish()
                if check and run.returncode != 0:
                    raise StepFailed(run)
                advance(name, run)
    finally:  # a failure, an error in a lane, or Ctrl-C: end the others
        for current in running.values():
            current.kill()
    return results


def run_step(step: Step, poll: float = 1.0, check: bool = True) -> ToolRun:
    """Run one step on its own (see :func:`run_lanes`)."""

    def lane() -> Lane:
        return (yield step)

    return run_lanes(dict(step=lane()), poll, check)['step']


def train_test(name: str,
               config: Path,
               work_dir: Path,
               options: Sequence[str] = (),
               env: Optional[Mapping[str, str]] = None,
               test_args: Sequence[str] = (),
               **step_kwargs) -> Lane:
    """The lane of one run: ``tools/train.py``, then ``tools/test.py`` on
    the last checkpoint, both with ``--cfg-options options``.

    ``step_kwargs`` (e.g. ``on_progress``) go to the training step.

    Returns:
        ``(training ToolRun, test ToolRun, test metrics)``.
    """
    opts = ['--cfg-options', *options] if options else []
    train = yield Step(
        f'training {name}',
        ['tools/train.py', config, '--work-dir', work_dir, *opts],
        work_dir / 'train.log', env or {}, **step_kwargs)
    test = yield Step(f'testing {name}', [
        'tools/test.py', config,
        last_checkpoint(work_dir), '--work-dir', work_dir, *test_args, *opts
    ], work_dir / 'test.log', env or {})
    return train, test, read_test_metrics(work_dir)


def _progress(text: str, max_epochs: Optional[int]):
    iters = _ITER_RE.findall(text)
    if iters:
        return tuple(map(int, iters[-1]))
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
    """Metrics of the newest test run in ``work_dir``: mmengine's
    ``LoggerHook`` dumps them to ``<timestamp>/<timestamp>.json``, and
    timestamps (``%Y%m%d_%H%M%S``) sort in time order."""
    runs = sorted(
        p.parent for p in work_dir.glob('*/*.json') if p.stem == p.parent.name)
    if not runs:
        raise FileNotFoundError(
            f'no <timestamp>/<timestamp>.json test metrics in {work_dir}')
    lines = (runs[-1] / f'{runs[-1].name}.json').read_text().splitlines()
    return json.loads(lines[-1])


def train_losses(work_dir: Path) -> Dict[str, List[float]]:
    """``{'step': [...], 'loss': [...]}`` of the newest training run (a
    test run writes its own ``scalars.json``, without losses)."""
    for path in sorted(
            work_dir.glob('*/vis_data/scalars.json'),
            key=lambda p: p.parent.parent.name,
            reverse=True):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        records = [r for r in records if 'loss' in r and 'step' in r]
        if records:
            return dict(
                step=[r['step'] for r in records],
                loss=[r['loss'] for r in records])
    return dict(step=[], loss=[])
