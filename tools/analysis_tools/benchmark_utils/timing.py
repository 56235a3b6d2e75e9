"""Timing primitives: synchronised timers, interleaved repeats, statistics.

A benchmark on a shared CPU drifts (thermal state, other processes). Each
measurement here is therefore repeated, and the repeats of different models
are *interleaved* (round-robin, with the order rotated every repeat), so a
slow minute hurts all models alike instead of one. Results are medians with
their spread (min, max and interquartile range over the repeats).
"""
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch

__all__ = [
    'Stats', 'summarize', 'synchronize', 'time_per_call', 'interleave',
    'matmul_flops_per_second'
]


@dataclass
class Stats:
    """Summary of repeated measurements of one quantity.

    Attributes:
        median: Median over the repeats.
        low: Smallest value.
        high: Largest value.
        iqr: Interquartile range (0 for fewer than 2 values).
        values: The raw values, in measurement order.
    """

    median: float
    low: float
    high: float
    iqr: float
    values: List[float] = field(default_factory=list)

    @property
    def rel_spread(self) -> float:
        """``(high - low) / median``: the spread as a fraction."""
        return (self.high - self.low) / self.median if self.median else 0.0

    def to_dict(self) -> Dict[str, object]:
        return dict(
            median=self.median,
            low=self.low,
            high=self.high,
            iqr=self.iqr,
            rel_spread=self.rel_spread,
            values=list(self.values))


def summarize(values: Sequence[float]) -> Stats:
    """Median, range and interquartile range of ``values`` (non-empty)."""
    if not values:
        raise ValueError('summarize() needs at least one value')
    vals = list(values)
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method='inclusive')
        iqr = q3 - q1
    else:
        iqr = 0.0
    return Stats(statistics.median(vals), min(vals), max(vals), iqr, vals)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    if device.type != 'cpu':
        torch.accelerator.synchronize(device)


def time_per_call(fn: Callable[[], object],
                  device: torch.device,
                  iters: int,
                  warmup: int = 1,
                  min_time: float = 0.0) -> float:
    """Mean wall time of one ``fn()`` call, in seconds.

    Args:
        fn: The work to time (e.g. a forward pass under ``no_grad``).
        device: Device to synchronise before reading the clock.
        iters: Timed calls (at least this many).
        warmup: Untimed calls first. Defaults to 1.
        min_time: Keep calling until this many seconds have passed, so very
            fast calls are not dominated by timer resolution. Defaults to 0.

    Returns:
        Seconds per call.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    count = 0
    start = time.perf_counter()
    while True:
        fn()
        count += 1
        if count >= iters:
            synchronize(device)
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                return elapsed / count


def interleave(
        tasks: Mapping[str, Callable[[], float]],
        repeats: int,
        on_step: Optional[Callable[[str, int], None]] = None,
        errors: Optional[Dict[str, str]] = None) -> Dict[str, List[float]]:
    """Run every task once per repeat, round-robin, rotating the order.

    Args:
        tasks: ``{name: callable returning one measurement}``.
        repeats: Number of rounds.
        on_step: Called with ``(name, repeat)`` after each measurement (for
            progress display). Defaults to ``None``.
        errors: If given, a task that raises is recorded here
            (``{name: message}``) and dropped from later rounds; otherwise
            the exception propagates. Defaults to ``None``.

    Returns:
        ``{name: [one value per repeat]}`` for the tasks that did not fail.
    """
    names = list(tasks)
    results: Dict[str, List[float]] = {name: [] for name in names}
    for rep in range(repeats):
        shift = rep % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            if errors is not None and name in errors:
                continue
            try:
                results[name].append(float(tasks[name]()))
            except Exception as exc:  # noqa: BLE001 (reported, not hidden)
                if errors is None:
                    raise
                errors[name] = f'{type(exc).__name__}: {exc}'.split('\n')[0]
                results.pop(name, None)
            if on_step is not None:
                on_step(name, rep)
    return {k: v for k, v in results.items() if v}


def matmul_flops_per_second(
        device: torch.device,
        size: Optional[int] = None,
        iters: int = 5,
        dtype: torch.dtype = torch.float32) -> Callable[[], float]:
    """A task measuring the dense matmul rate of ``device``.

    The rate counts ``2 * n**3`` floating-point operations (a multiply and an
    add) per ``n x n`` matmul, so it is comparable to ``2 * MACs``.

    Args:
        device: Where to run.
        size: Matrix side. Defaults to ``None``: 1024 on CPU, 4096 otherwise.
        iters: Timed matmuls per measurement. Defaults to 5.
        dtype: Element type. Defaults to float32 (the models' type).

    Returns:
        A callable returning FLOP/s (one measurement per call); suitable as
        a task for :func:`interleave`.
    """
    n = size or (1024 if device.type == 'cpu' else 4096)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def task() -> float:
        seconds = time_per_call(lambda: torch.mm(a, b, out=out), device, iters)
        return 2.0 * n**3 / seconds

    return task
