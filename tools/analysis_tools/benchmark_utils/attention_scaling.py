"""Time and peak memory of one stage-1 SAA layer against full attention.

Both layers are taken from real backbones: the first attention layer of
stage 1 of ``SAEViT(arch, attn_type='saa')`` and the layer at the same place
of ``SAEViT(arch, attn_type='mhsa')`` (full multi-head self-attention of the
same width and head count). The input is the stage-1 map of an
``S x S`` image, i.e. ``1 x C1 x S/4 x S/4``, so "tokens" below means
``(S/4)**2``.

Peak memory:

* CPU: every point runs in a fresh interpreter (so a point that exhausts
  memory kills only itself). ``peak_mib`` is the peak of the bytes held by
  torch's CPU allocator during one forward pass, from ``torch.profiler``
  memory events (tracemalloc does not see torch's allocator);
  ``rss_rise_mib`` is the rise of the resident set over the first pass
  (``VmHWM`` reset through ``/proc/self/clear_refs`` minus ``VmRSS``
  before; ``ru_maxrss`` where that is unavailable), which also shows
  one-time buffers and allocator caching. A process that the OOM
  killer ends is reported as such instead of taking the benchmark down.
* GPU: ``torch.cuda.max_memory_allocated`` over the first forward pass, minus
  what was allocated before.

Full attention is skipped (and says why) at sizes whose time or memory,
extrapolated quadratically from the previous measured size, exceeds the
budget. The growth exponent ``k`` of ``time ~ tokens**k`` is a least-squares
fit in log-log space over the measured sizes.
"""
import json
import math
import os
import signal
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .timing import time_per_call

__all__ = [
    'build_stage1_attention', 'measure_point', 'fit_exponent',
    'run_attention_scaling'
]

ATTN_TYPES = {'saa': 'saa', 'full': 'mhsa'}
LABELS = {'saa': 'SAA (stage 1)', 'full': 'full attention, same width'}


def _stage1_attention(backbone: nn.Module) -> Tuple[str, nn.Module]:
    """Name and module of the first attention layer of stage 1."""
    from saevit_mm.models.layers.saa import SparselyAggregatedAttention
    stage = backbone.stages[0]
    for name, module in stage.named_modules():
        if isinstance(module, SparselyAggregatedAttention):
            return name, module
    raise LookupError('no SparselyAggregatedAttention in stages[0]')


def build_stage1_attention(kind: str,
                           arch: str = 't') -> Tuple[nn.Module, int]:
    """The stage-1 attention layer of ``SAEViT(arch)`` and its width.

    Args:
        kind: ``'saa'`` or ``'full'``.
        arch: SAEViT arch key. Defaults to ``'t'``.

    Returns:
        The layer (eval mode) and its input channels ``C1``.
    """
    from saevit_mm.registry import MODELS
    if kind not in ATTN_TYPES:
        raise ValueError(f'kind must be one of {list(ATTN_TYPES)}, got '
                         f'{kind!r}')
    backbone = MODELS.build(dict(type='SAEViT', arch=arch))
    name, layer = _stage1_attention(backbone)
    if kind == 'full':
        full_backbone = MODELS.build(
            dict(type='SAEViT', arch=arch, attn_type=ATTN_TYPES['full']))
        layer = full_backbone.stages[0].get_submodule(name)
    layer.eval()
    return layer, backbone.arch_settings['embed_dims'][0]


def _status_bytes(field: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    try:
        with open('/proc/self/status') as file:
            for line in file:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (``VmHWM``); Linux >= 4.0 only."""
    try:
        with open('/proc/self/clear_refs', 'w') as file:
            file.write('5')
        return True
    except OSError:
        return False


def _rss_rise_of(fn: Callable[[], object]) -> int:
    """Bytes by which ``fn()`` raises the resident set above its start.

    Uses ``VmHWM`` after resetting it (so set-up allocations do not hide
    the peak); falls back to the rise of ``ru_maxrss`` elsewhere.
    """
    import resource
    if _reset_peak_rss():
        before = _status_bytes('VmRSS') or 0
        fn()
        return max(0, (_status_bytes('VmHWM') or 0) - before)
    # Linux reports ru_maxrss in KiB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


def _allocator_peak_of(fn: Callable[[], object]) -> int:
    """Peak of the bytes torch's CPU allocator holds during ``fn()``,
    above what it held before (from ``torch.profiler`` memory events).

    An op's own allocations count from its start, its own frees from its
    end, so the peak is never underestimated by intra-op reuse.
    """
    from torch.profiler import ProfilerActivity, profile
    with profile(
            activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    timeline = []
    for event in prof.events():
        delta = event.self_cpu_memory_usage
        if delta > 0:
            timeline.append((event.time_range.start, delta))
        elif delta < 0:
            timeline.append((event.time_range.end, delta))
    current = peak = 0
    for _, delta in sorted(timeline, key=lambda item: item[0]):
        current += delta
        peak = max(peak, current)
    return peak


def measure_point(kind: str, arch: str, size: int, device: str, iters: int,
                  threads: int) -> Dict[str, float]:
    """Time and peak memory of one layer at one image size (one process).

    Args:
        kind: ``'saa'`` or ``'full'``.
        arch: SAEViT arch key.
        size: Image side ``S``; the layer sees ``S/4 x S/4``.
        device: Torch device string.
        iters: Timed forward passes (after the memory pass and one warmup).
        threads: ``torch.set_num_threads`` value (CPU).

    Returns:
        ``ms`` (median over ``iters`` single-call timings), ``peak_mib``
        (peak of torch's allocator above its start) and, on CPU,
        ``rss_rise_mib`` (rise of the resident set over the first pass).
    """
    torch.set_num_threads(threads)
    dev = torch.device(device)
    layer, channels = build_stage1_attention(kind, arch)
    layer = layer.to(dev)
    side = max(1, size // 4)
    x = torch.randn(1, channels, side, side, device=dev)
    extra = {}
    with torch.no_grad():
        if dev.type == 'cpu':
            extra['rss_rise_mib'] = _rss_rise_of(lambda: layer(x)) / 2**20
            peak = _allocator_peak_of(lambda: layer(x))
        else:
            torch.accelerator.synchronize(dev)
            base = torch.accelerator.memory_allocated(dev)
            torch.accelerator.reset_peak_memory_stats(dev)
            layer(x)
            torch.accelerator.synchronize(dev)
            peak = torch.accelerator.max_memory_allocated(dev) - base
        # the memory pass was the warm-up
        times = sorted(
            time_per_call(lambda: layer(x), dev, iters=1, warmup=0)
            for _ in range(iters))
    return dict(
        ms=1e3 * times[len(times) // 2], peak_mib=peak / 2**20, **extra)


def _in_subprocess(kind: str, arch: str, size: int, device: str, iters: int,
                   threads: int) -> Dict[str, object]:
    """Run :func:`measure_point` in a fresh interpreter (CPU peak memory).

    A fresh ``python -m`` process (not ``multiprocessing``) does not
    re-import the caller's ``__main__`` and starts with a clean allocator.
    """
    # the folder that holds this package (tools/analysis_tools)
    tools_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (tools_dir, env.get('PYTHONPATH')) if p)
    cmd = [
        sys.executable, '-m', __name__, kind, arch,
        str(size), device,
        str(iters),
        str(threads)
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        if proc.returncode == -signal.SIGKILL:
            return dict(error='killed (SIGKILL: out of memory?)')
        tail = proc.stderr.strip().splitlines()[-1:] or ['']
        return dict(error=f'exit code {proc.returncode}: {tail[0]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_exponent(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Slope of ``log y`` against ``log x`` (least squares); ``None`` if
    fewer than two points."""
    if len(xs) < 2:
        return None
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    var = sum((a - mx)**2 for a in lx)
    cov = sum((a - mx) * (b - my) for a, b in zip(lx, ly))
    return cov / var if var else None


def _available_bytes() -> int:
    try:
        with open('/proc/meminfo') as file:
            for line in file:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def run_attention_scaling(
        sizes: Sequence[int],
        device: str = 'cpu',
        arch: str = 't',
        iters: int = 3,
        time_budget: float = 60.0,
        memory_fraction: float = 0.5,
        on_step: Optional[Callable[[str], None]] = None) -> Dict[str, object]:
    """Measure SAA and full attention over ``sizes`` (ascending).

    Args:
        sizes: Image sides ``S``.
        device: Torch device string. Defaults to ``'cpu'``.
        arch: SAEViT arch whose stage-1 layers are compared. Defaults to
            ``'t'``.
        iters: Timed passes per point. Defaults to 3.
        time_budget: Skip full attention where one point would take longer
            than this many seconds (extrapolated). Defaults to 60.
        memory_fraction: Skip full attention where its extrapolated peak
            exceeds this fraction of the available memory. Defaults to 0.5.
        on_step: Called with a label after each point. Defaults to ``None``.

    Returns:
        ``points`` (per size: tokens, per-kind ``ms``/``peak_mib`` or
        ``skipped``/``error``, ``speedup``), ``fit`` (per kind: time and
        memory exponents), ``labels`` and the settings used.
    """
    threads = torch.get_num_threads()
    on_cpu = torch.device(device).type == 'cpu'
    points: List[Dict[str, object]] = []
    last_full: Optional[Tuple[int, Dict[str, float]]] = None
    for size in sorted(sizes):
        tokens = (size // 4)**2
        point: Dict[str, object] = dict(size=size, tokens=tokens)
        for kind in ('saa', 'full'):
            skip = None
            if kind == 'full' and last_full is not None:
                grow = (tokens / last_full[0])**2
                est_s = last_full[1]['ms'] / 1e3 * grow * (iters + 2)
                est_b = last_full[1]['peak_mib'] * 2**20 * grow
                if est_s > time_budget:
                    skip = f'estimated {est_s:.0f} s > {time_budget:.0f} s'
                elif est_b > memory_fraction * _available_bytes():
                    skip = (f'estimated {est_b / 2**30:.1f} GiB > '
                            f'{memory_fraction:.0%} of available memory')
            if skip:
                point[kind] = dict(skipped=skip)
            else:
                args = (kind, arch, size, device, iters, threads)
                try:
                    res = (
                        _in_subprocess(*args) if on_cpu else measure_point(
                            *args))
                except torch.OutOfMemoryError:
                    res = dict(error='out of memory')
                point[kind] = res
                if kind == 'full' and 'ms' in res:
                    last_full = (tokens, res)
            if on_step is not None:
                on_step(f'{kind} @{size}')
        saa, full = point['saa'], point['full']
        if 'ms' in saa and 'ms' in full:  # type: ignore
            point['speedup'] = full['ms'] / saa['ms']  # type: ignore
        points.append(point)

    fit = {}
    for kind in ('saa', 'full'):
        ok = [p for p in points if 'ms' in p[kind]]  # type: ignore
        xs = [p['tokens'] for p in ok]
        fit[kind] = dict(
            time_exponent=fit_exponent(xs, [p[kind]['ms'] for p in ok]),
            memory_exponent=fit_exponent(
                [x for x, p in zip(xs, ok) if p[kind]['peak_mib'] > 0],
                [p[kind]['peak_mib'] for p in ok if p[kind]['peak_mib'] > 0]),
            sizes=[p['size'] for p in ok])
    return dict(
        arch=arch,
        device=device,
        iters=iters,
        points=points,
        fit=fit,
        labels=LABELS,
        memory_method=('peak_mib: torch.profiler allocator peak of one '
                       'forward; rss_rise_mib: rise of VmHWM over the first '
                       'forward; one fresh process per point' if on_cpu else
                       'max_memory_allocated rise over the first forward'))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m benchmark_utils.attention_scaling KIND ARCH SIZE DEVICE
    ITERS THREADS`` (from ``tools/analysis_tools``): print one
    :func:`measure_point` result as JSON.
    """
    kind, arch, size, device, iters, threads = (argv or sys.argv[1:])[:6]
    result = measure_point(kind, arch, int(size), device, int(iters),
                           int(threads))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
