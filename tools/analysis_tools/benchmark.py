"""Benchmark SAEViT against its peers: params, FLOPs, throughput, latency.

Every model is measured as a classifier: the backbone, global average
pooling of its last output and ``Linear(C, 1000)``
(:class:`GAPLinearClassifier`), eval mode, float32, random weights. The
backbone arguments follow each host's ImageNet config; timm peers are built
``features_only`` (last stage) and reparameterised where they have a deploy
form. SAEViT runs twice: as built and deployed
(:func:`saevit_mm.deploy.switch_to_deploy`), and with ``--deploy-steps``
after each step of its deploy form too; with ``--baseline REV`` it also runs
as of git revision ``REV`` (:mod:`revision_import`), eager and deployed, and
the report gives the time ratios now / then. All timings run in one process,
round-robin with the order rotated every round, so a slow minute on a
shared machine hurts every model alike; the report gives medians and
ranges. FLOPs are multiply-adds from one counter for all
(:func:`saevit_mm.models.utils.count_complexity`). Top-1 is each model's
*published* ImageNet-1K number (:data:`MODELS`), not measured here.

Examples::

    python tools/analysis_tools/benchmark.py                  # full preset
    python tools/analysis_tools/benchmark.py --quick          # minutes
    python tools/analysis_tools/benchmark.py --tiny           # smoke test
    python tools/analysis_tools/benchmark.py --models SAEViT-t ResNet-18
    python tools/analysis_tools/benchmark.py --models SAEViT-t --deploy-steps
    python tools/analysis_tools/benchmark.py --quick --models SAEViT-t \
        --baseline 15c31b5                      # before / after, one process
    python tools/analysis_tools/benchmark.py --device cuda --out-dir out

Writes ``benchmark.json``, ``benchmark.md`` (the table) and
``benchmark.png`` (top-1 and throughput against FLOPs) to ``--out-dir``.
"""
import argparse
import copy
import importlib
import json
import platform
import shlex
import statistics
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Callable, Dict, Hashable, Optional, Sequence

import torch
from benchmark_train import (TRAIN_MODELS, TRAIN_PRESETS, run_train,
                             train_markdown, train_plot)
from torch import nn

_SAEVIT = 'arXiv 2508.16884: the paper\'s checkpoint, not this code'
_MMPRE = 'mmpretrain configs/{}/metafile.yml'

#: name -> (scope that builds the backbone, its config or timm name,
#: published ImageNet-1K top-1 %, where that number is published)
# yapf: disable
MODELS = {
    'SAEViT-t': ('saevit_mm', dict(type='SAEViT', arch='t'), 76.3, _SAEVIT),
    'SAEViT-s': ('saevit_mm', dict(type='SAEViT', arch='s'), 79.6, _SAEVIT),
    'ResNet-18': ('mmpretrain', dict(type='ResNet', depth=18), 69.9,
                  _MMPRE.format('resnet')),
    'EdgeNeXt-xsmall': ('mmpretrain', dict(type='EdgeNeXt', arch='xsmall'),
                        74.86, _MMPRE.format('edgenext')),
    'EdgeNeXt-small': ('mmpretrain', dict(type='EdgeNeXt', arch='small'),
                       79.41, _MMPRE.format('edgenext')),
    'MobileViT-x_small': ('mmpretrain', dict(type='MobileViT', arch='x_small'),
                          74.75, _MMPRE.format('mobilevit')),
    'EfficientFormer-l1': ('mmpretrain', dict(type='EfficientFormer',
                                              arch='l1'),
                           80.46, _MMPRE.format('efficientformer')),
    'MobileNetV3-large': ('mmpretrain', dict(type='MobileNetV3', arch='large'),
                          74.04, _MMPRE.format('mobilenet_v3')),
    'PVTv2-b0': ('mmdet', dict(type='PyramidVisionTransformerV2',
                               embed_dims=32, num_layers=[2, 2, 2, 2]),
                 70.5, 'arXiv 2106.13797'),
    'FastViT-T8': ('timm', 'fastvit_t8', 76.2,
                   'github.com/apple/ml-fastvit (arXiv 2303.14189)'),
    'RepViT-M0.9': ('timm', 'repvit_m0_9', 78.7,
                    'arXiv 2307.09283 (300 epochs, distilled)'),
    'MobileNetV4-conv-small': ('timm', 'mobilenetv4_conv_small', 73.8,
                               'arXiv 2404.10518'),
    'MobileNetV4-conv-medium': ('timm', 'mobilenetv4_conv_medium', 79.9,
                                'arXiv 2404.10518 (at 256)'),
    'EfficientViT-B1': ('timm', 'efficientvit_b1', 79.4, 'arXiv 2205.14756'),
}
#: img_size, batch_size: the classifier input; repeats: interleaved rounds
#: of throughput and batch-1 latency (latency_iters calls each);
#: dense_sizes, dense_repeats: backbone latency at batch 1
PRESETS = dict(default=dict(img_size=224, batch_size=32, repeats=5,
                            latency_iters=10, dense_repeats=3,
                            dense_sizes=((512, 512), (800, 1333),
                                         (1024, 2048))))
PRESETS.update(
    quick=dict(PRESETS['default'], repeats=3, latency_iters=5,
               dense_sizes=((512, 512), ), dense_repeats=2),
    tiny=dict(img_size=64, batch_size=2, repeats=1, latency_iters=1,
              dense_sizes=((64, 96), ), dense_repeats=1))
# yapf: enable


class GAPLinearClassifier(nn.Module):
    """Backbone, global average pooling of its last output, linear head.

    The last output may be ``N x C x H x W``, ``N x C x L``
    (EfficientFormer's token stage) or already pooled ``N x C``.

    Args:
        backbone: The feature extractor.
        in_channels: Channels of its last output.
        num_classes: Head width. Defaults to 1000.
    """

    def __init__(self,
                 backbone: nn.Module,
                 in_channels: int,
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x)
        feat = feat if isinstance(feat, torch.Tensor) else feat[-1]
        return self.head(feat.flatten(2).mean(2) if feat.dim() > 2 else feat)


def build_classifier(name: str,
                     package: Optional[ModuleType] = None
                     ) -> GAPLinearClassifier:
    """``MODELS[name]`` as :class:`GAPLinearClassifier` (eval mode, CPU);
    a saevit_mm model from ``package`` (another revision's saevit_mm,
    :func:`revision_import.import_revision`) if given."""
    scope, cfg = MODELS[name][:2]
    if package is not None:
        cfg = dict(cfg)
        backbone = getattr(package.models, cfg.pop('type'))(**cfg)
    elif scope == 'timm':
        import timm
        from timm.utils.model import reparameterize_model
        backbone = reparameterize_model(
            timm.create_model(
                cfg, pretrained=False, features_only=True,
                out_indices=(-1, )).eval())
    else:
        from mmengine.registry import DefaultScope
        registry = importlib.import_module(f'{scope}.registry').MODELS
        # nested types resolve in the default scope; mmcv's construction
        # advice (conv bias before BN ...) is noise here
        with DefaultScope.overwrite_default_scope(scope), \
                warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            backbone = registry.build(dict(cfg))
    backbone.eval()  # not chained: some hosts' train() returns None
    with torch.no_grad():  # EfficientFormer takes 224 only
        feat = backbone(torch.zeros(1, 3, 224, 224))
    feat = feat if isinstance(feat, torch.Tensor) else feat[-1]
    return GAPLinearClassifier(backbone, feat.shape[1]).eval()


def count(model: nn.Module, size: int) -> Dict[str, float]:
    """Parameters (M) and multiply-adds (G) at ``size`` x ``size``."""
    from saevit_mm.models.utils import count_complexity
    counted = count_complexity(model, (3, size, size))
    return dict(
        params_m=counted['params'] / 1e6, gflops=counted['flops'] / 1e9)


def timer(fn: Callable,
          x: torch.Tensor,
          iters: int = 1,
          rate: bool = False) -> Callable[[], float]:
    """A task timing ``fn(x)``: one warm-up call, then ``iters`` calls.

    The task returns images per second if ``rate``, else milliseconds per
    call.
    """

    def sync() -> None:
        if x.device.type == 'cuda':
            torch.cuda.synchronize(x.device)

    def task() -> float:
        with torch.no_grad():
            fn(x)
            sync()
            start = time.perf_counter()
            for _ in range(iters):
                fn(x)
            sync()
        seconds = (time.perf_counter() - start) / iters
        return x.shape[0] / seconds if rate else 1e3 * seconds

    return task


def _error(exc: BaseException) -> str:
    return f'{type(exc).__name__}: {exc}'.split('\n')[0]


def interleave(tasks: Dict[Hashable, Callable[[], float]],
               repeats: int,
               errors: Optional[Dict[Hashable, str]] = None,
               log: Callable[[str], None] = lambda line: None) -> Dict:
    """Run every task once a round, rotating the order each round.

    Args:
        tasks: Key -> a callable returning one measurement.
        repeats: Rounds.
        errors: If given, a task that raises is recorded here (key ->
            message) and dropped; otherwise the exception propagates.
        log: Receives one line per round.

    Returns:
        Key -> ``dict(median, low, high, values)`` of the tasks that ran.
    """
    keys, values = list(tasks), {key: [] for key in tasks}
    for index in range(repeats):
        start, shift = time.perf_counter(), index % max(len(keys), 1)
        for key in keys[shift:] + keys[:shift]:
            if errors is not None and key in errors:
                continue
            try:
                values[key].append(float(tasks[key]()))
            except Exception as exc:  # noqa: BLE001 (reported)
                if errors is None:
                    raise
                errors[key] = _error(exc)
        log(f'round {index + 1}/{repeats}: '
            f'{time.perf_counter() - start:.0f} s')
    return {
        key:
        dict(median=statistics.median(v), low=min(v), high=max(v), values=v)
        for key, v in values.items() if v
    }


def measure(models: Dict[str, nn.Module], x: torch.Tensor,
            repeats: int) -> Dict[str, Dict]:
    """Params, FLOPs at ``x``'s size and throughput (images per second at
    ``x``'s batch, interleaved) of each model."""
    rows = {name: count(model, x.shape[-1]) for name, model in models.items()}
    timed = interleave({
        n: timer(m, x, rate=True)
        for n, m in models.items()
    }, repeats)
    for name, stats in timed.items():
        rows[name]['throughput'] = stats
    return rows


def machine() -> Dict[str, object]:
    """CPU model, threads and versions."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path('/proc/cpuinfo')
    if cpuinfo.exists():
        cpu = next((line.split(':', 1)[1].strip()
                    for line in cpuinfo.read_text().splitlines()
                    if line.startswith('model name')), cpu)
    return dict(
        cpu=cpu,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version())


class ChannelsLastInput(nn.Module):
    """``module`` run on a channels-last copy of its input (its weights
    converted once)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):
        return self.module(x.contiguous(memory_format=torch.channels_last))


def choose_memory_format(model: 'GAPLinearClassifier', x: torch.Tensor,
                         repeats: int = 3) -> Dict[str, object]:
    """Put ``model``'s backbone in the memory format that gives the lower
    batch-1 latency on ``x[:1]`` (interleaved rounds of both forms), in
    place; returns the choice and both medians (ms)."""
    nchw = model.backbone
    forms = {
        'NCHW': nchw,
        'channels-last': ChannelsLastInput(copy.deepcopy(nchw))
    }
    timed = interleave({
        name: timer(form, x[:1], iters=5)
        for name, form in forms.items()
    }, repeats)
    best = min(timed, key=lambda name: timed[name]['median'])
    model.backbone = forms[best]
    return dict(
        memory_format=best,
        format_ms={name: stats['median']
                   for name, stats in timed.items()})


def deploy_steps(model: nn.Module) -> Dict[str, nn.Module]:
    """SAEViT's deploy form short of its last step, to time what each step
    gains: every BatchNorm folded (``SAEViTBlock.fold_pre_norms`` for the
    pre-norms), then the weights in channels-last; ``[deployed]`` adds the
    CIFFNs' and SAAs' deploy forms."""
    from saevit_mm.deploy import fold_conv_bn_pairs
    from saevit_mm.models.layers import SAEViTBlock
    folded = copy.deepcopy(model).eval()
    fold_conv_bn_pairs(folded)
    for module in list(folded.modules()):
        if isinstance(module, SAEViTBlock):
            module.fold_pre_norms()
    channels_last = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    return {'folded': folded, 'folded, channels-last': channels_last}


def run(names: Sequence[str],
        preset: Dict,
        device: str = 'cpu',
        fuse_all: bool = False,
        steps: bool = False,
        log: Callable[[str], None] = print,
        baseline: Optional[str] = None) -> Dict[str, object]:
    """Build, count and time ``names``; one row per model (JSON-ready).
    With ``baseline`` (a git revision) the saevit_mm models also as of
    that revision, eager and ``[deployed]`` by its own deploy function."""
    from saevit_mm.deploy import switch_to_deploy
    package = None
    if baseline is not None:
        from revision_import import import_revision
        package = import_revision(baseline)
    size = preset['img_size']
    x = torch.randn(preset['batch_size'], 3, size, size, device=device)
    rows, models = {}, {}
    for name in names:
        scope, _, top1, source = MODELS[name]
        row = rows[name] = dict(
            name=name, scope=scope, top1=top1, top1_source=source)
        log(f'building {name}')
        try:
            model = build_classifier(name)
            row.update(count(model, size))
            if fuse_all and scope != 'saevit_mm':
                switch_to_deploy(model)
                row.update(choose_memory_format(model.to(device), x))
            models[name] = model.to(device)
            if scope == 'saevit_mm':
                deployed = copy.deepcopy(model)
                switch_to_deploy(deployed)
                variants = dict(deploy_steps(model) if steps else {},
                                deployed=deployed)
                if package is not None:
                    before = build_classifier(name, package).to(device)
                    counted = count(before, size)  # the baseline's own
                    variants[f'@{baseline}'] = before
                    variants[f'@{baseline} deployed'] = copy.deepcopy(before)
                    package.deploy.switch_to_deploy(
                        variants[f'@{baseline} deployed'])
                for step, variant in variants.items():
                    key = f'{name} [{step}]'
                    rows[key] = dict(row, name=key)
                    models[key] = variant
                    if step.startswith('@'):
                        rows[key].update(counted)
                    if step == f'@{baseline}':
                        continue
                    with torch.no_grad():  # against its eager form
                        reference = before if step.startswith('@') else model
                        diff = (variant(x[:1]) - reference(x[:1])).abs().max()
                    rows[key]['max_abs_diff'] = float(diff)
        except Exception as exc:  # noqa: BLE001 (reported in the row)
            row['error'] = _error(exc)
    from saevit_mm.models.utils.cost import count_aten_ops
    ops_input = torch.randn(2, 3, 224, 224, device=device)
    for name, model in models.items():
        with torch.no_grad():  # per forward, after a first one
            model.backbone(ops_input)
            counts, _ = count_aten_ops(lambda: model.backbone(ops_input))
        rows[name]['ops'] = sum(counts.values())
    errors: Dict[Hashable, str] = {}
    tasks = {}
    for name, model in models.items():
        tasks[name, 'img/s'] = timer(model, x, rate=True)
        tasks[name, 'ms'] = timer(model, x[:1], preset['latency_iters'])
    timed = interleave(tasks, preset['repeats'], errors, log)
    dense = {
        f'{h}x{w}': torch.randn(1, 3, h, w, device=device)
        for h, w in preset['dense_sizes']
    }
    tasks = {
        (name, key): timer(model.backbone, d)
        for name, model in models.items()
        for key, d in dense.items()
    }
    timed.update(interleave(tasks, preset['dense_repeats'], errors, log))
    for (name, column), stats in timed.items():
        rows[name][column] = stats
    for (name, column), message in errors.items():
        rows[name][column] = dict(error=message)
    return dict(
        machine=dict(machine(), device=device),
        settings=dict(
            preset, fuse_all=fuse_all, deploy_steps=steps, baseline=baseline),
        models=list(rows.values()))


def _cell(stats: Optional[Dict], digits: int = 1) -> str:
    if not stats:
        return '-'
    if 'error' in stats:
        return 'n/a'
    spread = 50 * (stats['high'] - stats['low']) / stats['median']
    return f'{stats["median"]:.{digits}f} ±{spread:.0f}%'


def markdown(result: Dict) -> str:
    """The table, how to read it, the top-1 sources and the failures."""
    s, rows = result['settings'], result['models']
    sizes = [f'{h}x{w}' for h, w in s['dense_sizes']]
    at = f'@{s["img_size"]}'
    header = [
        'model', 'top-1 % (published)', 'params (M)', f'GFLOPs {at}',
        f'img/s (b{s["batch_size"]} {at})', f'ms (b1 {at})',
        *[f'backbone ms @{size}' for size in sizes], 'GMAC/s',
        'backbone ops (b2 @224)'
    ]
    m = result['machine']
    lines = [
        f'{m["cpu"]}, {m["threads"]} threads, torch {m["torch"]}, '
        f'{m["device"]}:', '', '| ' + ' | '.join(header) + ' |',
        '|' + ' --- |' * len(header)
    ]
    for row in (r for r in rows if 'error' not in r):
        rate = row.get('img/s', {}).get('median')
        cells = [
            row['name'], f'{row["top1"]:g}', f'{row["params_m"]:.2f}',
            f'{row["gflops"]:.3f}',
            _cell(row.get('img/s')),
            _cell(row.get('ms')), *[_cell(row.get(size), 0) for size in sizes],
            f'{row["gflops"] * rate:.1f}' if rate else '-',
            str(row.get('ops', '-'))
        ]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines += [
        '', f'Medians of {s["repeats"]} interleaved rounds '
        f'({s["dense_repeats"]} for the backbone sizes, batch 1), ± half '
        'the range; GMAC/s: multiply-adds per second at the median img/s; '
        'ops: aten ops of one backbone forward in eval mode without '
        'autograd (views and detach excluded; the same on any CPU). '
        '[deployed]: saevit_mm.deploy.switch_to_deploy (BatchNorms folded, '
        'CIFFN and SAA deploy forms, channels-last), timed in the same '
        'rounds' +
        ('; every peer deployed too (BatchNorms folded by the same '
         'function) and run in the memory format it was faster in at batch '
         '1 (chosen by measurement in this run; rows below)'
         if s['fuse_all'] else '') +
        f'. Command: `{result.get("command", "")}`.', '',
        'Published ImageNet-1K top-1, not measured here (SAEViT\'s: the '
        'paper\'s own checkpoints):', ''
    ]
    lines += [
        f'- {r["name"]}: {r["top1_source"]}' for r in rows
        if '[' not in r['name']
    ]
    lines += [
        f'- {r["name"]}: outputs within {r["max_abs_diff"]:.1e} of '
        'its eager form' for r in rows if 'max_abs_diff' in r
    ]
    lines += [
        f'- {r["name"]}: {r["memory_format"]} (batch 1: ' + ', '.join(
            f'{form} {ms:.1f} ms' for form, ms in r['format_ms'].items()) +
        ')' for r in rows if 'memory_format' in r
    ]
    lines += _versus_baseline(result)
    errors = [f'- {r["name"]}: {r["error"]}' for r in rows if 'error' in r]
    errors += [
        f'- {r["name"]} {key}: {value["error"]}' for r in rows
        for key, value in r.items()
        if isinstance(value, dict) and 'error' in value
    ]
    if errors:
        lines += ['', 'Failed (n/a):', '', *errors]
    return '\n'.join(lines) + '\n'


def _versus_baseline(result: Dict) -> list:
    """With ``--baseline``: each SAEViT's time now / at the baseline, eager
    and deployed, from the medians of the same rounds."""
    s = result['settings']
    base = s.get('baseline')
    if not base:
        return []
    rows = {r['name']: r for r in result['models']}
    sizes = [f'{h}x{w}' for h, w in s['dense_sizes']]
    columns = ['img/s', 'ms', *sizes]
    lines = [
        '', f'Time now / at `{base}` (medians of the same interleaved rounds; '
        'below 1: faster now):', '',
        f'| model | form | b{s["batch_size"]} @{s["img_size"]} | '
        f'b1 @{s["img_size"]} | ' +
        ' | '.join(f'backbone @{size}' for size in sizes) + ' |',
        '|' + ' --- |' * (2 + len(columns))
    ]
    for name in [n for n, r in rows.items() if r['scope'] == 'saevit_mm'
                 and '[' not in n and f'{n} [@{base}]' in rows]:
        for form, now, then in (('eager', name, f'{name} [@{base}]'),
                                ('deployed', f'{name} [deployed]',
                                 f'{name} [@{base} deployed]')):
            cells = []
            for column in columns:
                a = rows[now].get(column, {}).get('median')
                b = rows[then].get(column, {}).get('median')
                ratio = (b / a if column == 'img/s' else a / b) if a and b \
                    else None
                cells.append(f'{ratio:.2f}x' if ratio else '-')
            lines.append(f'| {name} | {form} | ' + ' | '.join(cells) + ' |')
    return lines


def plot(result: Dict, path: Path) -> None:
    """Published top-1 against throughput and throughput against FLOPs."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for row in (r for r in result['models'] if 'median' in r.get('img/s', {})):
        ours, rate = row['scope'] == 'saevit_mm', row['img/s']['median']
        color = dict(
            saevit_mm='tab:red',
            timm='tab:purple').get(row['scope'], 'tab:blue')
        hollow = 'none' if '[' in row['name'] else color
        for ax, xy in zip(axes, ((rate, row['top1']), (row['gflops'], rate))):
            ax.plot(
                *xy,
                '*' if ours else 'o',
                ms=13 if ours else 7,
                color=color,
                mfc=hollow)
            ax.text(*xy, '  ' + row['name'], fontsize=7)
    s, m = result['settings'], result['machine']
    rate = f'img/s, batch {s["batch_size"]} @ {s["img_size"]}², {m["device"]}'
    axes[0].set(
        xlabel=rate + ' (measured)',
        ylabel='published top-1 %',
        title='Published ImageNet-1K accuracy against throughput')
    axes[1].set(
        xlabel=f'GFLOPs (multiply-adds) @ {s["img_size"]}²',
        ylabel=rate,
        title='Throughput against FLOPs')
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        f'{m["cpu"]}, {m["threads"]} threads, torch {m["torch"]}. '
        'Red stars: SAEViT (hollow: deployed); blue: mmpretrain, '
        'mmdet; purple: timm',
        fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument('--preset', choices=list(PRESETS), default='default')
    for name in ('quick', 'tiny'):
        preset.add_argument(
            f'--{name}',
            dest='preset',
            const=name,
            action='store_const',
            help=f'--preset {name}')
    parser.add_argument(
        '--models',
        nargs='+',
        choices=list(MODELS),
        default=None,
        metavar='NAME',
        help=f'any of {", ".join(MODELS)} (default: all)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, help='torch threads')
    parser.add_argument(
        '--fuse-all',
        action='store_true',
        help='deploy every peer too (fold its BatchNorms; timm peers are '
        'reparameterised anyway) and run each in the memory format (NCHW '
        'or channels-last) it is faster in at batch 1, chosen by '
        'measurement and recorded')
    parser.add_argument(
        '--deploy-steps',
        action='store_true',
        help='time SAEViT after each deploy step too (folded, channels-last)')
    parser.add_argument(
        '--out-dir', type=Path, default=Path('work_dirs/benchmark'))
    parser.add_argument(
        '--baseline',
        metavar='REV',
        help='also time the SAEViT models as of this git revision (eager and '
        'deployed, same rounds) and report the time ratios now / then')
    parser.add_argument(
        '--train',
        action='store_true',
        help='measure training instead (benchmark_train.py): step time, '
        'bytes kept for backward and ops of each backbone with its four '
        'outputs, at 2x800x1344 and 4x512x512 (--tiny: 2x64x96); models '
        f'default to {", ".join(TRAIN_MODELS)}')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    log = (lambda line: None) if args.no_progress else (
        lambda line: print(f'[benchmark] {line}', flush=True))
    if args.baseline:
        from revision_import import import_revision
        try:
            import_revision(args.baseline)
        except ValueError as err:
            parser.error(f'--baseline: {err}')
    if args.train:
        names = args.models or list(TRAIN_MODELS)
        result = run_train(names, TRAIN_PRESETS['tiny' if args.preset ==
                                                'tiny' else 'default'],
                           MODELS, interleave, args.device, log,
                           args.baseline)
        stem, report, draw = 'benchmark_train', train_markdown, train_plot
    else:
        result = run(args.models or list(MODELS), PRESETS[args.preset],
                     args.device, args.fuse_all, args.deploy_steps, log,
                     args.baseline)
        stem, report, draw = 'benchmark', markdown, plot
    argv = sys.argv[1:] if argv is None else argv
    result.setdefault('machine', dict(machine(), device=args.device))
    result.update(
        preset=args.preset,
        wall_time_s=time.perf_counter() - start,
        command=shlex.join(
            ['python', 'tools/analysis_tools/benchmark.py', *argv]))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f'{stem}.json').write_text(json.dumps(result, indent=2))
    (args.out_dir / f'{stem}.md').write_text(report(result))
    draw(result, args.out_dir / f'{stem}.png')
    print(report(result))
    print(f'wrote {stem}.json, .md and .png to {args.out_dir} '
          f'({result["wall_time_s"]:.0f} s)')


if __name__ == '__main__':
    main()
