"""The benchmark run: build, count, time (interleaved), compare, collect.

``run_benchmark(settings)`` returns one JSON-ready dict; the CLI
(``tools/analysis_tools/benchmark.py``) writes it and draws the chart.
"""
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from saevit_mm.deploy import switch_to_deploy
from .accuracy import resolve_top1
from .attention_scaling import run_attention_scaling
from .complexity import count_flops, count_params
from .peers import build_classifier, default_specs
from .timing import (Stats, interleave, matmul_flops_per_second, summarize,
                     time_per_call)
from .variants import VARIANTS, Variant, build_variant

__all__ = ['BenchmarkSettings', 'PRESETS', 'run_benchmark', 'machine_info']

Size = Tuple[int, int]


@dataclass
class BenchmarkSettings:
    """What to measure and how often (see :data:`PRESETS`).

    Attributes:
        device: Torch device string.
        models: Display names to include (``None``: all known).
        img_size: Classifier input side for FLOPs, throughput and latency.
        batch_size: Batch of the throughput measurement.
        repeats: Interleaved rounds for throughput and latency.
        iters: Timed batches per throughput measurement.
        latency_iters: Timed single-image passes per latency measurement.
        backbone_sizes: ``(H, W)`` inputs of the backbone-only latency.
        backbone_repeats: Interleaved rounds at those sizes.
        backbone_iters: Timed passes per backbone-latency measurement.
        attention_sizes: Image sides of the SAA vs full-attention scan
            (empty: skip).
        attention_arch: SAEViT arch whose stage-1 layers are compared.
        attention_iters: Timed passes per attention point.
        attention_time_budget: Longest extrapolated full-attention point, s.
        deploy: Deploy variants to benchmark (subset of ``fuse``, ``onnx``,
            ``compile``).
        deploy_models: Models that get the deploy variants.
        threads: ``torch.set_num_threads`` (``None``: leave torch's default).
        channels_last: Run every model and input in ``channels_last``
            memory format (the same for all models). Defaults to False: the
            layout each implementation uses by itself.
        fuse_all: Fold BatchNorm into the preceding convolutions of every
            model (:func:`saevit_mm.deploy.switch_to_deploy`) before timing;
            FLOPs are still counted on the unfused graph. Defaults to False.
    """

    device: str = 'cpu'
    models: Optional[List[str]] = None
    img_size: int = 224
    batch_size: int = 32
    repeats: int = 5
    iters: int = 1
    latency_iters: int = 10
    backbone_sizes: Tuple[Size, ...] = ((512, 512), (800, 1333), (1024, 2048))
    backbone_repeats: int = 3
    backbone_iters: int = 1
    attention_sizes: Tuple[int, ...] = (256, 384, 512, 768, 1024)
    attention_arch: str = 't'
    attention_iters: int = 3
    attention_time_budget: float = 60.0
    deploy: Tuple[str, ...] = ('fuse', 'onnx', 'compile')
    deploy_models: Tuple[str, ...] = ('SAEViT-t', 'SAEViT-s')
    threads: Optional[int] = None
    channels_last: bool = False
    fuse_all: bool = False


PRESETS: Dict[str, BenchmarkSettings] = {
    'default':
    BenchmarkSettings(),
    'quick':
    BenchmarkSettings(
        repeats=3,
        iters=1,
        latency_iters=5,
        backbone_sizes=((512, 512), ),
        backbone_repeats=2,
        backbone_iters=1,
        attention_sizes=(256, 512, 1024),
        attention_iters=2,
        attention_time_budget=20.0,
        deploy=('fuse', 'onnx')),
    'tiny':
    BenchmarkSettings(
        img_size=64,
        batch_size=2,
        repeats=1,
        iters=1,
        latency_iters=1,
        backbone_sizes=((64, 96), ),
        backbone_repeats=1,
        backbone_iters=1,
        attention_sizes=(64, ),
        attention_iters=1,
        attention_time_budget=5.0,
        deploy=('fuse', )),
}


def machine_info(device: torch.device) -> Dict[str, object]:
    """CPU/GPU model, thread count and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as file:
            names = [
                line.split(':', 1)[1].strip() for line in file
                if line.startswith('model name')
            ]
        if names:
            cpu = names[0]
    except OSError:
        pass
    info = dict(
        cpu=cpu,
        logical_cpus=__import__('os').cpu_count(),
        threads=torch.get_num_threads(),
        device=str(device),
        torch=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform())
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


class _Progress:
    """Progress display: rich bars, plain log lines, or nothing.

    Args:
        progress: A started ``rich.progress.Progress``, the string
            ``'lines'`` (one line per finished phase with its duration, for
            logs), or ``None`` (silent).
    """

    def __init__(self, progress: Optional[object]) -> None:
        self._progress = progress

    @contextmanager
    def phase(self, description: str,
              total: int) -> Iterator[Callable[..., None]]:
        if self._progress is None:
            yield lambda *args: None
            return
        if self._progress == 'lines':
            start = time.perf_counter()
            print(f'[benchmark] {description}: {total} steps ...', flush=True)
            yield lambda *args: None
            print(
                f'[benchmark] {description}: done in '
                f'{time.perf_counter() - start:.0f} s',
                flush=True)
            return
        task = self._progress.add_task(description, total=total)
        yield lambda *args: self._progress.advance(task)
        self._progress.update(task, completed=total)


def _forward_task(forward: Callable[[torch.Tensor], object], x: torch.Tensor,
                  device: torch.device, iters: int,
                  scale: Callable[[float], float]) -> Callable[[], float]:
    """A task that times ``forward(x)`` and converts seconds per call."""

    def task() -> float:
        with torch.no_grad():
            return scale(time_per_call(lambda: forward(x), device, iters))

    return task


def _error(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {exc}'.split('\n')[0]


def _notes(settings: BenchmarkSettings) -> List[str]:
    layout = ('channels_last for every model and input'
              if settings.channels_last else
              "each implementation's own (NCHW input)")
    return [
        'Every model is backbone + global average pooling + '
        'Linear(C, 1000), eval mode, float32; the backbone arguments '
        'follow each host config (see "source").',
        'FLOPs are multiply-adds counted by saevit_mm.models.utils '
        '(mmengine FlopAnalyzer + a handle for '
        'aten::scaled_dot_product_attention), the same for every model.',
        'throughput: img/s at batch_size; latency: ms at batch 1; '
        'backbone latency: backbone only, batch 1. Medians over '
        'interleaved repeats; spread = [low, high] and IQR.',
        'matmul rate counts 2*n^3 FLOP per n x n matmul; FLOP '
        'utilisation = 2 * MACs * img/s / matmul rate.',
        f'memory format: {layout}.',
        'BatchNorm folded into the preceding convolutions of every model '
        '(saevit_mm.deploy.switch_to_deploy; "folded_bn" per model).'
        if settings.fuse_all else 'Models as built (BatchNorm not folded; '
        'see the [fused] variant rows), except the timm models that have a '
        'deploy form (FastViT, RepViT: see "source"), which are measured '
        'reparameterised, as their authors deploy them.',
        'timm models: timm.create_model(pretrained=False, '
        'features_only=True), last stage only (no head convolution).',
        'top1: the published ImageNet-1K top-1 of the model (not measured '
        'here), read from the host\'s metafile where it ships one, else '
        'from the paper or the authors\' model zoo ("top1_source"); deploy '
        'variants inherit it from their eager model.',
    ]


class _Run:
    """State of one benchmark run; one method per phase."""

    def __init__(self, settings: BenchmarkSettings,
                 progress: Optional[object]) -> None:
        self.settings = settings
        self.device = torch.device(settings.device)
        self.prog = _Progress(progress)
        self.layout = (
            torch.channels_last
            if settings.channels_last else torch.contiguous_format)
        self.rows: Dict[str, Dict[str, object]] = {}
        self.models: Dict[str, nn.Module] = {}
        self.variants: List[Tuple[str, Variant]] = []
        self.errors: Dict[str, str] = {}

    def make_input(self, *shape: int) -> torch.Tensor:
        return torch.randn(
            *shape, device=self.device).contiguous(memory_format=self.layout)

    def build(self) -> None:
        """Build every model; count its parameters and FLOPs."""
        specs = default_specs(self.settings.models)
        size = self.settings.img_size
        with self.prog.phase('build + count FLOPs', len(specs)) as step:
            for spec in specs:
                row: Dict[str, object] = dict(
                    name=spec.name, scope=spec.scope, source=spec.source)
                if spec.top1 is not None:
                    try:
                        row.update(resolve_top1(spec.top1))
                    except Exception as exc:  # noqa: BLE001 (reported)
                        row['top1_error'] = _error(exc)
                try:
                    model = build_classifier(spec)
                    row['params_m'] = count_params(model) / 1e6
                    row['backbone_params_m'] = count_params(
                        model.backbone) / 1e6
                    row['gflops'] = count_flops(model,
                                                (1, 3, size, size)) / 1e9
                    if self.settings.fuse_all:
                        row['folded_bn'] = len(
                            switch_to_deploy(
                                model,
                                example_input=torch.randn(1, 3, size, size)))
                    model.to(self.device)
                    model.to(memory_format=self.layout)
                    self.models[spec.name] = model
                except Exception as exc:  # noqa: BLE001 (reported in row)
                    row['error'] = _error(exc)
                self.rows[spec.name] = row
                step()

    def deploy(self, x: torch.Tensor) -> Dict[str, Dict[str, object]]:
        """Build the deploy variants and their checks."""
        wanted = [n for n in self.settings.deploy_models if n in self.models]
        kinds = self.settings.deploy
        unknown = [k for k in kinds if k not in VARIANTS]
        if unknown:
            raise ValueError(f'unknown deploy variant(s) {unknown}; choose '
                             f'from {VARIANTS}')
        info: Dict[str, Dict[str, object]] = {}
        with self.prog.phase('deploy variants',
                             len(wanted) * len(kinds)) as step:
            for name in wanted:
                info[name] = {}
                for kind in kinds:
                    try:
                        variant = build_variant(kind, self.models[name], name,
                                                x)
                        self.variants.append((name, variant))
                        info[name][kind] = variant.info
                    except Exception as exc:  # noqa: BLE001 (reported)
                        info[name][kind] = dict(error=_error(exc))
                    step()
        return info

    def tasks(self, x: torch.Tensor, iters: int,
              scale: Callable[[float], float]) -> Dict[str, Callable]:
        """Timing tasks of every model and of the variants for ``x``."""
        tasks = {
            name: _forward_task(model, x, self.device, iters, scale)
            for name, model in self.models.items()
        }
        for _, variant in self.variants:
            if variant.batch_sizes in (None, (x.shape[0], )):
                tasks[variant.name] = _forward_task(variant.forward, x,
                                                    self.device, iters, scale)
        return tasks

    def time_phase(self, description: str, tasks: Dict[object,
                                                       Callable], repeats: int,
                   errors: Dict[object, str]) -> Dict[object, List[float]]:
        with self.prog.phase(description, repeats * len(tasks)) as step:
            return interleave(tasks, repeats, step, errors)

    def backbone_tasks(self) -> Dict[Tuple[str, str], Callable]:
        """Backbone-only tasks at the detection/segmentation sizes."""
        tasks = {}
        for name, model in self.models.items():
            for h, w in self.settings.backbone_sizes:
                tasks[(name, f'{h}x{w}')] = _forward_task(
                    model.backbone, self.make_input(1, 3, h, w), self.device,
                    self.settings.backbone_iters, lambda s: 1e3 * s)
        return tasks

    def attention(self) -> Optional[Dict[str, object]]:
        settings = self.settings
        if not settings.attention_sizes:
            return None
        with self.prog.phase('attention scaling',
                             2 * len(settings.attention_sizes)) as step:
            return run_attention_scaling(
                settings.attention_sizes,
                device=settings.device,
                arch=settings.attention_arch,
                iters=settings.attention_iters,
                time_budget=settings.attention_time_budget,
                on_step=step)

    def collect(self, thr: Dict[str, List[float]], lat: Dict[str, List[float]],
                big: Dict[Tuple[str, str],
                          List[float]], big_errors: Dict[Tuple[str, str],
                                                         str], matmul: Stats,
                size_keys: List[str]) -> List[Dict[str, object]]:
        """One JSON row per model and variant."""
        rows = list(self.rows.values())
        rows += [
            dict(
                name=variant.name,
                variant_of=base,
                params_m=self.rows[base]['params_m'],
                gflops=self.rows[base]['gflops'],
                **{
                    key: self.rows[base][key]
                    for key in ('top1', 'top1_source')
                    if key in self.rows[base]
                }) for base, variant in self.variants
        ]
        for row in rows:
            name = row['name']
            if name in thr:
                row['throughput'] = summarize(thr[name]).to_dict()
                achieved = 2 * row['gflops'] * row['throughput']['median']
                row['achieved_gflops'] = achieved
                row['flop_utilisation'] = achieved / matmul.median
            elif name in self.errors:
                row['throughput_error'] = self.errors[name]
            if name in lat:
                row['latency_ms'] = summarize(lat[name]).to_dict()
            if 'variant_of' not in row and 'error' not in row:
                row['backbone_latency_ms'] = {
                    key: (summarize(big[(name, key)]).to_dict() if
                          (name, key) in big else dict(
                              error=big_errors.get((name, key), 'not run')))
                    for key in size_keys
                }
        return rows


def run_benchmark(settings: BenchmarkSettings,
                  progress: Optional[object] = None) -> Dict[str, object]:
    """Run every phase and return the result dict.

    Phases: build and count; deploy variants; throughput at ``batch_size``
    interleaved with the matmul rate; latency at batch 1; backbone latency
    at ``backbone_sizes``; SAA against full attention.

    Args:
        settings: What to measure.
        progress: A started ``rich.progress.Progress`` to report to, or
            ``'lines'`` for one log line per phase. Defaults to ``None``
            (silent).
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    run = _Run(settings, progress)
    size_keys = [f'{h}x{w}' for h, w in settings.backbone_sizes]
    result: Dict[str, object] = dict(
        machine=machine_info(run.device),
        settings=dict(asdict(settings), backbone_sizes_key=size_keys),
        notes=_notes(settings))
    run.build()
    x_thr = run.make_input(settings.batch_size, 3, settings.img_size,
                           settings.img_size)
    x_lat = x_thr[:1].contiguous(memory_format=run.layout)
    result['deploy'] = run.deploy(x_thr)

    tasks = run.tasks(x_thr, settings.iters, lambda s: settings.batch_size / s)
    tasks['matmul'] = matmul_flops_per_second(run.device)
    thr = run.time_phase(f'throughput b{settings.batch_size}', tasks,
                         settings.repeats, run.errors)
    matmul = summarize([v / 1e9 for v in thr.pop('matmul')])
    result['matmul_gflops'] = matmul.to_dict()
    lat = run.time_phase(
        'latency b1',
        run.tasks(x_lat, settings.latency_iters, lambda s: 1e3 * s),
        settings.repeats, run.errors)
    big_errors: Dict[Tuple[str, str], str] = {}
    big = run.time_phase('backbone latency', run.backbone_tasks(),
                         settings.backbone_repeats, big_errors)
    attention = run.attention()
    if attention is not None:
        result['attention'] = attention
    result['models'] = run.collect(thr, lat, big, big_errors, matmul,
                                   size_keys)
    return result


def settings_from_preset(preset: str,
                         **overrides: object) -> BenchmarkSettings:
    """A preset with some fields replaced (``None`` values are ignored)."""
    if preset not in PRESETS:
        raise KeyError(f'unknown preset {preset!r}; choose from '
                       f'{list(PRESETS)}')
    return replace(PRESETS[preset], **{
        k: v
        for k, v in overrides.items() if v is not None
    })
