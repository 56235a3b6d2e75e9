"""Benchmark SAEViT against the peers of the installed hosts.

Params, FLOPs (one counter for all), classifier throughput and latency,
backbone latency at detection/segmentation sizes (512x512, 800x1333,
1024x2048), the machine's matmul rate and each model's FLOP utilisation,
SAA vs full attention scaling, and the deploy variants (fused BN,
onnxruntime, torch.compile). Peers come from the installed hosts
(mmpretrain, mmdet) and timm (FastViT and RepViT in their reparameterised
deploy form); each carries its published ImageNet-1K top-1 and its source,
which the chart plots against the throughput measured in the run.

Examples::

    python tools/analysis_tools/benchmark.py                 # <= 10 min
    python tools/analysis_tools/benchmark.py --quick
    python tools/analysis_tools/benchmark.py --device cuda --out-dir out
    python tools/analysis_tools/benchmark.py --models SAEViT-t EdgeNeXt-xsmall

Writes ``benchmark.json``, ``benchmark.png`` and ``benchmark.md`` (the table
as markdown) to ``--out-dir``.
"""
import argparse
import os
import shlex
import sys
import time

from benchmark_utils import PRESETS, run_benchmark, settings_from_preset
from benchmark_utils.report import (markdown_table, plot_chart, render_table,
                                    write_json)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        '--preset',
        choices=list(PRESETS),
        default='default',
        help='measurement plan; "default" takes ~23 min on 2 CPU cores')
    preset.add_argument(
        '--quick',
        dest='preset',
        action='store_const',
        const='quick',
        help='same as --preset quick (a few minutes)')
    preset.add_argument(
        '--tiny',
        dest='preset',
        action='store_const',
        const='tiny',
        help='same as --preset tiny (smoke test, seconds)')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--models', nargs='+', help='display names to include (default all)')
    parser.add_argument('--img-size', type=int)
    parser.add_argument('--batch-size', type=int)
    parser.add_argument('--repeats', type=int)
    parser.add_argument(
        '--attention-sizes',
        type=int,
        nargs='*',
        help='image sides for SAA vs full attention; none: skip')
    parser.add_argument(
        '--deploy',
        nargs='*',
        choices=('fuse', 'onnx', 'compile'),
        help='deploy variants to measure; none: skip')
    parser.add_argument(
        '--deploy-models', nargs='+', help='models that get the variants')
    parser.add_argument('--threads', type=int, help='torch threads')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        default=None,
        help='run every model and input in channels_last memory format')
    parser.add_argument(
        '--fuse-all',
        action='store_true',
        default=None,
        help='fold BatchNorm into the convolutions of every model')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    settings = settings_from_preset(
        args.preset,
        device=args.device,
        models=args.models,
        img_size=args.img_size,
        batch_size=args.batch_size,
        repeats=args.repeats,
        attention_sizes=(tuple(args.attention_sizes)
                         if args.attention_sizes is not None else None),
        deploy=tuple(args.deploy) if args.deploy is not None else None,
        deploy_models=(tuple(args.deploy_models)
                       if args.deploy_models else None),
        threads=args.threads,
        channels_last=args.channels_last,
        fuse_all=args.fuse_all)
    os.makedirs(args.out_dir, exist_ok=True)
    start = time.perf_counter()
    if args.no_progress:
        result = run_benchmark(settings)
    elif not sys.stdout.isatty():
        result = run_benchmark(settings, 'lines')
    else:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress,
                                   TextColumn, TimeElapsedColumn)
        with Progress(
                TextColumn('{task.description}'), BarColumn(),
                MofNCompleteColumn(), TimeElapsedColumn()) as progress:
            result = run_benchmark(settings, progress)
    result['wall_time_s'] = time.perf_counter() - start
    result['preset'] = args.preset
    result['command'] = shlex.join(
        ['python', 'tools/analysis_tools/benchmark.py'] +
        sys.argv[1:] if argv is
        None else ['python', 'tools/analysis_tools/benchmark.py'] + list(argv))
    json_path = os.path.join(args.out_dir, 'benchmark.json')
    png_path = os.path.join(args.out_dir, 'benchmark.png')
    md_path = os.path.join(args.out_dir, 'benchmark.md')
    write_json(result, json_path)
    plot_chart(result, png_path)
    with open(md_path, 'w', encoding='utf-8') as file:
        file.write(markdown_table(result) + '\n')
    render_table(result)
    print(f'wrote {json_path}, {png_path}, {md_path} '
          f'({result["wall_time_s"]:.0f} s)')


if __name__ == '__main__':
    main()
